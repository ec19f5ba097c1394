//! Integration tests of the image store, one module per feature. Every
//! test checks the store against a naive in-memory model, page by page.
#![forbid(unsafe_code)]

mod acceptance;
mod backend;
mod bytes;
mod caps;
mod common;
mod corruption;
mod crash;
mod fixture;
mod pages;
mod raw;
mod retention;
mod round_trip;
mod speed;
mod streams;
