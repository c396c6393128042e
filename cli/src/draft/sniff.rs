//! What a draft reads from the values themselves when no flag says: the file's number format
//! (decimal comma, thousands separators) and a list column's separator.

use chute::rules::{parse_cell, ColumnType, Constraints};
use chute::value::NumberFormat;

/// Number formats a draft may detect, tried against the plain `1234.56`.
const FORMATS: [(char, Option<char>); 4] = [
    (',', None),
    (',', Some('.')),
    (',', Some(' ')),
    ('.', Some(',')),
];

/// A value made of digits and number marks only, with a `.` or `,` or space in it: the values a
/// number format decides about.
fn marked_number(v: &str) -> bool {
    let body = v.strip_prefix(['-', '+']).unwrap_or(v);
    body.bytes().any(|b| b.is_ascii_digit())
        && body.contains(['.', ',', ' ', '\u{a0}'])
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || ['.', ',', ' ', '\u{a0}'].contains(&c))
}

/// The number format the sample's values need, with why, when the plain format fails a column of
/// numbers and the other formats that read every such column agree on the decimal mark: `9,95`
/// alone is a decimal comma, `1.234,50` a decimal comma with `.` thousands, `1,234.50` `,`
/// thousands; `1,234` alone could be either, so it decides nothing. Columns are (name, values).
pub fn number_format(columns: &[(&str, &[String])]) -> Option<(NumberFormat, String)> {
    let c = Constraints::default();
    let reads = |f: &NumberFormat, vals: &[String]| {
        vals.iter()
            .all(|v| parse_cell(ColumnType::Decimal, &c, f, v).is_ok())
    };
    let numeric: Vec<_> = columns
        .iter()
        .filter(|(_, vals)| {
            !vals.is_empty()
                && vals
                    .iter()
                    .all(|v| marked_number(v) || v.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
                && vals.iter().any(|v| marked_number(v))
        })
        .collect();
    let (name, vals) = numeric
        .iter()
        .find(|(_, vals)| !reads(&NumberFormat::default(), vals))?;
    let fits: Vec<NumberFormat> = FORMATS
        .iter()
        .map(|&(decimal, thousands)| NumberFormat { decimal, thousands })
        .filter(|f| numeric.iter().all(|(_, vals)| reads(f, vals)))
        .collect();
    let decimal = fits.first()?.decimal;
    if fits.iter().any(|f| f.decimal != decimal) {
        return None;
    }
    let chosen = fits
        .iter()
        .find(|f| f.thousands.is_none())
        .unwrap_or(&fits[0]);
    let example = vals
        .iter()
        .find(|v| parse_cell(ColumnType::Decimal, &c, &NumberFormat::default(), v).is_err())
        .expect("a value the plain format refuses");
    Some((
        *chosen,
        format!(
            "`{name}` (`{example}`) reads as a number only as {}",
            chosen.example()
        ),
    ))
}

/// A separator a string column's values use consistently, with why: most values hold it, the
/// items are short (not prose), and no other candidate appears.
pub fn list_separator(vals: &[String], delimiter: u8) -> Option<(&'static str, String)> {
    let candidates = ["|", ";", ", "]
        .into_iter()
        .filter(|s| s.as_bytes() != [delimiter]);
    let used: Vec<&str> = candidates
        .filter(|s| vals.iter().any(|v| v.contains(s)))
        .collect();
    let [sep] = used[..] else { return None };
    let holding: Vec<&String> = vals.iter().filter(|v| v.contains(sep)).collect();
    let short = vals
        .iter()
        .flat_map(|v| v.split(sep))
        .map(str::trim)
        .all(|item| !item.is_empty() && item.chars().count() <= 30 && item.split(' ').count() <= 3);
    if holding.len() < 2 || holding.len() * 2 < vals.len() || !short {
        return None;
    }
    Some((
        sep,
        format!(
            "{} of {} values are separated by `{sep}` (`{}`): a list",
            holding.len(),
            vals.len(),
            holding[0]
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(vals: &[&str]) -> Vec<String> {
        vals.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn a_decimal_comma_is_found_and_an_ambiguous_column_decides_nothing() {
        let price = strings(&["1.234,50", "9,95"]);
        let (f, why) = number_format(&[("price", &price)]).unwrap();
        assert_eq!((f.decimal, f.thousands), (',', Some('.')), "{why}");
        let comma = strings(&["9,95", "12"]);
        let (f, _) = number_format(&[("price", &comma)]).unwrap();
        assert_eq!((f.decimal, f.thousands), (',', None));
        let us = strings(&["1,234.50", "3"]);
        let (f, _) = number_format(&[("price", &us)]).unwrap();
        assert_eq!((f.decimal, f.thousands), ('.', Some(',')));
        let ambiguous = strings(&["1,234", "2,500"]);
        assert!(number_format(&[("n", &ambiguous)]).is_none());
        // Another column disambiguates: `9,95` has two digits after the comma.
        let (f, _) = number_format(&[("n", &ambiguous), ("price", &comma)]).unwrap();
        assert_eq!(f.decimal, ',');
        let plain = strings(&["1.5", "2"]);
        assert!(number_format(&[("x", &plain)]).is_none());
        let spaced = strings(&["1\u{a0}234,56", "7"]);
        let (f, _) = number_format(&[("n", &spaced)]).unwrap();
        assert_eq!((f.decimal, f.thousands), (',', Some(' ')));
        let dates = strings(&["06.12.2026"]);
        assert!(number_format(&[("d", &dates)]).is_none());
    }

    #[test]
    fn a_consistent_separator_is_a_list_and_prose_is_not() {
        let tags = strings(&["a|b|c", "b|d", "e"]);
        assert_eq!(list_separator(&tags, b',').unwrap().0, "|");
        let semi = strings(&["red; blue", "green"]);
        assert!(list_separator(&semi, b';').is_none());
        assert!(list_separator(&strings(&["red;blue", "x;y"]), b',').is_some());
        let prose = strings(&[
            "Soft cotton, washed twice for a feel that lasts, in three colours",
            "Wool, warm",
        ]);
        assert!(list_separator(&prose, b',').is_none());
        assert!(list_separator(&strings(&["a|b", "c;d"]), b',').is_none());
    }
}
