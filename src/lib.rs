//! Repo Guardian: keeps GitHub repositories healthy and safe.
//!
//! See `ARCHITECTURE.md` for the bird's eye view and the code map.

pub mod bus;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod github;
pub mod llm;
pub mod local;
pub mod ops;
pub mod policy;
pub mod schedule;
pub mod schemas;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod webhook;
pub mod worker;
pub mod workflow;
