//! Cell rules: how one trimmed, non-empty cell becomes a typed value or a rejection.
//!
//! This is the one place every rule lives. Each column type has one parser below, and the checks a
//! schema declares ([`Constraints`]) are applied right after it:
//!
//! | type | accepts | checks |
//! |---|---|---|
//! | string | any text (trimmed) | `min_length`/`max_length` in characters, `charset`, then `case` |
//! | decimal | `123`, `123.45`, `-1`, `.5`, `5.` (plain digits, optional `.`, no exponent or grouping; at most 34 significant digits) | `min`, `max`, `scale` (digits after `.`) |
//! | integer | `42`, `-7` | `min`, `max` |
//! | boolean | `true/false/yes/no/1/0`, any case | |
//! | timestamp | RFC 3339, or `YYYY-MM-DD` (midnight UTC) | |
//! | list | items split on `separator`, trimmed, empties dropped, duplicates dropped | |
//! | gtin | GTIN-8, UPC-A (12), EAN-13, GTIN-14 digits, stored as 14 digits (`00036000291452`) | GS1 check digit; scientific notation and stripped leading zeros are spreadsheet damage |
//!
//! ```
//! use chute::{rules, schema::Schema};
//! let schema = Schema::products();
//! let price = schema.column("price").unwrap();
//! let plain = chute::value::NumberFormat::default();
//! assert!(rules::parse_cell(price.kind, &price.constraints, &plain, "19.99").is_ok());
//! let err = rules::parse_cell(price.kind, &price.constraints, &plain, "19.999").unwrap_err();
//! assert_eq!(err.code, chute::Code::Constraint);
//! ```

mod damage;
mod gtin;

use std::borrow::Cow;
use std::cmp::Ordering;

use serde::Deserialize;

use crate::error::Code;
use crate::value::{
    excess_decimal_digits, parse_integer, parse_timestamp, trim, CellValue, Decimal, NumberFormat,
    MAX_DECIMAL_DIGITS,
};

pub use damage::{damage_of, Damage, DamagedValues};
pub use gtin::{parse_gtin, GTIN_LENGTHS};

/// Why one cell was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    pub code: Code,
    pub message: String,
}

impl CellError {
    fn new(code: Code, message: impl Into<String>) -> Self {
        CellError {
            code,
            message: message.into(),
        }
    }
}

/// The kinds of value a column can hold; each maps to one BSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Decimal,
    Integer,
    Boolean,
    Timestamp,
    List,
    /// A GS1 product identifier (GTIN-8, UPC-A, EAN-13, GTIN-14): see [`parse_gtin`].
    Gtin,
}

/// Case folding applied to a string after it passed its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Case {
    Upper,
    Lower,
}

/// The checks a cell must pass, beyond parsing as its type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Constraints {
    /// Length bounds in characters, after trimming.
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    /// Allowed characters, as ranges and single characters (`A-Za-z0-9._-`).
    pub charset: Option<Charset>,
    pub case: Option<Case>,
    /// Numeric bounds (decimal and integer columns), kept as text so decimals stay exact.
    pub min: Option<Decimal>,
    pub max: Option<Decimal>,
    /// Most digits allowed after the decimal point.
    pub scale: Option<u32>,
    /// List separator.
    pub separator: String,
}

/// A set of allowed characters written like a regex class body: `A-Za-z0-9._-`.
#[derive(Debug, Clone, PartialEq)]
pub struct Charset {
    pub spec: String,
    ranges: Vec<(char, char)>,
    /// Bit `c` set when ASCII character `c` is in the set: one test per character on the hot path.
    ascii: u128,
}

impl Charset {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let chars: Vec<char> = spec.chars().collect();
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            // A '-' is a range only between two characters; at either end it is literal.
            if i + 2 < chars.len() && chars[i + 1] == '-' {
                let (lo, hi) = (chars[i], chars[i + 2]);
                if lo > hi {
                    return Err(format!("charset `{spec}`: range {lo}-{hi} is backwards"));
                }
                ranges.push((lo, hi));
                i += 3;
            } else {
                ranges.push((chars[i], chars[i]));
                i += 1;
            }
        }
        let ascii = (0..128u8)
            .filter(|&b| in_ranges(&ranges, b as char))
            .fold(0u128, |bits, b| bits | 1 << b);
        Ok(Charset {
            spec: spec.to_string(),
            ranges,
            ascii,
        })
    }

    pub fn contains(&self, c: char) -> bool {
        if c.is_ascii() {
            self.ascii & (1 << c as u32) != 0
        } else {
            in_ranges(&self.ranges, c)
        }
    }
}

fn in_ranges(ranges: &[(char, char)], c: char) -> bool {
    ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

/// The error values a spreadsheet writes into a cell whose formula failed.
pub const SPREADSHEET_ERRORS: [&str; 7] = [
    "#N/A", "#VALUE!", "#REF!", "#DIV/0!", "#NAME?", "#NULL!", "#NUM!",
];

/// A spreadsheet's formula error (`#N/A`) where a value should be: refused whatever the column.
/// Out of line: [`parse_cell`] calls it only for a string starting with `#` or a failed parse.
#[cold]
#[inline(never)]
fn spreadsheet_error(text: &str) -> Option<CellError> {
    SPREADSHEET_ERRORS
        .iter()
        .find(|e| e.eq_ignore_ascii_case(text))
        .map(|e| {
            CellError::new(
                Code::SpreadsheetError,
                format!("holds the spreadsheet error {e}: a formula failed in the spreadsheet this file was exported from"),
            )
        })
}

/// Whether an identifier cell (a key, a barcode, a column the schema marks `identifier`) looks like
/// a number a spreadsheet rewrote in scientific notation (`1.23457E+11`): the digits it dropped are
/// gone, so such a value can never be trusted.
pub fn scientific_notation(text: &str) -> Option<CellError> {
    let (mantissa, exponent) = text.split_once(['E', 'e'])?;
    let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (int, frac) = mantissa.split_once(['.', ',']).unwrap_or((mantissa, "0"));
    (digits(int) && digits(frac) && digits(exponent)).then(|| {
        CellError::new(
            Code::SpreadsheetError,
            "is in scientific notation: a spreadsheet turned this identifier into a number and dropped digits; format the column as text before exporting",
        )
    })
}

/// Days from 1899-12-30 (Excel's day 0) to 1970-01-01.
const EXCEL_EPOCH_DAYS: i64 = 25_569;

/// An Excel date serial (`45992`, `45992.5`) where a date belongs, as the date it stands for.
fn excel_serial(text: &str) -> Option<String> {
    let (days, frac) = text.split_once('.').unwrap_or((text, "0"));
    if days.is_empty() || !days.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let days: i64 = days.parse().ok()?;
    // 1 = 1900-01-01 … 2958465 = 9999-12-31, the range Excel shows as dates.
    if !(1..=2_958_465).contains(&days) {
        return None;
    }
    let millis = (days - EXCEL_EPOCH_DAYS) * 86_400_000;
    let date = bson::DateTime::from_millis(millis)
        .try_to_rfc3339_string()
        .ok()?;
    Some(date[..10].to_string())
}

/// `parse` (the plain decimal or integer parser) applied to the cell: as it is in the default
/// format, else without the declared format's separators. The default path pays one comparison.
#[inline]
fn parse_number<T>(
    numbers: &NumberFormat,
    text: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, CellError> {
    if numbers.is_plain() {
        return Ok(parse(text));
    }
    Ok(parse(&declared_number(numbers, text)?))
}

/// The cell as plain digits under a declared number format (out of line, off the default path).
#[inline(never)]
fn declared_number(numbers: &NumberFormat, text: &str) -> Result<String, CellError> {
    numbers
        .normalise(text)
        .map(Cow::into_owned)
        .map_err(|m| CellError::new(Code::TypeError, m))
}

#[cold]
fn not_a_decimal(numbers: &NumberFormat, text: &str) -> CellError {
    let plain = if numbers.is_plain() {
        Some(text.to_string())
    } else {
        declared_number(numbers, text).ok()
    };
    if let Some(digits) = plain.as_deref().and_then(excess_decimal_digits) {
        return CellError::new(
            Code::TypeError,
            format!("has {digits} significant digits; a decimal holds at most {MAX_DECIMAL_DIGITS} (MongoDB's Decimal128): round it or store it as a string column"),
        );
    }
    let message = if numbers.is_plain() {
        "is not a decimal number (plain digits with an optional `.`, like 19.99)".to_string()
    } else {
        format!(
            "is not a decimal number in the declared format {}",
            numbers.example()
        )
    };
    CellError::new(Code::TypeError, message)
}

/// Parses and checks one cell that is non-empty after trimming (`text` is already trimmed).
/// `numbers` is how the file writes numbers (its [`crate::format::ResolvedFormat`]'s): a file's
/// setting, not the column's.
pub fn parse_cell<'a>(
    kind: ColumnType,
    c: &Constraints,
    numbers: &NumberFormat,
    text: &'a str,
) -> Result<CellValue<'a>, CellError> {
    // Any text is a string or a list, so a formula error is looked for first there (one byte
    // compare); other kinds fail to parse it and look for it on that error path only.
    if matches!(kind, ColumnType::String | ColumnType::List) && text.starts_with('#') {
        if let Some(e) = spreadsheet_error(text) {
            return Err(e);
        }
    }
    parse_typed(kind, c, numbers, text).map_err(|e| match e.code {
        Code::TypeError => spreadsheet_error(text).unwrap_or(e),
        _ => e,
    })
}

#[inline(always)]
fn parse_typed<'a>(
    kind: ColumnType,
    c: &Constraints,
    numbers: &NumberFormat,
    text: &'a str,
) -> Result<CellValue<'a>, CellError> {
    match kind {
        ColumnType::String => parse_string(c, text).map(CellValue::String),
        ColumnType::Decimal => {
            let d = parse_number(numbers, text, Decimal::parse)?
                .ok_or_else(|| not_a_decimal(numbers, text))?;
            if let Some(scale) = c.scale {
                if d.scale > scale {
                    return Err(CellError::new(
                        Code::Constraint,
                        format!("has more than {scale} decimal places"),
                    ));
                }
            }
            check_range(c, &d)?;
            Ok(CellValue::Decimal(d))
        }
        ColumnType::Integer => {
            let n = parse_number(numbers, text, parse_integer)?
                .ok_or_else(|| CellError::new(Code::TypeError, "is not a whole number"))?;
            let as_decimal = Decimal {
                negative: n < 0,
                coefficient: u128::from(n.unsigned_abs()),
                scale: 0,
            };
            check_range(c, &as_decimal)?;
            Ok(CellValue::Integer(n))
        }
        ColumnType::Boolean => {
            let is = |words: [&str; 3]| words.iter().any(|w| w.eq_ignore_ascii_case(text));
            if is(["true", "yes", "1"]) {
                Ok(CellValue::Boolean(true))
            } else if is(["false", "no", "0"]) {
                Ok(CellValue::Boolean(false))
            } else {
                Err(CellError::new(
                    Code::TypeError,
                    "is not a boolean (true/false, yes/no, 1/0)",
                ))
            }
        }
        ColumnType::Timestamp => parse_timestamp(text)
            .map(CellValue::Timestamp)
            .ok_or_else(|| match excel_serial(text) {
                Some(date) => CellError::new(
                    Code::SpreadsheetError,
                    format!("is an Excel date serial number (day {text} is {date}): a spreadsheet changed this date; format the column as yyyy-mm-dd text before exporting"),
                ),
                None => CellError::new(
                    Code::TypeError,
                    "is not a timestamp (RFC 3339 like 2026-11-22T10:00:00Z, or 2026-11-22)",
                ),
            }),
        ColumnType::Gtin => parse_gtin(text).map(|gtin| CellValue::String(Cow::Owned(gtin))),
        ColumnType::List => {
            let mut items: Vec<Cow<'a, str>> = Vec::new();
            for item in text
                .split(c.separator.as_str())
                .map(trim)
                .filter(|s| !s.is_empty())
            {
                if !items.iter().any(|seen| seen == item) {
                    items.push(Cow::Borrowed(item));
                }
            }
            Ok(CellValue::List(items))
        }
    }
}

fn parse_string<'a>(c: &Constraints, text: &'a str) -> Result<Cow<'a, str>, CellError> {
    let ascii = text.is_ascii();
    let length = if ascii {
        text.len()
    } else {
        text.chars().count()
    };
    if let Some(min) = c.min_length {
        if length < min {
            return Err(CellError::new(
                Code::Constraint,
                format!("is {length} characters long; at least {min} needed"),
            ));
        }
    }
    if let Some(max) = c.max_length {
        if length > max {
            return Err(CellError::new(
                Code::Constraint,
                format!("is {length} characters long; at most {max} allowed"),
            ));
        }
    }
    if let Some(charset) = &c.charset {
        if let Some(bad) = text.chars().find(|ch| !charset.contains(*ch)) {
            return Err(CellError::new(
                Code::Constraint,
                format!(
                    "contains {bad:?}; only the characters {} are allowed",
                    charset.spec
                ),
            ));
        }
    }
    let has = |ascii_test: fn(&u8) -> bool, test: fn(char) -> bool| {
        if ascii {
            text.as_bytes().iter().any(ascii_test)
        } else {
            text.chars().any(test)
        }
    };
    Ok(match c.case {
        Some(Case::Upper) if has(u8::is_ascii_lowercase, char::is_lowercase) => {
            Cow::Owned(text.to_uppercase())
        }
        Some(Case::Lower) if has(u8::is_ascii_uppercase, char::is_uppercase) => {
            Cow::Owned(text.to_lowercase())
        }
        _ => Cow::Borrowed(text),
    })
}

fn check_range(c: &Constraints, value: &Decimal) -> Result<(), CellError> {
    if let Some(min) = &c.min {
        if value.cmp_value(min) == Ordering::Less {
            return Err(CellError::new(
                Code::Constraint,
                format!("is below the minimum {min}"),
            ));
        }
    }
    if let Some(max) = &c.max {
        if value.cmp_value(max) == Ordering::Greater {
            return Err(CellError::new(
                Code::Constraint,
                format!("is above the maximum {max}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreadsheet_damage_is_named_as_such() {
        let c = Constraints::default();
        let plain = NumberFormat::default();
        let kinds = [
            ColumnType::String,
            ColumnType::List,
            ColumnType::Decimal,
            ColumnType::Integer,
            ColumnType::Boolean,
            ColumnType::Timestamp,
        ];
        for text in SPREADSHEET_ERRORS.iter().chain(&["#n/a"]) {
            for kind in kinds {
                let e = parse_cell(kind, &c, &plain, text).unwrap_err();
                assert_eq!(e.code, Code::SpreadsheetError, "{text} as {kind:?}");
            }
        }
        let declared = NumberFormat {
            decimal: ',',
            thousands: Some('.'),
        };
        let e = parse_cell(ColumnType::Decimal, &c, &declared, "#REF!").unwrap_err();
        assert_eq!(e.code, Code::SpreadsheetError);
        let two_places = Constraints {
            scale: Some(2),
            ..Constraints::default()
        };
        let e = parse_cell(ColumnType::Decimal, &two_places, &plain, "12.345").unwrap_err();
        assert_ne!(
            e.code,
            Code::SpreadsheetError,
            "a constraint is not spreadsheet damage"
        );
        assert!(parse_cell(ColumnType::String, &c, &plain, "#1 seller").is_ok());
        let e = parse_cell(ColumnType::Timestamp, &c, &plain, "45992").unwrap_err();
        assert_eq!(e.code, Code::SpreadsheetError);
        assert!(e.message.contains("2025-12-01"), "{}", e.message);
        let e = parse_cell(ColumnType::Timestamp, &c, &plain, "soon").unwrap_err();
        assert_eq!(e.code, Code::TypeError);
        for key in ["1.23457E+11", "9E+12", "1,5e-3"] {
            assert!(scientific_notation(key).is_some(), "{key}");
        }
        for key in ["E12", "SKU-1E5", "1.2E", "ABC"] {
            assert!(scientific_notation(key).is_none(), "{key}");
        }
    }

    #[test]
    fn a_decimal_too_long_for_decimal128_is_named_as_such() {
        let c = Constraints::default();
        let plain = NumberFormat::default();
        let price = "1234567890123456789012345678901234567.5";
        let e = parse_cell(ColumnType::Decimal, &c, &plain, price).unwrap_err();
        assert_eq!(e.code, Code::TypeError);
        assert!(
            e.message.contains("38 significant digits") && e.message.contains("Decimal128"),
            "{}",
            e.message
        );
        let comma = NumberFormat {
            decimal: ',',
            thousands: None,
        };
        let e = parse_cell(ColumnType::Decimal, &c, &comma, &price.replace('.', ",")).unwrap_err();
        assert!(e.message.contains("38 significant digits"), "{}", e.message);
        let e = parse_cell(ColumnType::Decimal, &c, &plain, "12x").unwrap_err();
        assert!(e.message.contains("not a decimal number"), "{}", e.message);
        assert_eq!(
            parse_cell(ColumnType::Decimal, &c, &plain, ".5").unwrap(),
            CellValue::Decimal(Decimal::parse("0.5").unwrap())
        );
        assert_eq!(
            parse_cell(ColumnType::Decimal, &c, &comma, ",5").unwrap(),
            CellValue::Decimal(Decimal::parse("0.5").unwrap())
        );
    }

    #[test]
    fn declared_number_formats_reach_decimal_and_integer_columns() {
        let c = Constraints::default();
        let numbers = NumberFormat {
            decimal: ',',
            thousands: Some('.'),
        };
        assert_eq!(
            parse_cell(ColumnType::Decimal, &c, &numbers, "1.234,56").unwrap(),
            CellValue::Decimal(Decimal::parse("1234.56").unwrap())
        );
        assert_eq!(
            parse_cell(ColumnType::Integer, &c, &numbers, "12.000").unwrap(),
            CellValue::Integer(12_000)
        );
        let e = parse_cell(ColumnType::Decimal, &c, &numbers, "1,234.56").unwrap_err();
        assert_eq!(e.code, Code::TypeError);
        assert!(e.message.contains("1.234,56"), "{}", e.message);
    }

    #[test]
    fn a_gtin_column_stores_the_normal_form() {
        let value = parse_cell(
            ColumnType::Gtin,
            &Constraints::default(),
            &NumberFormat::default(),
            "036000291452",
        )
        .unwrap();
        assert_eq!(value, CellValue::String(Cow::Borrowed("00036000291452")));
    }
}
