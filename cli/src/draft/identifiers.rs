//! Barcode and identifier columns in a draft: by their header's words or their values.

use chute::error::Code;
use chute::rules::parse_gtin;

/// A header's words, lower-cased: `Variant Barcode` → `variant`, `barcode`; `EAN-13` → `ean`, `13`.
fn words(name: &str) -> Vec<String> {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A header that names a barcode: a word `gtin`, `ean`, `upc` or `barcode`, bare or with its length
/// (`ean13`, `gtin14`).
pub fn names_a_barcode(name: &str) -> bool {
    words(name).iter().any(|w| {
        let stem = w.trim_end_matches(|c: char| c.is_ascii_digit());
        ["gtin", "ean", "upc", "barcode"].contains(&stem)
    })
}

/// A header that names an identifier (`Variant SKU`, `mpn`, `product_id`, `Part Number`), the
/// word found.
fn identifier_word(name: &str) -> Option<String> {
    let w = words(name);
    w.iter()
        .find(|w| ["sku", "mpn", "id", "code"].contains(&w.as_str()))
        .cloned()
        .or_else(|| {
            w.windows(2)
                .any(|p| p[0] == "part" && ["number", "no"].contains(&p[1].as_str()))
                .then(|| "part number".to_string())
        })
}

/// Whether a column is drafted `gtin`, and why: every sampled value is a GTIN with its GS1 check
/// digit, or the header names a barcode and every value is a GTIN or one a spreadsheet damaged
/// (drafted so, `chute check` rejects the damaged ones instead of storing them).
pub fn gtin_notes(name: &str, vals: &[String]) -> Option<Vec<String>> {
    let named = names_a_barcode(name);
    let mut damaged = Vec::new();
    for v in vals {
        match parse_gtin(v) {
            Ok(_) => {}
            Err(e) if named && e.code == Code::SpreadsheetError => damaged.push(v),
            Err(_) => return None,
        }
    }
    if vals.len() == damaged.len() {
        return None;
    }
    let mut notes = vec![if named {
        "named like a barcode and its values are GTINs: gtin (stored as 14 digits)".to_string()
    } else {
        "every sampled value is a GTIN (8, 12, 13 or 14 digits, valid GS1 check digit): gtin"
            .to_string()
    }];
    if let Some(first) = damaged.first() {
        let n = damaged.len();
        notes.push(format!(
            "Excel damaged {n} sampled value{} (`{first}`): rejected as spreadsheet_error; format the column as text before exporting",
            if n == 1 { "" } else { "s" }
        ));
    }
    Some(notes)
}

/// Why a string column is drafted `identifier = true`, if it is: its header names a barcode or an
/// identifier, or its values are digit strings with leading zeros.
pub fn identifier_note(name: &str, vals: &[String]) -> Option<String> {
    let why = if names_a_barcode(name) {
        "named like a barcode".to_string()
    } else if let Some(word) = identifier_word(name) {
        format!("named like an identifier (`{word}`)")
    } else {
        let padded = vals
            .iter()
            .find(|v| v.len() > 1 && v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit()))?;
        format!("digit strings with leading zeros (`{padded}`)")
    };
    Some(format!(
        "{why}: identifier = true, so a value a spreadsheet turned into a number (`3.65275E+11`) is rejected"
    ))
}
