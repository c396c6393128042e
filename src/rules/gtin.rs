//! Product identifiers: GS1 GTINs as barcodes write them, and what a spreadsheet does to them.

use super::{scientific_notation, CellError};
use crate::error::Code;

/// The lengths a GTIN is written in: GTIN-8, UPC-A (GTIN-12), EAN-13, GTIN-14.
pub const GTIN_LENGTHS: [usize; 4] = [8, 12, 13, 14];

/// A GTIN in its one normal form: 14 digits, zero-padded on the left, so a UPC-A and the EAN-13
/// that writes it with a leading zero are the same product. Refused: a wrong GS1 check digit
/// (`check_digit`), another length (`constraint`), and what a spreadsheet does to a barcode it
/// took for a number (`spreadsheet_error`): scientific notation (`3.65275E+11`, digits lost) or
/// leading zeros stripped (a value that becomes a valid GTIN once zero-padded).
pub fn parse_gtin(text: &str) -> Result<String, CellError> {
    if let Some(damage) = scientific_notation(text) {
        return Err(damage);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CellError::new(
            Code::TypeError,
            "is not a GTIN (8, 12, 13 or 14 digits, nothing else)",
        ));
    }
    if GTIN_LENGTHS.contains(&text.len()) {
        let expected = gs1_check_digit(&text[..text.len() - 1]);
        let written = text.as_bytes()[text.len() - 1] - b'0';
        if written != expected {
            return Err(CellError::new(
                Code::CheckDigit,
                format!("ends in check digit {written}, but the GS1 check digit of its first {} digits is {expected}: a digit is mistyped", text.len() - 1),
            ));
        }
        return Ok(format!("{text:0>14}"));
    }
    let padded = format!("{text:0>14}");
    if text.len() < 14 && gs1_check_digit(&padded[..13]) == padded.as_bytes()[13] - b'0' {
        return Err(CellError::new(
            Code::SpreadsheetError,
            format!("has {} digits and is a valid GTIN once zero-padded: a spreadsheet stripped its leading zeros; format the column as text before exporting", text.len()),
        ));
    }
    Err(CellError::new(
        Code::Constraint,
        format!("has {} digits; a GTIN has 8, 12, 13 or 14", text.len()),
    ))
}

/// The GS1 check digit of `digits` (all but the check digit): weights 3, 1, 3, … from the right.
fn gs1_check_digit(digits: &str) -> u8 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_upc_and_its_ean_form_are_one_gtin() {
        let upc = parse_gtin("036000291452").unwrap();
        assert_eq!(upc, "00036000291452");
        assert_eq!(parse_gtin("0036000291452").unwrap(), upc);
        assert_eq!(parse_gtin("00036000291452").unwrap(), upc);
        assert_eq!(parse_gtin("4006381333931").unwrap(), "04006381333931");
        assert_eq!(parse_gtin("96385074").unwrap(), "00000096385074");
        assert_eq!(parse_gtin("10614141000415").unwrap(), "10614141000415");
    }

    #[test]
    fn a_gtin_is_refused_with_a_code_that_says_what_is_wrong() {
        let code = |text: &str| parse_gtin(text).unwrap_err().code;
        // One digit changed: the check digit no longer matches.
        assert_eq!(code("036000291453"), Code::CheckDigit);
        assert_eq!(code("4006381333932"), Code::CheckDigit);
        let message = parse_gtin("036000291453").unwrap_err().message;
        assert!(
            message.contains("GS1 check digit of its first 11 digits is 2"),
            "{message}"
        );
        // What Excel does to a barcode column it took for numbers.
        assert_eq!(code("3.65275E+11"), Code::SpreadsheetError);
        assert_eq!(
            code("36000291452"),
            Code::SpreadsheetError,
            "UPC without its leading zero"
        );
        // Neither a GTIN length nor a stripped one.
        assert_eq!(code("1234567"), Code::Constraint);
        assert_eq!(code("123456789012345"), Code::Constraint);
        assert_eq!(code("03600029145X"), Code::TypeError);
        assert_eq!(code("0360-0029-1452"), Code::TypeError);
    }
}
