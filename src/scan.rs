//! Cluster `SCAN`: every key of every primary, with progress counted in slots so that it
//! survives resharding and failover.
//!
//! Each node is scanned to the end of its own cursor, one node at a time. A node's slots
//! count as scanned only if it owned them when its scan began *and* when it ended, and
//! none of them was being migrated then ([`ScanProgress::finish_node`]). A slot that moved
//! meanwhile stays unscanned and is scanned again on its new owner, so a key that existed
//! for the whole scan is always returned; as with `SCAN` itself, a key may be returned
//! more than once.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::resp::Value;
use crate::slot::{Slot, SLOT_COUNT};

/// Which slots are done: the pure part of a cluster scan.
#[derive(Debug, Clone)]
pub struct ScanProgress {
    done: Vec<bool>,
}

impl Default for ScanProgress {
    fn default() -> Self {
        ScanProgress {
            done: vec![false; SLOT_COUNT as usize],
        }
    }
}

impl ScanProgress {
    /// The lowest slot not scanned yet, if any.
    pub fn next_slot(&self) -> Option<Slot> {
        self.done
            .iter()
            .position(|d| !d)
            .and_then(|i| Slot::new(i as u16))
    }

    /// Slots scanned so far.
    pub fn scanned(&self) -> usize {
        self.done.iter().filter(|d| **d).count()
    }

    /// A node's scan ended: of the slots it owned at the start (`before`), those it still
    /// owns (`after`) and that were not migrating in or out (`moving`) are done. Returns
    /// how many slots that marked.
    ///
    /// ```
    /// use redis_cluster_uring::scan::ScanProgress;
    /// let mut p = ScanProgress::default();
    /// // Owned 0..=9 at the start, 0..=7 at the end (8, 9 moved away), 3 was migrating.
    /// let marked = p.finish_node(&(0..10).collect::<Vec<_>>(), &(0..8).collect::<Vec<_>>(), &[3]);
    /// assert_eq!(marked, 7);
    /// assert_eq!(p.next_slot().map(|s| s.get()), Some(3));
    /// ```
    pub fn finish_node(&mut self, before: &[u16], after: &[u16], moving: &[u16]) -> usize {
        let mut marked = 0;
        for &slot in before {
            if after.contains(&slot) && !moving.contains(&slot) {
                if let Some(done) = self.done.get_mut(slot as usize) {
                    if !*done {
                        *done = true;
                        marked += 1;
                    }
                }
            }
        }
        marked
    }
}

/// What a node's own `CLUSTER NODES` line says: the slots it serves (`0-5460`, `7`) and
/// those being migrated in or out (`[5->-id]`, `[5-<-id]`). The node's own word is what
/// decides where its keys are.
pub(crate) fn own_slots(cluster_nodes: &str) -> (Vec<u16>, Vec<u16>) {
    let Some(myself) = cluster_nodes.lines().find(|l| l.contains("myself")) else {
        return (Vec::new(), Vec::new());
    };
    let mut owned = Vec::new();
    let mut moving = Vec::new();
    for field in myself.split_whitespace().skip(8) {
        if let Some(entry) = field.strip_prefix('[') {
            if let Some(slot) = entry
                .split(['-', '>', '<'])
                .next()
                .and_then(|s| s.parse().ok())
            {
                moving.push(slot);
            }
        } else if let Some((a, b)) = field.split_once('-') {
            if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                owned.extend(a..=b.min(SLOT_COUNT - 1));
            }
        } else if let Ok(slot) = field.parse::<u16>() {
            owned.push(slot);
        }
    }
    (owned, moving)
}

/// What to match, like `SCAN`'s options.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// `MATCH pattern`.
    pub pattern: Option<String>,
    /// `COUNT n`: a hint of how many keys each call looks at.
    pub count: Option<usize>,
    /// `TYPE type`.
    pub key_type: Option<String>,
}

pub use crate::client::ClusterScan;

/// `[cursor, [key, ...]]`.
pub(crate) fn parse_scan(reply: Value) -> Result<(Bytes, Vec<Bytes>)> {
    let bad = || Error::protocol("SCAN answered something other than [cursor, keys]");
    let Value::Array(mut parts) = reply else {
        return Err(bad());
    };
    if parts.len() != 2 {
        return Err(bad());
    }
    let keys = parts.pop().ok_or_else(bad)?;
    let cursor = parts.pop().ok_or_else(bad)?;
    let cursor = match cursor {
        Value::Bulk(b) | Value::SimpleString(b) => b,
        _ => return Err(bad()),
    };
    let keys = match keys {
        Value::Array(items) | Value::Set(items) => items
            .into_iter()
            .map(|k| match k {
                Value::Bulk(b) | Value::SimpleString(b) => Ok(b),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<Bytes>>>()?,
        _ => return Err(bad()),
    };
    Ok((cursor, keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn progress_marks_only_slots_held_throughout_and_still() {
        let mut p = ScanProgress::default();
        assert_eq!(p.next_slot().map(|s| s.get()), Some(0));
        assert_eq!(p.finish_node(&[0, 1, 2], &[0, 1, 2], &[]), 3);
        assert_eq!(p.next_slot().map(|s| s.get()), Some(3));
        // Slot 4 moved in during the scan: not held at the start, not marked.
        assert_eq!(p.finish_node(&[3], &[3, 4], &[]), 1);
        assert_eq!(p.next_slot().map(|s| s.get()), Some(4));
        // Marking twice counts once.
        assert_eq!(p.finish_node(&[3], &[3], &[]), 0);
        let all: Vec<u16> = (0..SLOT_COUNT).collect();
        p.finish_node(&all, &all, &[]);
        assert_eq!(p.next_slot(), None);
        assert_eq!(p.scanned(), SLOT_COUNT as usize);
    }

    #[test]
    fn own_slots_are_read_from_cluster_nodes() {
        let nodes = "abc 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-3 9 [93->-def] [77-<-ghi]\n\
                     def 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n";
        let (owned, moving) = own_slots(nodes);
        assert_eq!(owned, vec![0, 1, 2, 3, 9]);
        assert_eq!(moving, vec![93, 77]);
        assert_eq!(own_slots(""), (Vec::new(), Vec::new()));
        // Hostile ranges are clamped, not trusted.
        let (owned, _) = own_slots("x h:1@2 myself,master - 0 0 1 connected 16380-65535\n");
        assert_eq!(owned.len(), 4);
    }

    #[test]
    fn scan_replies_parse_or_fail_typed() {
        let ok = Value::Array(vec![
            Value::Bulk(Bytes::from_static(b"17")),
            Value::Array(vec![Value::Bulk(Bytes::from_static(b"k"))]),
        ]);
        let (cursor, keys) = parse_scan(ok).unwrap();
        assert_eq!((&cursor[..], keys.len()), (&b"17"[..], 1));
        for bad in [
            Value::Int(1),
            Value::Array(vec![Value::Int(0)]),
            Value::Array(vec![Value::Int(0), Value::Int(1)]),
        ] {
            assert_eq!(parse_scan(bad).unwrap_err().kind(), ErrorKind::Protocol);
        }
    }
}
