//! A spreadsheet (`.xlsx`) as CSV: one sheet, one line per sheet row, so a reported line is the row
//! number the sheet shows (blank rows become blank lines, which the CSV reader skips but counts).

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};

use crate::error::{FileCode, FileError};

/// The CSV of sheet `wanted` (the first sheet when `None`), and the sheet's name.
pub fn to_csv(bytes: Vec<u8>, wanted: Option<&str>) -> Result<(Vec<u8>, String), FileError> {
    let unreadable = |e: calamine::XlsxError| {
        FileError::new(
            FileCode::Unreadable,
            format!("the spreadsheet could not be read: {e}"),
        )
    };
    let mut workbook: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(unreadable)?;
    let names = workbook.sheet_names();
    let name = match wanted {
        Some(w) => names
            .iter()
            .find(|n| n.as_str() == w)
            .cloned()
            .ok_or_else(|| {
                FileError::new(
                    FileCode::Unreadable,
                    format!(
                        "the spreadsheet has no sheet `{w}` (chute-sheet); it has: {}",
                        names.join(", ")
                    ),
                )
            })?,
        None => names
            .first()
            .cloned()
            .ok_or_else(|| FileError::new(FileCode::EmptyFile, "the spreadsheet has no sheet"))?,
    };
    let range = workbook.worksheet_range(&name).map_err(unreadable)?;
    let Some((first_row, _)) = range.start() else {
        return Ok((Vec::new(), name));
    };
    let mut out = "\n".repeat(first_row as usize).into_bytes();
    let mut cells = Vec::new();
    for row in range.rows() {
        cells.clear();
        cells.extend(row.iter().map(cell_text));
        if cells.iter().any(|c| !c.is_empty()) {
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_field(&mut out, cell);
            }
        }
        out.push(b'\n');
    }
    Ok((out, name))
}

/// One CSV field, quoted (quotes doubled) when it holds a comma, quote or line break.
fn write_field(out: &mut Vec<u8>, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(text.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// A cell as the text a CSV export of the sheet would hold: numbers as their shortest exact
/// decimal, dates as `YYYY-MM-DD` (or RFC 3339 with a time), errors as Excel writes them (`#N/A`).
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Int(n) => n.to_string(),
        Data::Float(x) => x.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::Error(e) => e.to_string(),
        Data::DateTime(d) if d.is_datetime() => {
            let (y, mo, day, h, mi, s, ms) = d.to_ymd_hms_milli();
            if (h, mi, s, ms) == (0, 0, 0, 0) {
                format!("{y:04}-{mo:02}-{day:02}")
            } else {
                format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
            }
        }
        Data::DateTime(d) => d.as_f64().to_string(),
    }
}
