//! Integration tests: real `phantom` processes running real guest components.
//! One binary, one module per feature.
#![forbid(unsafe_code)]

mod bad_input;
mod c_guests;
mod cli;
mod common;
mod control;
mod crafted_images;
mod devices;
mod differential;
mod display;
mod fixture;
mod globals;
mod history;
mod image_fuzz;
mod incremental;
mod instrument_fuzz;
mod interop;
mod journal;
mod kill_loop;
mod lazy_restore;
mod migrate;
mod newcomer;
mod pvm;
mod pvm_display;
mod regressions;
mod sensor;
mod serial;
mod thermostat;
mod trackers;
mod travel;
mod wasi;
