//! A tiny in-process OTLP/HTTP trace receiver for tests (work in progress).
