//! How the command line reads a file: the flags `chute check` and `chute schema draft` share.
//! They declare what a run takes from the object's metadata, and both commands hand them to
//! [`chute::input::decode_all`], the decoder the validate step streams through.

use chute::format::{Format, FormatSpec};

use crate::Failure;

#[derive(clap::Args)]
pub struct ReadFlags {
    /// The file's encoding, as object metadata `chute-encoding` declares it (windows-1252, shift_jis…).
    #[arg(long, value_name = "LABEL")]
    pub encoding: Option<String>,
    /// The field delimiter (`chute-delimiter`): one character, `tab` or `auto`.
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,
    /// The decimal mark of numbers (`chute-decimal`): `.` or `,`.
    #[arg(long, value_name = "CHAR")]
    pub decimal: Option<String>,
    /// The thousands separator of numbers (`chute-thousands`): `.`, `,`, `space` or `none`.
    #[arg(long, value_name = "CHAR")]
    pub thousands: Option<String>,
    /// The sheet of an .xlsx to read (`chute-sheet`; default: the first).
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
}

impl ReadFlags {
    /// `base` with the flags over it, as object metadata would be over the schema's format.
    pub fn over(&self, base: &Format) -> Result<Format, Failure> {
        let flags = FormatSpec {
            encoding: self.encoding.clone(),
            delimiter: self.delimiter.clone(),
            decimal: self.decimal.clone(),
            thousands: self.thousands.clone(),
        };
        base.with(&flags, "the command line").map_err(Failure)
    }
}
