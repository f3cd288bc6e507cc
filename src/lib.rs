//! Repo Guardian: keeps GitHub repositories healthy and safe.
//!
//! See `ARCHITECTURE.md` for the bird's eye view and the code map.

pub mod config;
pub mod policy;
pub mod telemetry;
