//! Go duration strings (`300ms`, `1.5s`, `2h45m`), as every Kubernetes
//! component's flags take them (`time.ParseDuration`). One parser, shared.

use std::time::Duration;

/// Parses a Go duration: `<number><unit>` repeated, units `ns`, `us`/`µs`,
/// `ms`, `s`, `m`, `h`; a bare `0` is zero.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("missing unit in duration {s:?}")),
            u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
        };
        total += n * unit;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<f64, ()>) {
        assert_eq!(parse(input).map(|d| d.as_secs_f64()).map_err(|_| ()), expected, "{input:?}");
    }

    #[test]
    fn go_durations() {
        check("0", Ok(0.0));
        check("300ms", Ok(0.3));
        check("1.5s", Ok(1.5));
        check("2h45m", Ok(9900.0));
        check("40s", Ok(40.0));
        check("", Err(()));
        check("5", Err(()));
        check("5x", Err(()));
        check("s", Err(()));
    }
}
