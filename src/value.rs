//! Typed cell values and the lexical parsers behind them (decimal, integer, date), free of any
//! schema: [`crate::rules`] applies a column's type and checks with these, and schema defaults
//! are stored as these values.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

/// A parsed cell. Text borrows from the record when it needs no change, so the hot path does not
/// allocate per cell.
#[derive(Debug, Clone, PartialEq)]
pub enum CellValue<'a> {
    String(Cow<'a, str>),
    Decimal(Decimal),
    Integer(i64),
    Boolean(bool),
    /// Milliseconds since the Unix epoch, UTC.
    Timestamp(i64),
    List(Vec<Cow<'a, str>>),
}

impl CellValue<'_> {
    /// The same value borrowing from `self` (used to apply schema defaults without copying text).
    pub fn borrowed(&self) -> CellValue<'_> {
        match self {
            CellValue::String(s) => CellValue::String(Cow::Borrowed(s)),
            CellValue::List(items) => {
                CellValue::List(items.iter().map(|i| Cow::Borrowed(i.as_ref())).collect())
            }
            CellValue::Decimal(d) => CellValue::Decimal(*d),
            CellValue::Integer(n) => CellValue::Integer(*n),
            CellValue::Boolean(b) => CellValue::Boolean(*b),
            CellValue::Timestamp(t) => CellValue::Timestamp(*t),
        }
    }

    /// The value with no borrow left (schema defaults outlive the text they were parsed from).
    pub fn into_owned(self) -> CellValue<'static> {
        match self {
            CellValue::String(s) => CellValue::String(Cow::Owned(s.into_owned())),
            CellValue::List(items) => CellValue::List(
                items
                    .into_iter()
                    .map(|i| Cow::Owned(i.into_owned()))
                    .collect(),
            ),
            CellValue::Decimal(d) => CellValue::Decimal(d),
            CellValue::Integer(n) => CellValue::Integer(n),
            CellValue::Boolean(b) => CellValue::Boolean(b),
            CellValue::Timestamp(t) => CellValue::Timestamp(t),
        }
    }
}

/// Most significant digits a BSON Decimal128 holds.
pub const MAX_DECIMAL_DIGITS: usize = 34;

/// Plain decimal text split into its sign, integer digits and fraction digits (`-12.50`, `.5` and
/// `5.` as spreadsheets and databases read them), with its significant digit count; `None` when
/// the text is not one.
#[inline]
fn decimal_parts(text: &str) -> Option<(bool, &str, &str, usize)> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = int.trim_start_matches('0').len() + frac.len();
    Some((negative, int, frac, digits))
}

/// The significant digits of plain decimal text that has more than Decimal128 holds (a
/// 37-digit number is a number, only not one MongoDB can store exactly); `None` otherwise.
pub fn excess_decimal_digits(text: &str) -> Option<usize> {
    decimal_parts(text)
        .map(|(_, _, _, digits)| digits)
        .filter(|&digits| digits > MAX_DECIMAL_DIGITS)
}

/// An exact decimal: `coefficient × 10^-scale`, negative when `negative`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub negative: bool,
    pub coefficient: u128,
    pub scale: u32,
}

impl Decimal {
    /// Parses plain decimal text: optional `-`, digits, optional `.` and digits, with digits on at
    /// least one side of the `.` (`.5`, `5.`). No exponent, no `+`, no grouping, at most 34
    /// significant digits (what Decimal128 holds exactly).
    pub fn parse(text: &str) -> Option<Decimal> {
        let (negative, int, frac, digits) = decimal_parts(text)?;
        if digits > MAX_DECIMAL_DIGITS {
            return None;
        }
        let mut coefficient: u128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            coefficient = coefficient * 10 + u128::from(b - b'0');
        }
        Some(Decimal {
            negative: negative && coefficient != 0,
            coefficient,
            scale: frac.len() as u32,
        })
    }

    /// The IEEE 754-2008 BID encoding BSON uses for Decimal128 (little-endian), keeping the written
    /// scale so `19.90` stays `19.90`.
    pub fn to_decimal128_bytes(self) -> [u8; 16] {
        const EXPONENT_BIAS: i32 = 6176;
        let exponent = (EXPONENT_BIAS - self.scale as i32) as u128;
        let bits = (u128::from(self.negative) << 127) | (exponent << 113) | self.coefficient;
        bits.to_le_bytes()
    }

    /// Orders by numeric value (`19.9` = `19.90`), unlike the derived `Eq`, which compares as written.
    pub fn cmp_value(&self, other: &Decimal) -> Ordering {
        let sign = |d: &Decimal| if d.negative { -1 } else { 1 };
        match (self.negative, other.negative) {
            (false, true) => return Ordering::Greater,
            (true, false) => return Ordering::Less,
            _ => {}
        }
        if self.scale == other.scale {
            let magnitude = self.coefficient.cmp(&other.coefficient);
            return if self.negative {
                magnitude.reverse()
            } else {
                magnitude
            };
        }
        // Same sign: compare magnitudes at a common scale (fits: both are < 10^34, scales ≤ 34).
        let scale = self.scale.max(other.scale);
        let a = self.coefficient.checked_mul(10u128.pow(scale - self.scale));
        let b = other
            .coefficient
            .checked_mul(10u128.pow(scale - other.scale));
        let magnitude = match (a, b) {
            (Some(a), Some(b)) => a.cmp(&b),
            (None, _) => Ordering::Greater,
            (_, None) => Ordering::Less,
        };
        if sign(self) < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.coefficient.to_string();
        let scale = self.scale as usize;
        let sign = if self.negative { "-" } else { "" };
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

/// How a file writes numbers: its decimal mark and an optional thousands separator (`1.234,56`,
/// `1 234,56`, `1,234.56`), declared per schema, source or file (see [`crate::input`]). Cells are
/// rewritten to plain `1234.56` before [`Decimal::parse`], so values stay exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NumberFormat {
    pub decimal: char,
    pub thousands: Option<char>,
}

impl Default for NumberFormat {
    fn default() -> Self {
        NumberFormat {
            decimal: '.',
            thousands: None,
        }
    }
}

/// Spaces a spreadsheet may write for a `' '` thousands separator.
const SPACES: [char; 3] = [' ', '\u{a0}', '\u{202f}'];

impl NumberFormat {
    /// The default `1234.56`: cells go to the parsers untouched.
    pub fn is_plain(&self) -> bool {
        self.decimal == '.' && self.thousands.is_none()
    }

    /// The format as an example (`1.234,56`), as messages and the report name it.
    pub fn example(&self) -> String {
        let thousands = self.thousands.map(String::from).unwrap_or_default();
        format!("1{thousands}234{}56", self.decimal)
    }

    fn is_thousands(&self, c: char) -> bool {
        match self.thousands {
            Some(' ') => SPACES.contains(&c),
            Some(t) => c == t,
            None => false,
        }
    }

    /// `text` as plain digits with an optional `.` (what [`Decimal::parse`] and [`parse_integer`]
    /// read), or why it is not a number under this format: a mark the format does not use (`1.234`
    /// under `1234,56` could mean 1.234 or 1234, so it is refused, not guessed) or a misplaced
    /// separator (`1.23,4` under `1.234,56`).
    pub fn normalise<'t>(&self, text: &'t str) -> Result<Cow<'t, str>, String> {
        if self.is_plain() {
            return Ok(Cow::Borrowed(text));
        }
        let other = if self.decimal == '.' { ',' } else { '.' };
        let (sign, body) = match text.strip_prefix('-') {
            Some(rest) => ("-", rest),
            None => ("", text),
        };
        let (int, frac) = match body.split_once(self.decimal) {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        };
        let named = || {
            let thousands = match self.thousands {
                Some(' ') => "a space".to_string(),
                Some(t) => format!("`{t}`"),
                None => "none".to_string(),
            };
            format!(
                "the declared number format {} (decimal `{}`, thousands separator {thousands})",
                self.example(),
                self.decimal
            )
        };
        if body.contains(other) && self.thousands != Some(other) {
            return Err(format!(
                "is ambiguous under {}: `{other}` is not part of it",
                named()
            ));
        }
        let mut plain = String::with_capacity(text.len());
        plain.push_str(sign);
        let groups: Vec<&str> = int.split(|c| self.is_thousands(c)).collect();
        let grouped = groups.len() > 1;
        for (i, group) in groups.iter().enumerate() {
            let fits = if !grouped {
                true
            } else if i == 0 {
                (1..=3).contains(&group.len())
            } else {
                group.len() == 3
            };
            if !fits || !group.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("is not a number under {}", named()));
            }
            plain.push_str(group);
        }
        if let Some(frac) = frac {
            if frac.contains(|c| self.is_thousands(c)) {
                return Err(format!("is not a number under {}", named()));
            }
            plain.push('.');
            plain.push_str(frac);
        }
        Ok(Cow::Owned(plain))
    }
}

/// Trims Unicode whitespace as `str::trim` does, without scanning when the ends are plain ASCII.
pub fn trim(text: &str) -> &str {
    let plain = |b: Option<&u8>| b.is_some_and(|&b| b > b' ' && b < 0x7f);
    if plain(text.as_bytes().first()) && plain(text.as_bytes().last()) {
        text
    } else {
        text.trim()
    }
}

pub fn parse_integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// RFC 3339, or a bare `YYYY-MM-DD` taken as midnight UTC; milliseconds since the epoch.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        return parse_date(b).map(|days| days * 86_400_000);
    }
    bson::DateTime::parse_rfc3339_str(text)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (years 0000–9999, real calendar days only).
fn parse_date(b: &[u8]) -> Option<i64> {
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(&b[..4])?, number(&b[5..7])?, number(&b[8..])?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > month_days {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_agree_with_the_rfc3339_parser_on_every_day_of_three_centuries() {
        let mut day = bson::DateTime::parse_rfc3339_str("1900-01-01T00:00:00Z").unwrap();
        let end = bson::DateTime::parse_rfc3339_str("2200-12-31T00:00:00Z").unwrap();
        let mut checked = 0;
        while day <= end {
            let text = &day.try_to_rfc3339_string().unwrap()[..10];
            assert_eq!(
                parse_timestamp(text),
                Some(day.timestamp_millis()),
                "{text}"
            );
            day = bson::DateTime::from_millis(day.timestamp_millis() + 86_400_000);
            checked += 1;
        }
        assert_eq!(checked, 301 * 365 + 73); // 73 leap days: 1904..=2196 but not 2100
    }

    #[test]
    fn a_decimal_may_leave_out_the_digits_on_one_side_of_its_point() {
        let parsed = |text| Decimal::parse(text).map(|d| d.to_string());
        assert_eq!(parsed(".5").as_deref(), Some("0.5"));
        assert_eq!(parsed("-.25").as_deref(), Some("-0.25"));
        assert_eq!(parsed("5.").as_deref(), Some("5"));
        for text in [".", "-.", "-", "", "5.5.", "..5", "+.5", "1e5"] {
            assert_eq!(Decimal::parse(text), None, "{text:?}");
        }
        let long = "1234567890123456789012345678901234567";
        assert_eq!(Decimal::parse(long), None);
        assert_eq!(excess_decimal_digits(long), Some(37));
        assert_eq!(excess_decimal_digits(&format!("0.{}", &long[..34])), None);
        assert_eq!(excess_decimal_digits("12x"), None);
    }

    #[test]
    fn impossible_dates_are_refused() {
        for text in [
            "2025-02-29",
            "2100-02-29",
            "2026-04-31",
            "2026-13-01",
            "2026-00-10",
            "2026-01-00",
            "2026-1a-01",
            "+026-01-01",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text}");
        }
        assert!(parse_timestamp("2024-02-29").is_some());
        assert!(parse_timestamp("2000-02-29").is_some());
    }

    #[test]
    fn number_formats_normalise_exactly_and_refuse_what_they_cannot_tell() {
        let format = |decimal, thousands| NumberFormat { decimal, thousands };
        let comma_dot = format(',', Some('.'));
        assert_eq!(comma_dot.normalise("1.234,56").unwrap(), "1234.56");
        assert_eq!(comma_dot.normalise("-1.234.567,5").unwrap(), "-1234567.5");
        assert_eq!(comma_dot.normalise("12,5").unwrap(), "12.5");
        assert_eq!(comma_dot.normalise("1.234").unwrap(), "1234");
        assert!(comma_dot.normalise("1.23,4").is_err());
        assert!(comma_dot
            .normalise("1,234.56")
            .unwrap_err()
            .contains("1.234,56"));
        let space = format(',', Some(' '));
        assert_eq!(space.normalise("1 234,56").unwrap(), "1234.56");
        assert_eq!(space.normalise("1\u{a0}234,56").unwrap(), "1234.56");
        let us = format('.', Some(','));
        assert_eq!(us.normalise("1,234.56").unwrap(), "1234.56");
        assert!(us.normalise("1,23").is_err());
        let comma = format(',', None);
        assert_eq!(comma.normalise("19,99").unwrap(), "19.99");
        let ambiguous = comma.normalise("1.234").unwrap_err();
        assert!(
            ambiguous.contains("ambiguous") && ambiguous.contains("1234,56"),
            "{ambiguous}"
        );
        assert_eq!(NumberFormat::default().normalise("1,5").unwrap(), "1,5");
    }

    #[test]
    fn trim_matches_str_trim() {
        for text in ["a", " a", "a ", "\u{a0}a\u{2003}", "\ta\n", "", " ", "ab c"] {
            assert_eq!(trim(text), text.trim(), "{text:?}");
        }
    }
}
