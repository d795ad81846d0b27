//! Switchyard's integration tests, one binary: each test starts its own gateway and mock upstream
//! on port 0 and talks to them over real HTTP, as a client would.

mod chat;
mod cli;
mod errors;
mod harness;
mod sdk;
