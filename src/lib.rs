//! model-lens-sync: fetches the AI-model landscape from four public APIs and keeps a
//! time-stamped snapshot of every sync in PostgreSQL. See ARCHITECTURE.md for the map.

pub mod actors;
pub mod backoff;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod faults;
pub mod fetch;
pub mod health;
pub mod history;
pub mod http;
pub mod model;
pub mod progress;
pub mod publish;
pub mod report;
pub mod sources;
pub mod store;
pub mod telemetry;
