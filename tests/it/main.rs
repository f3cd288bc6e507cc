//! Integration tests: real `nats-server`, real `guardian worker` processes, the GitHub
//! double. One binary, shared helpers.

mod app;
mod budget;
mod cli;
mod compat;
mod docs;
mod faults;
mod fleet;
mod fleet_core;
mod helpers;
mod hygiene;
mod llm;
mod malformed;
mod operations;
mod policies;
mod schedules;
mod telemetry;
mod webhooks;
