//! Switchyard's integration tests, one binary: each test starts its own gateway and mock upstream
//! on port 0 and talks to them over real HTTP, as a client would.

mod admin;
mod anthropic;
mod auth_cache;
mod billing;
mod capture;
mod chat;
mod cli;
mod cors;
mod errors;
mod events;
mod failover;
mod harness;
mod holds;
mod hostile_inputs;
mod instances_feed;
mod instances_four;
mod instances_holds;
mod instances_limits;
mod ledger_conformance;
mod ledger_outage;
mod limits;
mod listener;
mod metrics;
mod openapi;
mod responses;
mod responses_sdk;
mod scenarios;
mod schema_fuzz;
mod sdk;
mod sdk_runner;
mod secrets;
mod settlement_path;
mod steering;
mod tidy;
mod upstream_bounds;
