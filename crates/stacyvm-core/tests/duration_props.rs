//! Property tests of the Go duration grammar: the parser never panics, it
//! reads back everything `Display` writes, it adds terms exactly, and it
//! accepts precisely what the OpenAPI pattern (`DURATION_PATTERN`)
//! describes, so a client validating against the document and the server
//! agree.

use std::time::Duration;

use proptest::prelude::*;
use stacyvm_core::GoDuration;
use stacyvm_core::duration::DURATION_PATTERN;

/// Go's limit: i64 nanoseconds.
const MAX_NANOS: u64 = i64::MAX as u64;

const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

fn unit() -> impl Strategy<Value = (&'static str, u128)> {
    prop::sample::select(UNITS.to_vec())
}

/// Strings near the grammar: digits, dots, signs, unit letters, spaces
/// and a few strangers, so most cases get deep into the parser.
fn near_grammar() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "0",
            "1",
            "7",
            "9",
            "12",
            "000",
            "99999999999999999999",
            ".",
            "+",
            "-",
            "n",
            "u",
            "µ",
            "μ",
            "m",
            "s",
            "h",
            "ns",
            "us",
            "ms",
            " ",
            "\t",
            "e",
            "x",
            "é",
            "\u{0}",
        ]),
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_never_panics(s in any::<String>()) {
        let _ = GoDuration::parse(&s);
    }

    #[test]
    fn parse_never_panics_near_the_grammar(s in near_grammar()) {
        let _ = GoDuration::parse(&s);
    }

    #[test]
    fn display_round_trips(nanos in 0..=MAX_NANOS) {
        let d = GoDuration(Duration::from_nanos(nanos));
        let text = d.to_string();
        prop_assert_eq!(GoDuration::parse(&text), Ok(d), "rendered as {}", text);
    }

    #[test]
    fn terms_add_up(terms in prop::collection::vec((0u64..100_000, unit()), 1..5)) {
        let text: String = terms.iter().map(|(n, (u, _))| format!("{n}{u}")).collect();
        let want: u128 = terms.iter().map(|(n, (_, scale))| u128::from(*n) * scale).sum();
        let got = GoDuration::parse(&text);
        if want > u128::from(MAX_NANOS) {
            prop_assert!(got.is_err(), "{} parsed although over the limit", text);
        } else {
            prop_assert_eq!(got.map(|d| d.0.as_nanos()), Ok(want), "{}", text);
        }
    }

    /// Go rounds fractions through a float; this parser is exact.
    #[test]
    fn fractions_are_exact_to_the_nanosecond(
        int in 0u64..1000,
        frac in "[0-9]{1,12}",
        (u, scale) in unit(),
    ) {
        let text = format!("{int}.{frac}{u}");
        // Exactly int.frac units, with what is below a nanosecond dropped.
        let f: u128 = frac.parse().unwrap();
        let want = u128::from(int) * scale + f * scale / 10u128.pow(frac.len() as u32);
        prop_assert_eq!(GoDuration::parse(&text).map(|d| d.0.as_nanos()), Ok(want), "{}", text);
    }

    #[test]
    fn accepted_exactly_where_the_pattern_matches(s in near_grammar()) {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        let parsed = GoDuration::parse(&s);
        if s.trim() == s {
            if parsed.is_ok() {
                prop_assert!(pattern.is_match(&s), "{:?} parses but the pattern refuses it", s);
            } else if pattern.is_match(&s) {
                // The pattern cannot express the 292-year limit.
                let e = parsed.unwrap_err().to_string();
                prop_assert!(e.contains("too large"), "{:?} matches the pattern but fails: {}", s, e);
            }
        }
    }
}

/// Found by the properties above: a term whose whole part fills the
/// multiplication and whose fraction then overflowed the sum (a panic in
/// debug builds, a wrapped, small and accepted value in release).
#[test]
fn a_fraction_cannot_overflow_a_huge_term() {
    let h: u128 = 3_600_000_000_000;
    let int = u128::MAX / h;
    for frac in ["9", "999999999999", "5"] {
        let text = format!("{int}.{frac}h");
        assert!(GoDuration::parse(&text).is_err(), "{text}");
    }
}
