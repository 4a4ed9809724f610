//! Go-style durations (`500ms`, `30s`, `1h30m`), the wire format of every
//! TTL and timeout in API v1.
//!
//! Written here rather than taken from a crate: the contract needs Go's exact
//! grammar on input (units `ns us µs ms s m h`, fractions, several terms) and
//! Go's exact rendering on output (`24h0m0s`, `1m30s`, `0s`), which humantime
//! and friends do not produce.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration that parses and prints the way Go's `time.Duration` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl GoDuration {
    pub const ZERO: GoDuration = GoDuration(Duration::ZERO);

    pub fn from_secs(secs: u64) -> Self {
        GoDuration(Duration::from_secs(secs))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Parses a Go duration string. Negative durations are rejected: no
    /// StacyVM setting has a meaning for them.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let err = |reason| DurationError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        if s.starts_with('-') {
            return Err(err("negative durations are not allowed"));
        }
        if s.is_empty() {
            return Err(err("expected a number"));
        }
        if s == "0" {
            return Ok(GoDuration::ZERO);
        }
        let mut rest = s;
        let mut total_nanos: u128 = 0;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| err("missing unit"))?;
            if num_end == 0 {
                return Err(err("expected a number"));
            }
            let (number, after) = rest.split_at(num_end);
            let unit_end = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, next) = after.split_at(unit_end);
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => return Err(err("missing unit")),
                _ => return Err(err("unknown unit")),
            };
            let (int_part, frac_part) = match number.split_once('.') {
                Some((i, f)) => (i, f),
                None => (number, ""),
            };
            if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
                return Err(err("malformed number"));
            }
            let int: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse().map_err(|_| err("number too large"))?
            };
            let mut nanos = int
                .checked_mul(unit_nanos)
                .ok_or_else(|| err("number too large"))?;
            nanos = nanos
                .checked_add(fraction_nanos(frac_part, unit_nanos))
                .ok_or_else(|| err("number too large"))?;
            total_nanos = total_nanos
                .checked_add(nanos)
                .ok_or_else(|| err("number too large"))?;
            rest = next;
        }
        // Go caps durations at ~292 years (i64 nanoseconds).
        if total_nanos > i64::MAX as u128 {
            return Err(err("number too large"));
        }
        Ok(GoDuration(Duration::from_nanos(total_nanos as u64)))
    }
}

impl From<Duration> for GoDuration {
    fn from(d: Duration) -> Self {
        GoDuration(d)
    }
}

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Self {
        d.0
    }
}

impl FromStr for GoDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GoDuration::parse(s)
    }
}

/// Renders like Go's `Duration.String()`: `0s`, `1.5µs`, `127ms`, `1.52s`,
/// `1m30s`, `24h0m0s`.
impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < 1_000_000_000 {
            let (unit, scale) = if nanos < 1_000 {
                ("ns", 1)
            } else if nanos < 1_000_000 {
                ("µs", 1_000)
            } else {
                ("ms", 1_000_000)
            };
            return write!(f, "{}{unit}", fraction(nanos, scale));
        }
        let hours = nanos / 3_600_000_000_000;
        let minutes = (nanos / 60_000_000_000) % 60;
        let secs_nanos = nanos % 60_000_000_000;
        if hours > 0 {
            write!(f, "{hours}h{minutes}m")?;
        } else if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        write!(f, "{}s", fraction(secs_nanos, 1_000_000_000))
    }
}

/// The nanoseconds of `0.<digits>` of a unit of `unit_nanos`, rounded
/// down (what is below a nanosecond is dropped, as Go does). Exact: the
/// first 20 digits are taken as an integer (any further ones are worth
/// less than 10^-7 ns for the largest unit, an hour).
fn fraction_nanos(digits: &str, unit_nanos: u128) -> u128 {
    let digits = &digits.as_bytes()[..digits.len().min(20)];
    let numerator = digits
        .iter()
        .fold(0u128, |n, d| n * 10 + u128::from(d - b'0'));
    // < 10^20 * 3.6 * 10^12: far inside u128.
    numerator * unit_nanos / 10u128.pow(digits.len() as u32)
}

/// `value / scale` printed with the fractional digits Go keeps (trailing
/// zeros trimmed).
fn fraction(value: u128, scale: u128) -> String {
    let int = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return int.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// The grammar [`GoDuration::parse`] accepts (and `Display` produces), as a
/// regular expression for the OpenAPI document.
pub const DURATION_PATTERN: &str =
    r"^\+?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$";

impl utoipa::PartialSchema for GoDuration {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::string(
            "Go-style duration (`500ms`, `30s`, `1h30m`); responses render it as Go does (`24h0m0s`).",
            Some(DURATION_PATTERN),
            Some(64),
            "30m0s",
        )
    }
}

impl utoipa::ToSchema for GoDuration {}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GoDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Duration {
        GoDuration::parse(s).unwrap().0
    }

    #[test]
    fn parses_go_syntax() {
        assert_eq!(p("500ms"), Duration::from_millis(500));
        assert_eq!(p("30s"), Duration::from_secs(30));
        assert_eq!(p("5m"), Duration::from_secs(300));
        assert_eq!(p("1h30m"), Duration::from_secs(5400));
        assert_eq!(p("1.5s"), Duration::from_millis(1500));
        assert_eq!(p(".5s"), Duration::from_millis(500));
        assert_eq!(p("2h45m30.5s"), Duration::from_millis(9_930_500));
        assert_eq!(p("10us"), Duration::from_micros(10));
        assert_eq!(p("10µs"), Duration::from_micros(10));
        assert_eq!(p("7ns"), Duration::from_nanos(7));
        assert_eq!(p("0"), Duration::ZERO);
        assert_eq!(p("+1s"), Duration::from_secs(1));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "", "abc", "10", "1x", "-1s", "1..5s", ".s", "s", "1h-1m", "+", " + ",
        ] {
            assert!(GoDuration::parse(bad).is_err(), "{bad:?} should fail");
        }
        assert!(GoDuration::parse("999999999h").is_err());
    }

    #[test]
    fn renders_like_go() {
        let r = |d: Duration| GoDuration(d).to_string();
        assert_eq!(r(Duration::ZERO), "0s");
        assert_eq!(r(Duration::from_secs(86_400)), "24h0m0s");
        assert_eq!(r(Duration::from_secs(90)), "1m30s");
        assert_eq!(r(Duration::from_millis(127)), "127ms");
        assert_eq!(r(Duration::from_millis(1520)), "1.52s");
        assert_eq!(r(Duration::from_nanos(1500)), "1.5µs");
        assert_eq!(r(Duration::from_nanos(42)), "42ns");
        assert_eq!(r(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(r(Duration::from_millis(3_723_500)), "1h2m3.5s");
    }

    #[test]
    fn round_trips_through_serde() {
        let d: GoDuration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m0s\"");
        assert!(serde_json::from_str::<GoDuration>("\"soon\"").is_err());
    }
}
