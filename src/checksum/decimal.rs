//! Exact sums of DECIMAL text, for money reconciliation: a paisa off in a
//! crore must show, so no floating point and no fixed width.

use std::cmp::Ordering;

/// A signed decimal with arbitrary digits: `digits` × 10^-`scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    /// Most significant first, no leading zeros (empty means zero).
    digits: Vec<u8>,
    scale: usize,
}

impl Decimal {
    pub fn zero() -> Decimal {
        Decimal {
            negative: false,
            digits: Vec::new(),
            scale: 0,
        }
    }

    /// Parse the text a server prints for a DECIMAL (`-12.50`, `0.01`, `7`).
    pub fn parse(text: &str) -> Option<Decimal> {
        let text = text.trim();
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let mut digits = Vec::with_capacity(whole.len() + fraction.len());
        for c in whole.chars().chain(fraction.chars()) {
            digits.push(c.to_digit(10)? as u8);
        }
        Some(
            Decimal {
                negative,
                digits,
                scale: fraction.len(),
            }
            .normalised(),
        )
    }

    fn normalised(mut self) -> Decimal {
        let leading = self.digits.iter().take_while(|d| **d == 0).count();
        self.digits.drain(..leading);
        if self.digits.is_empty() {
            self.negative = false;
        }
        self
    }

    fn with_scale(&self, scale: usize) -> Vec<u8> {
        let mut digits = self.digits.clone();
        digits.extend(std::iter::repeat_n(0, scale - self.scale));
        digits
    }

    pub fn negated(&self) -> Decimal {
        Decimal {
            negative: !self.negative && !self.digits.is_empty(),
            ..self.clone()
        }
    }

    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    pub fn add(&self, other: &Decimal) -> Decimal {
        let scale = self.scale.max(other.scale);
        let a = self.with_scale(scale);
        let b = other.with_scale(scale);
        let (negative, digits) = if self.negative == other.negative {
            (self.negative, add_magnitudes(&a, &b))
        } else {
            match compare_magnitudes(&a, &b) {
                Ordering::Equal => (false, Vec::new()),
                Ordering::Greater => (self.negative, subtract_magnitudes(&a, &b)),
                Ordering::Less => (other.negative, subtract_magnitudes(&b, &a)),
            }
        };
        Decimal {
            negative,
            digits,
            scale,
        }
        .normalised()
    }

    pub fn subtract(&self, other: &Decimal) -> Decimal {
        self.add(&other.negated())
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut digits: Vec<u8> = self.digits.clone();
        if digits.len() <= self.scale {
            let pad = self.scale + 1 - digits.len();
            digits.splice(0..0, std::iter::repeat_n(0, pad));
        }
        let split = digits.len() - self.scale;
        let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(&text[..split])?;
        if self.scale > 0 {
            write!(f, ".{}", &text[split..])?;
        }
        Ok(())
    }
}

fn compare_magnitudes(a: &[u8], b: &[u8]) -> Ordering {
    let a = &a[a.iter().take_while(|d| **d == 0).count()..];
    let b = &b[b.iter().take_while(|d| **d == 0).count()..];
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn add_magnitudes(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut result = Vec::with_capacity(a.len().max(b.len()) + 1);
    let (mut i, mut j, mut carry) = (a.len(), b.len(), 0u8);
    while i > 0 || j > 0 || carry > 0 {
        let mut sum = carry;
        if i > 0 {
            i -= 1;
            sum += a[i];
        }
        if j > 0 {
            j -= 1;
            sum += b[j];
        }
        result.push(sum % 10);
        carry = sum / 10;
    }
    result.reverse();
    result
}

/// `a - b` where `a >= b`.
fn subtract_magnitudes(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut result = Vec::with_capacity(a.len());
    let (mut j, mut borrow) = (b.len(), 0i8);
    for i in (0..a.len()).rev() {
        let mut digit = a[i] as i8 - borrow;
        if j > 0 {
            j -= 1;
            digit -= b[j] as i8;
        }
        borrow = i8::from(digit < 0);
        result.push((digit + 10 * borrow) as u8);
    }
    result.reverse();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::parse(text).unwrap()
    }

    #[test]
    fn sums_are_exact_to_the_last_digit() {
        assert_eq!(d("0.1").add(&d("0.2")).to_string(), "0.3");
        assert_eq!(
            d("99999999999999999999.99").add(&d("0.01")).to_string(),
            "100000000000000000000.00"
        );
        assert_eq!(d("12.50").add(&d("-12.5")).to_string(), "0.00");
        assert_eq!(d("-3.25").add(&d("1")).to_string(), "-2.25");
        assert_eq!(d("1").subtract(&d("1.0001")).to_string(), "-0.0001");
        assert_eq!(d("0.00").to_string(), "0.00");
        assert_eq!(Decimal::zero().add(&d("5.10")).to_string(), "5.10");
    }

    #[test]
    fn a_paisa_is_seen_in_a_long_column() {
        let mut total = Decimal::zero();
        for _ in 0..10_000 {
            total = total.add(&d("1234567.89"));
        }
        let other = total.add(&d("0.01"));
        assert_eq!(total.to_string(), "12345678900.00");
        assert_eq!(other.subtract(&total).to_string(), "0.01");
        assert!(!other.subtract(&total).is_zero());
    }

    #[test]
    fn rejects_what_is_not_a_decimal() {
        assert!(Decimal::parse("").is_none());
        assert!(Decimal::parse("1e5").is_none());
        assert!(Decimal::parse("abc").is_none());
    }
}
