//! `(key, content hash)` entries sorted by `(key hash, key)`, and their byte form. Sorting by the
//! key's hash makes every piece of a snapshot a contiguous range of it, whatever the piece count
//! (a power of two): piece `p` of `P` holds the keys whose hash starts with `p` in its top
//! `log2 P` bits, so a chunk or a snapshot is split or merged by one walk.
//!
//! ```
//! use chute::delta::{decode, encode, piece_of, Entry};
//! let mut entries = vec![Entry::new("B-2".into(), 7, 2), Entry::new("A-1".into(), 9, 1)];
//! entries.sort();
//! let bytes = encode(&entries);
//! assert_eq!(decode(&bytes).unwrap(), entries);
//! assert_eq!(piece_of(entries[0].key_hash, 1), 0);
//! ```

use std::cmp::Ordering;

/// Entries per snapshot piece at most (about 60 MB of piece with 20-byte keys, 90 MB decoded). `CHUTE_SNAPSHOT_PIECE_ENTRIES`
/// lowers it (tests use several pieces on small feeds).
pub const PIECE_ENTRIES: u64 = 1_000_000;

/// The most pieces a snapshot has: the byte form indexes pieces by the key hash's top byte.
pub const MAX_PIECES: u32 = 256;

const MAGIC: &[u8; 8] = b"chute-d1";

/// One product as a source supplied it: its key text (as the writer joins it), the content hash
/// of the staged document (`_import.hash`; 0 means "claimed, content unknown", which never equals
/// a row's hash), the row it came from and, in a snapshot, which of the snapshot's runs
/// ([`super::SnapshotBase::runs`]) staged that row (where `chute verify` finds its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key_hash: u64,
    pub key: String,
    pub hash: u128,
    pub row: u64,
    pub run: u32,
}

impl Entry {
    pub fn new(key: String, hash: u128, row: u64) -> Entry {
        Entry {
            key_hash: key_hash(&key),
            key,
            hash,
            row,
            run: 0,
        }
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.key_hash, &self.key).cmp(&(other.key_hash, &other.key))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The hash entries are ordered and pieced by.
pub fn key_hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// The piece (of `pieces`, a power of two) a key hash falls in.
pub fn piece_of(key_hash: u64, pieces: u32) -> u32 {
    match pieces {
        0 | 1 => 0,
        p => (key_hash >> (64 - p.trailing_zeros())) as u32,
    }
}

/// How many pieces `entries` entries take: the smallest power of two that keeps each under
/// `per_piece` on average, at most [`MAX_PIECES`].
pub fn pieces_for(entries: u64, per_piece: u64) -> u32 {
    let wanted = entries.div_ceil(per_piece.max(1)).max(1);
    wanted.next_power_of_two().min(u64::from(MAX_PIECES)) as u32
}

/// The hex `_import.hash` of a staged document as a number.
pub fn parse_hash(hex: &str) -> Option<u128> {
    u128::from_str_radix(hex, 16).ok()
}

/// Sorted entries as bytes: a magic, the count, then per entry its key hash, content hash, row,
/// run, key length and key (little-endian).
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let size: usize = entries.iter().map(|e| 38 + e.key.len()).sum();
    let mut out = Vec::with_capacity(16 + size);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.key_hash.to_le_bytes());
        out.extend_from_slice(&e.hash.to_le_bytes());
        out.extend_from_slice(&e.row.to_le_bytes());
        out.extend_from_slice(&e.run.to_le_bytes());
        let key = e.key.as_bytes();
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
    }
    out
}

/// [`encode`]'s bytes back as entries; an error says what is wrong (a truncated or foreign
/// object), so an unreadable snapshot turns delta off instead of skipping rows.
pub fn decode(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let slice = bytes
            .get(at..at + n)
            .ok_or_else(|| format!("truncated at byte {at} of {}", bytes.len()))?;
        at += n;
        Ok(slice)
    };
    if take(8)? != MAGIC {
        return Err("not a chute digest or snapshot piece".into());
    }
    let count = u64::from_le_bytes(take(8)?.try_into().unwrap());
    let mut entries = Vec::with_capacity(count.min(1 << 24) as usize);
    for _ in 0..count {
        let key_hash = u64::from_le_bytes(take(8)?.try_into().unwrap());
        let hash = u128::from_le_bytes(take(16)?.try_into().unwrap());
        let row = u64::from_le_bytes(take(8)?.try_into().unwrap());
        let run = u32::from_le_bytes(take(4)?.try_into().unwrap());
        let len = u16::from_le_bytes(take(2)?.try_into().unwrap()) as usize;
        let key = String::from_utf8(take(len)?.to_vec()).map_err(|e| e.to_string())?;
        entries.push(Entry {
            key_hash,
            key,
            hash,
            row,
            run,
        });
    }
    if at != bytes.len() {
        return Err(format!("{} bytes after the last entry", bytes.len() - at));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_ranges_of_the_sorted_order() {
        let mut entries: Vec<Entry> = (0..2000)
            .map(|i| Entry::new(format!("SKU-{i}"), i, i as u64))
            .collect();
        entries.sort();
        for pieces in [1, 2, 8, 256] {
            let of: Vec<u32> = entries
                .iter()
                .map(|e| piece_of(e.key_hash, pieces))
                .collect();
            assert!(of.windows(2).all(|w| w[0] <= w[1]), "{pieces}");
            assert!(of.iter().all(|p| *p < pieces));
        }
        assert_eq!(
            piece_of(u64::MAX, 256),
            255,
            "the top byte names the last piece"
        );
    }

    #[test]
    fn piece_counts_are_powers_of_two_within_the_limit() {
        assert_eq!(pieces_for(0, 10), 1);
        assert_eq!(pieces_for(10, 10), 1);
        assert_eq!(pieces_for(11, 10), 2);
        assert_eq!(pieces_for(35, 10), 4);
        assert_eq!(pieces_for(100_000_000, PIECE_ENTRIES), 128);
        assert_eq!(pieces_for(u64::MAX / 2, 1), MAX_PIECES);
    }

    #[test]
    fn damaged_bytes_are_an_error_not_fewer_entries() {
        let bytes = encode(&[Entry::new("A".into(), 1, 1), Entry::new("B".into(), 2, 2)]);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(b"something else entirely").is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        assert_eq!(decode(&bytes).unwrap().len(), 2);
    }

    #[test]
    fn hashes_read_as_the_transform_writes_them() {
        assert_eq!(parse_hash("00000000000000000000000000000010"), Some(16));
        assert_eq!(parse_hash("zz"), None);
    }
}
