//! Integration tests: real `nats-server`, real `guardian worker` processes, the GitHub
//! double. One binary, shared helpers.

mod compat;
mod faults;
mod fleet;
mod helpers;
mod malformed;
mod operations;
mod schedules;
mod telemetry;
mod webhooks;
