//! Paths of the guest components built by build.rs.
//!
//! `COUNTER`, `KV`, `MEMTOUCH`, `MISBEHAVE`, `BAD_IMPORT`: absolute paths of
//! the components in `target/guests/components/`; `ALL` maps every guest name
//! to its path.
#![forbid(unsafe_code)]

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
