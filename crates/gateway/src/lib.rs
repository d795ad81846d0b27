//! Switchyard: an OpenAI-compatible LLM gateway. One API key and one base URL for the caller, many
//! upstream providers behind it, streaming first.
//!
//! `ARCHITECTURE.md` at the repository root maps these modules and states their invariants.

pub mod app;
pub mod auth;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod config;
pub mod event_log;
pub mod http;
pub mod ledger;
pub mod limits;
pub mod nofile;
pub mod otlp;
pub mod private_files;
pub mod providers;
pub mod redact;
pub mod relay;
pub mod routing;
pub mod telemetry;
