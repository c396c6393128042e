//! A chunk against the snapshot, a full refresh's stale keys, and the next snapshot: merge walks
//! over entries sorted the same way ([`super::entries`]). Exact: a row is skipped only when its key
//! is in the snapshot with the same 128-bit content hash.

use std::collections::{HashMap, HashSet};

use super::entries::Entry;
pub use crate::run::DeltaCounts;

/// What the snapshot says of one chunk: the rows the database need not see (key → content hash,
/// checked again against each staged document) and the counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkDiff {
    pub unchanged: HashMap<String, u128>,
    pub counts: DeltaCounts,
}

impl ChunkDiff {
    /// Whether the staged document with `key` and content `hash` is unchanged.
    pub fn is_unchanged(&self, key: &str, hash: u128) -> bool {
        self.unchanged.get(key) == Some(&hash)
    }
}

/// Adds to `diff` what `base` (the snapshot's entries of some key-hash range) says of `current`
/// (the chunk's digest entries of the same range). Both sorted.
pub fn diff_chunk(current: &[Entry], base: &[Entry], diff: &mut ChunkDiff) {
    let mut b = base.iter().peekable();
    for entry in current {
        while b.next_if(|old| old < &entry).is_some() {}
        match b.peek() {
            Some(old) if old.key == entry.key && old.key_hash == entry.key_hash => {
                if old.hash == entry.hash && entry.hash != 0 {
                    diff.counts.unchanged += 1;
                    diff.unchanged.insert(entry.key.clone(), entry.hash);
                } else {
                    diff.counts.changed += 1;
                }
            }
            _ => diff.counts.new += 1,
        }
    }
}

/// A full refresh's stale keys: in the snapshot, not in the file's staged rows (`current`, every
/// chunk's digest merged), and not among the keys of rows the file has but rejected (a product
/// whose row had a bad price is still listed).
pub fn stale_keys(base: &[Entry], current: &[Entry], rejected: &HashSet<String>) -> Vec<String> {
    let mut c = current.iter().peekable();
    let mut stale = Vec::new();
    for old in base {
        while c.next_if(|now| now < &old).is_some() {}
        let listed = c.peek().is_some_and(|now| now.key == old.key);
        if !listed && !rejected.contains(&old.key) {
            stale.push(old.key.clone());
        }
    }
    stale
}

/// The inputs of the snapshot a committed run leaves.
pub struct NextSnapshot<'a> {
    /// Keys whose product this run did not write although it lists them (rows the transform
    /// rejected, documents the database refused): their snapshot entry stays as it was, or is
    /// absent when there was none.
    pub kept: &'a HashSet<String>,
    /// Keys a full refresh marked stale (claims tagged or dropped): they leave the snapshot.
    /// Candidates it did not mark (over `max_stale_percent`, or `keep`) stay, so the next refresh
    /// finds them again.
    pub marked: &'a HashSet<String>,
    /// This run's index in the next snapshot's runs (see [`prune_runs`]).
    pub run: u32,
}

/// The next snapshot: today's entries where this run wrote them (or found them unchanged), the
/// previous ones where it did not. Both inputs sorted; so is the result. Only what is in the
/// database goes in: a key this run could not write keeps its old entry.
pub fn next_snapshot(base: Vec<Entry>, current: Vec<Entry>, next: &NextSnapshot) -> Vec<Entry> {
    let mut out = Vec::with_capacity(base.len().max(current.len()));
    let mut b = base.into_iter().peekable();
    for mut entry in current {
        while let Some(old) = b.next_if(|old| *old < entry) {
            if !next.marked.contains(&old.key) {
                out.push(old);
            }
        }
        let old = b.next_if(|old| old.key == entry.key && old.key_hash == entry.key_hash);
        if next.kept.contains(&entry.key) {
            out.extend(old);
        } else {
            entry.run = next.run;
            out.push(entry);
        }
    }
    out.extend(b.filter(|old| !next.marked.contains(&old.key)));
    out
}

/// Drops from `runs` the runs no entry points at any more, renumbering the entries' `run`.
pub fn prune_runs(entries: &mut [Entry], runs: Vec<String>) -> Vec<String> {
    let mut used = vec![false; runs.len()];
    for e in entries.iter() {
        if let Some(u) = used.get_mut(e.run as usize) {
            *u = true;
        }
    }
    let mut renumber = vec![0u32; runs.len()];
    let mut kept = Vec::new();
    for (i, run) in runs.into_iter().enumerate() {
        if used[i] {
            renumber[i] = kept.len() as u32;
            kept.push(run);
        }
    }
    for e in entries.iter_mut() {
        if let Some(n) = renumber.get(e.run as usize) {
            e.run = *n;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(items: &[(&str, u128)]) -> Vec<Entry> {
        let mut v: Vec<Entry> = items
            .iter()
            .enumerate()
            .map(|(i, (k, h))| Entry::new(k.to_string(), *h, i as u64 + 1))
            .collect();
        v.sort();
        v
    }

    fn keys(v: &[Entry]) -> Vec<(&str, u128)> {
        let mut k: Vec<(&str, u128)> = v.iter().map(|e| (e.key.as_str(), e.hash)).collect();
        k.sort();
        k
    }

    #[test]
    fn a_row_is_skipped_only_for_the_same_key_and_hash() {
        let base = entries(&[("A", 1), ("B", 2), ("C", 3), ("Z", 0)]);
        let current = entries(&[("A", 1), ("B", 20), ("D", 4), ("Z", 0)]);
        let mut diff = ChunkDiff::default();
        diff_chunk(&current, &base, &mut diff);
        assert_eq!(
            (diff.counts.unchanged, diff.counts.changed, diff.counts.new),
            (1, 2, 1),
            "hash 0 (content unknown) is never unchanged"
        );
        assert!(diff.is_unchanged("A", 1));
        assert!(!diff.is_unchanged("A", 2));
        assert!(!diff.is_unchanged("B", 20));
    }

    #[test]
    fn stale_keys_are_the_snapshots_keys_the_file_no_longer_lists() {
        let base = entries(&[("A", 1), ("B", 2), ("C", 3), ("D", 4)]);
        let current = entries(&[("A", 1), ("C", 30)]);
        let rejected: HashSet<String> = ["D".to_string()].into();
        assert_eq!(
            stale_keys(&base, &current, &rejected),
            vec!["B".to_string()]
        );
    }

    #[test]
    fn the_next_snapshot_holds_what_the_database_holds() {
        let base = entries(&[("A", 1), ("B", 2), ("C", 3), ("D", 4), ("E", 5)]);
        // B changed but was refused; C is marked stale; D is an unmarked candidate; F is new;
        // G is new and refused.
        let current = entries(&[("A", 10), ("B", 20), ("E", 5), ("F", 6), ("G", 7)]);
        let kept: HashSet<String> = ["B".to_string(), "G".to_string()].into();
        let marked: HashSet<String> = ["C".to_string()].into();
        let next = next_snapshot(
            base,
            current,
            &NextSnapshot {
                kept: &kept,
                marked: &marked,
                run: 1,
            },
        );
        assert!(next.windows(2).all(|w| w[0] < w[1]), "sorted");
        let run_of = |k: &str| next.iter().find(|e| e.key == k).unwrap().run;
        assert_eq!((run_of("A"), run_of("B"), run_of("F")), (1, 0, 1));
        assert_eq!(
            keys(&next),
            vec![("A", 10), ("B", 2), ("D", 4), ("E", 5), ("F", 6)]
        );
    }

    #[test]
    fn runs_no_entry_points_at_are_dropped() {
        let mut v = entries(&[("A", 1), ("B", 2)]);
        v[0].run = 2;
        v[1].run = 2;
        let runs = prune_runs(&mut v, vec!["r0".into(), "r1".into(), "r2".into()]);
        assert_eq!(runs, vec!["r2".to_string()]);
        assert!(v.iter().all(|e| e.run == 0));
    }
}
