//! A minimal BSON writer for the hot path: documents are written straight into one buffer with no
//! intermediate `bson::Document` per row. The output is ordinary BSON (`bsondump` reads it).

/// Writes one document; nested documents and arrays are opened with [`DocWriter::begin`].
pub struct DocWriter<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
}

const LENGTH_PREFIX: usize = 4;

impl<'a> DocWriter<'a> {
    #[inline]
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&[0; LENGTH_PREFIX]);
        DocWriter { buf, start }
    }

    #[inline]
    fn key(&mut self, kind: u8, key: &str) {
        self.buf.push(kind);
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.push(0);
    }

    #[inline]
    pub fn string(&mut self, key: &str, value: &str) {
        self.key(0x02, key);
        self.string_value(value);
    }

    /// Writes array element `index` (BSON arrays are documents keyed "0", "1", …) without
    /// formatting the key into a `String` for every element of every row.
    pub fn array_string(&mut self, index: usize, value: &str) {
        self.buf.push(0x02);
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut n = index;
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&digits[start..]);
        self.buf.push(0);
        self.string_value(value);
    }

    #[inline]
    fn string_value(&mut self, value: &str) {
        self.buf
            .extend_from_slice(&((value.len() + 1) as i32).to_le_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
    }

    #[inline]
    pub fn decimal128(&mut self, key: &str, bytes: [u8; 16]) {
        self.key(0x13, key);
        self.buf.extend_from_slice(&bytes);
    }

    #[inline]
    pub fn int32(&mut self, key: &str, value: i32) {
        self.key(0x10, key);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    #[inline]
    pub fn int64(&mut self, key: &str, value: i64) {
        self.key(0x12, key);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    #[inline]
    pub fn boolean(&mut self, key: &str, value: bool) {
        self.key(0x08, key);
        self.buf.push(u8::from(value));
    }

    #[inline]
    pub fn datetime(&mut self, key: &str, millis: i64) {
        self.key(0x09, key);
        self.buf.extend_from_slice(&millis.to_le_bytes());
    }

    /// Embeds a complete BSON document (as written by another `DocWriter`) under `key`.
    pub fn document(&mut self, key: &str, bson: &[u8]) {
        self.key(0x03, key);
        self.buf.extend_from_slice(bson);
    }

    /// Opens a sub-document (`array = false`) or an array under `key`; finish it with [`DocWriter::end`].
    #[inline]
    pub fn begin(&mut self, key: &str, array: bool) -> DocWriter<'_> {
        self.key(if array { 0x04 } else { 0x03 }, key);
        DocWriter::new(self.buf)
    }

    /// Bytes written so far for this document's elements (after its length prefix).
    pub fn elements(&self) -> &[u8] {
        &self.buf[self.start + LENGTH_PREFIX..]
    }

    /// Closes the document, patching its length prefix; returns the total length.
    #[inline]
    pub fn end(self) -> usize {
        self.buf.push(0);
        let len = self.buf.len() - self.start;
        self.buf[self.start..self.start + LENGTH_PREFIX]
            .copy_from_slice(&(len as i32).to_le_bytes());
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_reads_back_with_the_bson_crate() {
        let mut buf = Vec::new();
        let mut doc = DocWriter::new(&mut buf);
        doc.string("sku", "A-1");
        doc.int32("stock", 7);
        doc.int64("big", 1 << 40);
        doc.boolean("active", true);
        doc.datetime("at", 1_700_000_000_000);
        doc.decimal128(
            "price",
            crate::value::Decimal::parse("19.90")
                .unwrap()
                .to_decimal128_bytes(),
        );
        let mut tags = doc.begin("tags", true);
        for i in 0..12 {
            tags.array_string(i, &format!("t{i}"));
        }
        tags.end();
        let mut sub = doc.begin("attributes", false);
        sub.string("brand", "Acme");
        sub.end();
        doc.end();

        let parsed = bson::Document::from_reader(&mut buf.as_slice()).unwrap();
        assert_eq!(parsed.get_str("sku").unwrap(), "A-1");
        assert_eq!(parsed.get_i32("stock").unwrap(), 7);
        assert_eq!(parsed.get_i64("big").unwrap(), 1 << 40);
        assert!(parsed.get_bool("active").unwrap());
        assert_eq!(
            parsed.get_datetime("at").unwrap().timestamp_millis(),
            1_700_000_000_000
        );
        assert_eq!(parsed.get("price").unwrap().to_string(), "19.90");
        let tags = parsed.get_array("tags").unwrap();
        assert_eq!(tags.len(), 12);
        assert_eq!(tags[11].as_str(), Some("t11"));
        // Array keys are the decimal indexes, as the BSON spec requires.
        assert!(buf.windows(4).any(|w| w == b"\x0211\0"));
        assert_eq!(
            parsed
                .get_document("attributes")
                .unwrap()
                .get_str("brand")
                .unwrap(),
            "Acme"
        );
    }
}
