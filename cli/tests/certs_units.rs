//! Compiles `src/commands/certs.rs` as a test target so its unit tests run
//! before `commands/mod.rs` declares it: once `pub mod certs;` is there,
//! this file can go.
#![allow(dead_code)]

#[path = "../src/commands/certs.rs"]
mod certs;
