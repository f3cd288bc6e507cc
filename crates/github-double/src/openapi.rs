//! Checks recorded requests against GitHub's OpenAPI description.
pub fn placeholder() {}
