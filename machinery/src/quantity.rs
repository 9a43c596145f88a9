//! Resource quantities (`100m`, `1.5Gi`, `1e3`) as integers.
//!
//! Kubernetes writes every resource amount as a *Quantity* string
//! (k8s.io/apimachinery/pkg/api/resource). The grammar, as apimachinery
//! documents it:
//!
//! ```text
//! <quantity>        ::= <signedNumber><suffix>
//! <signedNumber>    ::= <number> | <sign><number>
//! <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
//! <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
//! <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
//! <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
//! <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>
//! ```
//!
//! Components never need the exact decimal: the scheduler compares CPU in
//! milli-cores and memory in bytes. So, as apimachinery's `MilliValue()` and
//! `Value()` do, we convert to an integer **rounded up, away from zero**
//! (`0.1m` of CPU is 1m, `0.5` bytes is 1 byte): a request is never rounded
//! down to something that would fit where the real amount would not.
//!
//! Where we differ: apimachinery keeps arbitrary precision (big integers) and
//! saturates huge values; we compute exactly in 128-bit integers and return an
//! error if the result does not fit in an `i64` (no real resource is that big).

use std::fmt;

/// Why a string is not a valid Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuantityError {
    /// Empty string.
    Empty,
    /// Not `[sign]number[suffix]`, or an unknown suffix.
    Malformed(String),
    /// Valid syntax, but the value does not fit in an `i64` at the asked scale.
    OutOfRange(String),
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantityError::Empty => write!(f, "quantity is empty"),
            // Same wording as apimachinery's ErrFormatWrong.
            QuantityError::Malformed(s) => write!(
                f,
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {s:?}"
            ),
            QuantityError::OutOfRange(s) => write!(f, "quantity {s:?} is out of range"),
        }
    }
}

impl std::error::Error for QuantityError {}

/// A parsed quantity: `sign * mantissa / 10^frac_digits * multiplier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    negative: bool,
    mantissa: u128,
    frac_digits: u32,
    mult: Mult,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mult {
    /// × 1024^k (Ki = 1 … Ei = 6).
    Binary(u32),
    /// × 10^e (decimal SI suffixes and `e`/`E` exponents).
    Decimal(i32),
}

fn malformed(s: &str) -> QuantityError {
    QuantityError::Malformed(s.to_string())
}

fn parse(s: &str) -> Result<Parsed, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut negative = false;
    if b[0] == b'+' || b[0] == b'-' {
        negative = b[0] == b'-';
        i = 1;
    }
    let mut mantissa: u128 = 0;
    let mut frac_digits: u32 = 0;
    let mut digits = 0;
    let mut seen_dot = false;
    while i < b.len() {
        match b[i] {
            c @ b'0'..=b'9' => {
                digits += 1;
                // Trailing fraction zeros add nothing; dropping them keeps
                // `1.50000000000000000000000000000000000000` representable.
                if seen_dot && c == b'0' {
                    // Count it lazily: only matters if a non-zero digit follows.
                    let rest_zero_until = b[i..].iter().take_while(|&&d| d == b'0').count();
                    let next = b.get(i + rest_zero_until);
                    if !matches!(next, Some(b'1'..=b'9')) {
                        i += rest_zero_until;
                        continue;
                    }
                }
                mantissa = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add((c - b'0') as u128))
                    .ok_or_else(|| QuantityError::OutOfRange(s.to_string()))?;
                if seen_dot {
                    frac_digits += 1;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return Err(malformed(s));
    }
    let suffix = &s[i..];
    let mult = match suffix {
        "Ki" => Mult::Binary(1),
        "Mi" => Mult::Binary(2),
        "Gi" => Mult::Binary(3),
        "Ti" => Mult::Binary(4),
        "Pi" => Mult::Binary(5),
        "Ei" => Mult::Binary(6),
        "n" => Mult::Decimal(-9),
        "u" => Mult::Decimal(-6),
        "m" => Mult::Decimal(-3),
        "" => Mult::Decimal(0),
        "k" => Mult::Decimal(3),
        "M" => Mult::Decimal(6),
        "G" => Mult::Decimal(9),
        "T" => Mult::Decimal(12),
        "P" => Mult::Decimal(15),
        "E" => Mult::Decimal(18),
        _ if suffix.starts_with(['e', 'E']) => {
            // Decimal exponent: an integer with optional sign (`1e3`, `5E-2`).
            let exp = &suffix[1..];
            let digits_part = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits_part.is_empty() || !digits_part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(malformed(s));
            }
            let e: i32 = exp.parse().map_err(|_| QuantityError::OutOfRange(s.to_string()))?;
            if !(-60..=60).contains(&e) {
                return Err(QuantityError::OutOfRange(s.to_string()));
            }
            Mult::Decimal(e)
        }
        _ => return Err(malformed(s)),
    };
    Ok(Parsed { negative, mantissa, frac_digits, mult })
}

fn pow10(e: u32) -> Option<u128> {
    10u128.checked_pow(e)
}

/// Value × 10^scale_exp, rounded up away from zero, as an i64.
fn scaled(s: &str, scale_exp: u32) -> Result<i64, QuantityError> {
    let p = parse(s)?;
    let oor = || QuantityError::OutOfRange(s.to_string());
    // value = mantissa * mult / 10^frac_digits; we want value * 10^scale_exp.
    let mut num = p.mantissa;
    let mut den: u128 = pow10(p.frac_digits).ok_or_else(oor)?;
    let mut dec_exp: i32 = scale_exp as i32;
    match p.mult {
        Mult::Binary(k) => num = num.checked_mul(1u128 << (10 * k)).ok_or_else(oor)?,
        Mult::Decimal(e) => dec_exp += e,
    }
    if dec_exp >= 0 {
        num = num.checked_mul(pow10(dec_exp as u32).ok_or_else(oor)?).ok_or_else(oor)?;
    } else {
        den = den.checked_mul(pow10((-dec_exp) as u32).ok_or_else(oor)?).ok_or_else(oor)?;
    }
    let mut q = num / den;
    if num % den != 0 {
        q += 1; // round up, away from zero (apimachinery's ScaledValue does the same)
    }
    let q = i128::try_from(q).map_err(|_| oor())?;
    let v = if p.negative { -q } else { q };
    i64::try_from(v).map_err(|_| oor())
}

/// The quantity in milli-units, rounded up: what CPU is compared in.
/// `"100m"` → 100, `"0.5"` → 500, `"1"` → 1000, `"1e-4"` → 1.
pub fn parse_milli(s: &str) -> Result<i64, QuantityError> {
    scaled(s, 3)
}

/// The quantity in whole units, rounded up: bytes for memory and storage,
/// a count for `pods`. `"1Ki"` → 1024, `"1.5Gi"` → 1610612736, `"100m"` → 1.
pub fn parse_value(s: &str) -> Result<i64, QuantityError> {
    scaled(s, 0)
}

/// Checks the syntax only (what the apiserver needs to reject a request).
pub fn validate(s: &str) -> Result<(), QuantityError> {
    parse(s).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, milli: Result<i64, ()>, value: Result<i64, ()>) {
        assert_eq!(parse_milli(input).map_err(|_| ()), milli, "milli of {input:?}");
        assert_eq!(parse_value(input).map_err(|_| ()), value, "value of {input:?}");
    }

    #[test]
    fn parses_like_apimachinery() {
        let cases: &[(&str, Result<i64, ()>, Result<i64, ()>)] = &[
            ("0", Ok(0), Ok(0)),
            ("1", Ok(1000), Ok(1)),
            ("100m", Ok(100), Ok(1)),
            ("1500m", Ok(1500), Ok(2)),
            ("0.5", Ok(500), Ok(1)),
            (".5", Ok(500), Ok(1)),
            ("5.", Ok(5000), Ok(5)),
            ("+2", Ok(2000), Ok(2)),
            ("-1", Ok(-1000), Ok(-1)),
            ("-0.5", Ok(-500), Ok(-1)),
            ("1k", Ok(1_000_000), Ok(1000)),
            ("1M", Ok(1_000_000_000), Ok(1_000_000)),
            ("2G", Ok(2_000_000_000_000), Ok(2_000_000_000)),
            ("1T", Ok(1_000_000_000_000_000), Ok(1_000_000_000_000)),
            ("1P", Ok(1_000_000_000_000_000_000), Ok(1_000_000_000_000_000)),
            ("1E", Err(()), Ok(1_000_000_000_000_000_000)),
            ("1Ki", Ok(1_024_000), Ok(1024)),
            ("1Mi", Ok(1_048_576_000), Ok(1_048_576)),
            ("1.5Gi", Ok(1_610_612_736_000), Ok(1_610_612_736)),
            ("2Ti", Ok(2_199_023_255_552_000), Ok(2_199_023_255_552)),
            ("1Pi", Ok(1_125_899_906_842_624_000), Ok(1_125_899_906_842_624)),
            ("1Ei", Err(()), Ok(1_152_921_504_606_846_976)),
            ("1e3", Ok(1_000_000), Ok(1000)),
            ("1E3", Ok(1_000_000), Ok(1000)),
            ("1e-3", Ok(1), Ok(1)),
            ("1e-4", Ok(1), Ok(1)),
            ("5e+2", Ok(500_000), Ok(500)),
            ("100n", Ok(1), Ok(1)),
            ("1u", Ok(1), Ok(1)),
            ("1000000u", Ok(1000), Ok(1)),
            ("0.1m", Ok(1), Ok(1)),
            ("200Mi", Ok(209_715_200_000), Ok(209_715_200)),
            ("1.50000000000000000000000000000000000000000", Ok(1500), Ok(2)),
            ("000123", Ok(123_000), Ok(123)),
            // Malformed.
            ("", Err(()), Err(())),
            ("m", Err(()), Err(())),
            (".", Err(()), Err(())),
            ("1.2.3", Err(()), Err(())),
            ("1 Gi", Err(()), Err(())),
            ("1gi", Err(()), Err(())),
            ("1Ki1", Err(()), Err(())),
            ("1e", Err(()), Err(())),
            ("1e+", Err(()), Err(())),
            ("1e1.5", Err(()), Err(())),
            ("abc", Err(()), Err(())),
            ("--1", Err(()), Err(())),
            ("1K", Err(()), Err(())),
            // Too big for i64.
            ("1e30", Err(()), Err(())),
        ];
        for (input, milli, value) in cases {
            check(input, *milli, *value);
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(parse_value(""), Err(QuantityError::Empty));
        assert!(matches!(parse_value("1x"), Err(QuantityError::Malformed(_))));
        assert!(matches!(parse_value("99999999999999999999"), Err(QuantityError::OutOfRange(_))));
        assert!(validate("1.5Gi").is_ok());
        assert!(validate("1.5GB").is_err());
    }
}
