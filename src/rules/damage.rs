//! What a schema does with an identifier a spreadsheet damaged (`damage = "reject"`, the default,
//! or `"warn"`), and the warning's count of the values kept as written.

use serde::{Deserialize, Serialize};

use super::{parse_gtin, scientific_notation, ColumnType};
use crate::error::Code;

/// A column's answer to spreadsheet damage ([`super::scientific_notation`], stripped zeros).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Damage {
    /// The row is rejected with `spreadsheet_error`.
    #[default]
    Reject,
    /// The value is kept as written and the report warns, counting such values per column.
    Warn,
}

/// Values of one column, of one kind of damage, kept as written (of a chunk, or of the file once
/// merged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedValues {
    pub column: String,
    /// `in scientific notation` or `with their leading zeros stripped`.
    pub damage: String,
    pub values: u64,
    /// The first such value's row (data rows from 1).
    pub first_row: u64,
}

/// What a spreadsheet did to an identifier written `text`, if anything: the phrase the warning uses.
pub fn damage_of(kind: ColumnType, text: &str) -> Option<&'static str> {
    if scientific_notation(text).is_some() {
        Some("in scientific notation")
    } else if kind == ColumnType::Gtin
        && parse_gtin(text).is_err_and(|e| e.code == Code::SpreadsheetError)
    {
        Some("with their leading zeros stripped")
    } else {
        None
    }
}

impl DamagedValues {
    /// Counts one damaged value of `column` at `row` into a chunk's findings.
    pub fn count(found: &mut Vec<DamagedValues>, column: &str, damage: &str, row: u64) {
        match found
            .iter_mut()
            .find(|d| d.column == column && d.damage == damage)
        {
            Some(d) => d.values += 1,
            None => found.push(DamagedValues {
                column: column.to_string(),
                damage: damage.to_string(),
                values: 1,
                first_row: row,
            }),
        }
    }

    /// The chunks' findings as one per column and damage, in the order of their first rows.
    pub fn merge<'a>(chunks: impl IntoIterator<Item = &'a DamagedValues>) -> Vec<DamagedValues> {
        let mut merged: Vec<DamagedValues> = Vec::new();
        for d in chunks {
            match merged
                .iter_mut()
                .find(|m| m.column == d.column && m.damage == d.damage)
            {
                Some(m) => {
                    m.values += d.values;
                    m.first_row = m.first_row.min(d.first_row);
                }
                None => merged.push(d.clone()),
            }
        }
        merged.sort_by_key(|d| d.first_row);
        merged
    }

    /// `Variant Barcode: 3 values in scientific notation (first at row 7); format the column …`.
    pub fn warning(&self) -> String {
        let values = match self.values {
            1 => "1 value".to_string(),
            n => format!("{n} values"),
        };
        format!(
            "{}: {values} {} (first at row {}), kept as written; format the column as text before exporting",
            self.column, self.damage, self.first_row
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_is_named_by_what_the_spreadsheet_did() {
        assert_eq!(
            damage_of(ColumnType::String, "3.65275E+11"),
            Some("in scientific notation")
        );
        assert_eq!(
            damage_of(ColumnType::Gtin, "36000291452"),
            Some("with their leading zeros stripped")
        );
        assert_eq!(damage_of(ColumnType::String, "36000291452"), None);
        assert_eq!(damage_of(ColumnType::Gtin, "036000291452"), None);
    }

    #[test]
    fn chunks_add_up_per_column_and_damage() {
        let mut first = Vec::new();
        DamagedValues::count(&mut first, "Barcode", "in scientific notation", 7);
        DamagedValues::count(&mut first, "Barcode", "in scientific notation", 9);
        let mut second = Vec::new();
        DamagedValues::count(&mut second, "Barcode", "in scientific notation", 120);
        DamagedValues::count(&mut second, "MPN", "in scientific notation", 101);
        let merged = DamagedValues::merge(first.iter().chain(&second));
        let warnings: Vec<String> = merged.iter().map(DamagedValues::warning).collect();
        assert_eq!(
            warnings,
            [
                "Barcode: 3 values in scientific notation (first at row 7), kept as written; format the column as text before exporting",
                "MPN: 1 value in scientific notation (first at row 101), kept as written; format the column as text before exporting",
            ]
        );
    }
}
