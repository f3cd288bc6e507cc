//! The two duration encodings found in a Nomad job.
//!
//! Nomad's API types use Go's `time.Duration`, which `encoding/json` writes and reads as an
//! integer number of nanoseconds ([`Nanos`]); a string such as `"30s"` is a decode error on
//! a real cluster only in the best case, so it is one here. The Nomad Autoscaler, in
//! contrast, reads its policy (an opaque map inside the job) with `time.ParseDuration`,
//! so there a duration is a Go duration string ([`GoDuration`]) and an integer is wrong.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A Go `time.Duration` as Nomad's JSON API carries it: integer nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(transparent)]
pub struct Nanos(pub i64);

impl Nanos {
    /// The duration, or `None` when negative.
    pub fn duration(self) -> Option<Duration> {
        u64::try_from(self.0).ok().map(Duration::from_nanos)
    }
}

/// A Go duration string (`"2m"`, `"1m30s"`, `"500ms"`), as `time.ParseDuration` accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// Parses the unsigned subset of `time.ParseDuration`: one or more `<number><unit>`
    /// pairs, units `ns`, `us`, `ms`, `s`, `m`, `h`; `"0"` alone is zero.
    pub fn parse(text: &str) -> Result<GoDuration, String> {
        if text == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        if text.is_empty() {
            return Err("empty duration".to_owned());
        }
        let mut total = Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!("invalid duration {text:?}: expected a number"));
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|e| format!("invalid duration {text:?}: {e}"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let nanos_per_unit: u64 = match unit {
                "ns" => 1,
                "us" | "µs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => return Err(format!("invalid duration {text:?}: missing unit")),
                other => return Err(format!("invalid duration {text:?}: unknown unit {other:?}")),
            };
            total += Duration::from_nanos(number.saturating_mul(nanos_per_unit));
        }
        Ok(GoDuration(total))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Go duration string such as \"2m\" or \"30s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                GoDuration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_time_parse_duration() {
        let cases = [
            ("2m", Duration::from_secs(120)),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("0", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(GoDuration::parse(text), Ok(GoDuration(want)), "{text}");
        }
        for bad in ["", "30", "s", "2 m", "3d"] {
            assert!(GoDuration::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn nanos_refuse_strings() {
        assert_eq!(
            serde_json::from_str::<Nanos>("30000000000").unwrap(),
            Nanos(30_000_000_000)
        );
        let err = serde_json::from_str::<Nanos>("\"30s\"").unwrap_err();
        assert!(err.to_string().contains("invalid type: string"), "{err}");
    }
}
