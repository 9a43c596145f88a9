//! Compiles the security modules (src/auth, src/admission) as a test target so
//! their unit tests run before the request pipeline wires them in: once
//! lib.rs has `pub mod auth; pub mod admission;`, this file can go.
#![allow(dead_code)]

#[path = "../src/auth/mod.rs"]
mod auth;
#[path = "../src/admission/mod.rs"]
mod admission;
