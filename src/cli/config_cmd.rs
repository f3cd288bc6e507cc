//! `guardian config defaults`: the complete built-in configuration, every key with its
//! default, each policy with its default switch. Unset keys (credentials, secrets, the
//! LLM) are `null` in JSON and commented out in TOML, so the output is a valid
//! `guardian.toml` to start from. Secrets are never printed.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::config::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigFormat {
    Toml,
    Json,
}

/// The defaults as a JSON value: the settings' own defaults plus `policies.<id>` for
/// every policy this build knows.
pub fn defaults_value() -> anyhow::Result<Value> {
    let mut value = serde_json::to_value(Settings::defaults()?)?;
    let policies: Map<String, Value> = crate::policy::all()
        .iter()
        .map(|p| {
            let mut entry = Map::new();
            entry.insert("enabled".into(), p.default_enabled().into());
            entry.insert("options".into(), Value::Object(Map::new()));
            (p.id().to_string(), Value::Object(entry))
        })
        .collect();
    if let Value::Object(root) = &mut value {
        root.insert("policies".into(), Value::Object(policies));
    }
    Ok(value)
}

pub fn defaults(format: ConfigFormat) -> anyhow::Result<String> {
    let value = defaults_value()?;
    Ok(match format {
        ConfigFormat::Json => format!("{}\n", serde_json::to_string_pretty(&value)?),
        ConfigFormat::Toml => {
            let mut out = String::from(
                "# Built-in defaults of `guardian` (guardian config defaults).\n\
                 # Every key can be set in guardian.toml or as GUARDIAN__SECTION__KEY.\n",
            );
            if let Value::Object(root) = &value {
                toml_table(&mut out, "", root)?;
            }
            out
        }
    })
}

/// Writes `table` under `[path]`: scalars first, then sub-tables; `null` becomes a
/// commented-out key.
fn toml_table(out: &mut String, path: &str, table: &Map<String, Value>) -> anyhow::Result<()> {
    let (tables, scalars): (Vec<_>, Vec<_>) = table
        .iter()
        .partition(|(_, v)| matches!(v, Value::Object(m) if !m.is_empty()));
    if !path.is_empty() && (!scalars.is_empty() || tables.is_empty()) {
        let _ = write!(out, "\n[{path}]\n");
    }
    for (key, value) in scalars {
        let key = toml_key(key);
        match value {
            Value::Null => {
                let _ = writeln!(out, "# {key} = \"\"");
            }
            Value::Object(_) => {
                let _ = writeln!(out, "{key} = {{}}");
            }
            other => {
                let toml_value: toml::Value = serde_json::from_value(other.clone())?;
                let _ = writeln!(out, "{key} = {toml_value}");
            }
        }
    }
    for (key, value) in tables {
        if let Value::Object(sub) = value {
            let sub_path = if path.is_empty() {
                toml_key(key)
            } else {
                format!("{path}.{}", toml_key(key))
            };
            toml_table(out, &sub_path, sub)?;
        }
    }
    Ok(())
}

/// A bare key when TOML allows one, quoted otherwise.
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_defaults_load_back_to_the_same_settings() {
        let text = defaults(ConfigFormat::Toml).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("guardian.toml");
        std::fs::write(&file, &text).unwrap();
        let loaded = Settings::load_from(Some(&file), std::iter::empty()).unwrap();
        let again = serde_json::to_value(&loaded).unwrap();
        let mut expected = defaults_value().unwrap();
        // The loaded file carries the explicit policy switches; compare the rest.
        expected.as_object_mut().unwrap().remove("policies");
        let mut again = again;
        again.as_object_mut().unwrap().remove("policies");
        assert_eq!(again, expected, "{text}");
        assert!(text.contains("# token = \"\""), "{text}");
    }
}
