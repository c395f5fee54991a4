//! Human-readable durations in config files: `500ms`, `30s`, `5m`, `2h`, `7d`, or a
//! bare integer number of seconds.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Parses `30s`-style text into a duration.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {text:?}: expected e.g. 30s, 5m, 1h"))?;
    let ms = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("invalid duration unit {unit:?} in {text:?}: use ms, s, m, h or d")),
    };
    n.checked_mul(ms).map(Duration::from_millis).ok_or_else(|| format!("duration {text:?} is too large"))
}

/// A duration that deserializes from `30s`-style text or an integer of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            Raw::Text(t) => parse(&t).map(Dur).map_err(serde::de::Error::custom),
        }
    }
}

impl Dur {
    /// Whole seconds, as used by claim arithmetic.
    pub fn secs(self) -> i64 {
        i64::try_from(self.0.as_secs()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("12").unwrap(), Duration::from_secs(12));
        assert!(parse("5 minutes").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("99999999999999999999d").is_err());
    }
}
