//! Switchyard: an OpenAI-compatible LLM gateway. One API key and one base URL for the caller, many
//! upstream providers behind it, streaming first.
//!
//! `ARCHITECTURE.md` at the repository root maps these modules and states their invariants.

pub(crate) mod admin_guard;
pub mod app;
pub mod auth;
pub(crate) mod capture;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub(crate) mod event_log;
pub mod gateway;
pub mod http;
pub(crate) mod limits;
pub(crate) mod nofile;
pub(crate) mod otlp;
pub mod private_files;
pub mod providers;
pub(crate) mod redact;
pub mod relay;
pub(crate) mod replay;
pub(crate) mod routing;
pub mod store;
pub mod telemetry;
