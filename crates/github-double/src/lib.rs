//! A stateful GitHub REST double.
