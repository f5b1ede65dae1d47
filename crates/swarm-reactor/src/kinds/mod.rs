//! The built-in step kinds.

mod basic;
mod exec;
mod http;

pub use basic::{Echo, Fail, SignalStep, Sleep};
pub use exec::Exec;
pub use http::Http;

use serde_json::Value;

/// Checks that `with` is a map (or absent) whose keys are all in `known`.
pub(crate) fn check_keys(with: &Value, known: &[&str]) -> Vec<String> {
    match with {
        Value::Null => Vec::new(),
        Value::Object(m) => m
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| format!("{k:?} is not a known option (known: {})", known.join(", ")))
            .collect(),
        _ => vec![format!("expected a map of options ({})", known.join(", "))],
    }
}
