//! Go duration strings (`300ms`, `1.5s`, `2h45m`), as every Kubernetes
//! component's flags take them. The one parser of the project: every
//! component's duration flags use [`parse`] as their clap `value_parser`.
//!
//! The grammar is Go's `time.ParseDuration` (`src/time/format.go`), exactly:
//!
//! ```text
//! [-+]? ( [0-9]* ( "." [0-9]* )? unit )+      or "0", "+0", "-0" alone
//! unit = "ns" | "us" | "µs" (U+00B5) | "μs" (U+03BC) | "ms" | "s" | "m" | "h"
//! ```
//!
//! Each number needs digits on at least one side of its point (`5.s` and
//! `.5s` are fine, `.s` is not) and a unit (`"1"` is an error: only a bare
//! `0` may omit it). The value is counted in whole nanoseconds as a signed
//! 64-bit integer, as Go's `time.Duration` is; anything beyond ±292 years
//! is an overflow error. Digits after the point beyond what 64 bits hold
//! are read and ignored, as Go does.

use std::time::Duration;

/// A flag's duration: Go's grammar ([`parse_nanos`]), and not negative —
/// no rkube flag takes a negative duration (a period, a timeout, a TTL).
pub fn parse(s: &str) -> Result<Duration, String> {
    let nanos = parse_nanos(s)?;
    if nanos < 0 {
        return Err(format!("negative duration {}", quote(s)));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// Go's `time.ParseDuration`: the signed number of nanoseconds `s` stands for.
/// The error messages are Go's, without its `time: ` prefix.
pub fn parse_nanos(s: &str) -> Result<i64, String> {
    let orig = s;
    let invalid = || format!("invalid duration {}", quote(orig));
    let mut s = s;
    let mut neg = false;
    // Consume [-+]?
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    // Special case: if all that is left is "0", this is zero.
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut d: u64 = 0;
    while !s.is_empty() {
        // The next character must be [0-9.]
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        // Consume [0-9]*
        let before = s.len();
        let (mut v, rest) = leading_int(s).ok_or_else(invalid)?;
        s = rest;
        let pre = before != s.len(); // digits before the point
        // Consume (\.[0-9]*)?
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let before = rest.len();
            (f, scale, s) = leading_fraction(rest);
            post = before != s.len();
        }
        if !pre && !post {
            // No digits at all (".s" or "-.s").
            return Err(invalid());
        }
        // Consume the unit: everything up to the next number.
        let i = s.bytes().position(|c| c == b'.' || c.is_ascii_digit()).unwrap_or(s.len());
        if i == 0 {
            return Err(format!("missing unit in duration {}", quote(orig)));
        }
        let (u, rest) = s.split_at(i);
        s = rest;
        let Some(unit) = unit_nanos(u) else {
            return Err(format!("unknown unit {} in duration {}", quote(u), quote(orig)));
        };
        if v > (1 << 63) / unit {
            return Err(invalid()); // overflow
        }
        v *= unit;
        if f > 0 {
            // float64 is needed to be nanosecond accurate for fractions of
            // hours; f * unit / scale <= 3.6e12 (ns in an hour).
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > 1 << 63 {
                return Err(invalid()); // overflow
            }
        }
        d += v;
        if d > 1 << 63 {
            return Err(invalid()); // overflow
        }
    }
    if neg {
        // d <= 2^63: -2^63 is the one value whose magnitude is not an i64.
        return Ok((d as i64).wrapping_neg());
    }
    if d > i64::MAX as u64 {
        return Err(invalid()); // overflow
    }
    Ok(d as i64)
}

/// Nanoseconds per unit (Go's `unitMap`).
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        _ => return None,
    })
}

/// Consumes the leading `[0-9]*` of `s` (Go's `leadingInt`); `None` when
/// the number exceeds 2^63.
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let end = s.bytes().position(|c| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut x: u64 = 0;
    for c in s[..end].bytes() {
        if x > (1 << 63) / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > 1 << 63 {
            return None;
        }
    }
    Some((x, &s[end..]))
}

/// Consumes the leading `[0-9]*` after a decimal point (Go's
/// `leadingFraction`): the digits as an integer and the power of ten to
/// divide it by. Digits past 64 bits of precision are consumed and ignored.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let end = s.bytes().position(|c| !c.is_ascii_digit()).unwrap_or(s.len());
    let (mut x, mut scale, mut overflow) = (0u64, 1f64, false);
    for c in s[..end].bytes() {
        if overflow {
            continue;
        }
        if x > (i64::MAX as u64) / 10 {
            // x * 10 could wrap into a plausible number: stop here.
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > 1 << 63 {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[end..])
}

/// `s` in double quotes as Go's `time` package quotes it in errors:
/// `"` and `\` escaped, control and non-ASCII characters as `\x..` bytes.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if !c.is_ascii() || c < ' ' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: i64 = 1;
    const US: i64 = 1_000;
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000_000_000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;

    /// Go's `parseDurationTests` (`src/time/time_test.go`), then the cases
    /// the components' own parsers were tested with.
    #[test]
    fn go_parse_duration() {
        for (input, want) in [
            // Go's documented examples.
            ("300ms", 300 * MS),
            ("-1.5h", -(H + 30 * M)),
            ("2h45m", 2 * H + 45 * M),
            ("1m30s", 90 * S),
            ("1.5µs", 1500 * NS),
            // simple
            ("0", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            // sign
            ("-5s", -5 * S),
            ("+5s", 5 * S),
            ("-0", 0),
            ("+0", 0),
            // decimal
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600 * MS),
            ("5.s", 5 * S),
            (".5s", 500 * MS),
            ("1.0s", S),
            ("1.00s", S),
            ("1.004s", S + 4 * MS),
            ("1.0040s", S + 4 * MS),
            ("100.00100s", 100 * S + MS),
            // different units
            ("10ns", 10 * NS),
            ("11us", 11 * US),
            ("12µs", 12 * US),       // U+00B5
            ("12\u{3bc}s", 12 * US), // U+03BC
            ("13ms", 13 * MS),
            ("14s", 14 * S),
            ("15m", 15 * M),
            ("16h", 16 * H),
            // composite durations
            ("3h30m", 3 * H + 30 * M),
            ("10.5s4m", 4 * M + 10 * S + 500 * MS),
            ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
            ("1h2m3s4ms5us6ns", H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS),
            ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
            // large value
            ("52763797000ns", 52763797000 * NS),
            // more than 9 digits after the decimal point
            ("0.3333333333333333333h", 20 * M),
            // 2^53 + 1 cannot be stored precisely in a float64
            ("9007199254740993ns", (1 << 53) + 1),
            // the largest and smallest durations an i64 of nanoseconds holds
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            // a long fraction
            ("0.100000000000000000000h", 6 * M),
            // the first overflow check in leadingFraction
            ("0.830103483285477580700h", 49 * M + 48 * S + 372539827 * NS),
            // rkube's flags (defaults and tests of the agent, controller,
            // scheduler, proxy)
            ("10s", 10 * S),
            ("500ms", 500 * MS),
            ("5m", 5 * M),
            ("40s", 40 * S),
            ("1h30m", H + 30 * M),
            ("1.5s", 1500 * MS),
            ("2h", 2 * H),
            ("15s", 15 * S),
        ] {
            assert_eq!(parse_nanos(input), Ok(want), "{input:?}");
        }
    }

    /// Go's `parseDurationErrorTests`, with its messages (less `time: `).
    #[test]
    fn go_parse_duration_errors() {
        for (input, want) in [
            ("", r#"invalid duration """#),
            ("3", r#"missing unit in duration "3""#),
            ("1", r#"missing unit in duration "1""#),
            ("-", r#"invalid duration "-""#),
            ("s", r#"invalid duration "s""#),
            (".", r#"invalid duration ".""#),
            ("-.", r#"invalid duration "-.""#),
            (".s", r#"invalid duration ".s""#),
            ("+.s", r#"invalid duration "+.s""#),
            ("1x", r#"unknown unit "x" in duration "1x""#),
            ("1d", r#"unknown unit "d" in duration "1d""#),
            ("3d", r#"unknown unit "d" in duration "3d""#),
            ("1 s", r#"unknown unit " s" in duration "1 s""#),
            ("\u{FFFD}", r#"invalid duration "\xef\xbf\xbd""#),
            ("\u{FFFD} hello \u{FFFD} world", r#"invalid duration "\xef\xbf\xbd hello \xef\xbf\xbd world""#),
            ("1\"s", r#"unknown unit "\"s" in duration "1\"s""#),
            // overflow
            ("9223372036854775810ns", r#"invalid duration "9223372036854775810ns""#),
            ("9223372036854775808ns", r#"invalid duration "9223372036854775808ns""#),
            ("-9223372036854775809ns", r#"invalid duration "-9223372036854775809ns""#),
            ("9223372036854776us", r#"invalid duration "9223372036854776us""#),
            ("3000000h", r#"invalid duration "3000000h""#),
            ("9223372036854775.808us", r#"invalid duration "9223372036854775.808us""#),
            ("9223372036854ms775us808ns", r#"invalid duration "9223372036854ms775us808ns""#),
            // what the components' own parsers rejected
            ("5x", r#"unknown unit "x" in duration "5x""#),
            ("3x", r#"unknown unit "x" in duration "3x""#),
            ("10", r#"missing unit in duration "10""#),
        ] {
            assert_eq!(parse_nanos(input), Err(want.to_string()), "{input:?}");
        }
    }

    /// Flags: the same grammar into a `std::time::Duration`, never negative.
    /// A bare number is an error, as in Go (it once meant seconds to some
    /// components' flags: `"2"` → 2 s).
    #[test]
    fn flags() {
        let check = |input: &str, want: Result<Duration, &str>| {
            assert_eq!(parse(input), want.map_err(String::from), "{input:?}");
        };
        check("0", Ok(Duration::ZERO));
        check("-0", Ok(Duration::ZERO));
        check("300ms", Ok(Duration::from_millis(300)));
        check("1m30s", Ok(Duration::from_secs(90)));
        check("1.5µs", Ok(Duration::from_nanos(1500)));
        check("9223372036854775807ns", Ok(Duration::from_nanos(i64::MAX as u64)));
        check("-1.5h", Err(r#"negative duration "-1.5h""#));
        check("-1ns", Err(r#"negative duration "-1ns""#));
        check("2", Err(r#"missing unit in duration "2""#));
        check("5", Err(r#"missing unit in duration "5""#));
        check("", Err(r#"invalid duration """#));
        check(" 10s", Err(r#"invalid duration " 10s""#));
    }
}
