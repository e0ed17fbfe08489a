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

use crate::client::Client;
use crate::cmd::{cmd, Cmd};
use crate::error::{Error, ErrorKind, Result};
use crate::resp::Value;
use crate::slot::{Slot, SLOT_COUNT};
use crate::topology::NodeAddr;

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
fn own_slots(cluster_nodes: &str) -> (Vec<u16>, Vec<u16>) {
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

/// A scan over every key of the cluster; see [`Client::scan`].
#[derive(Debug)]
pub struct ClusterScan {
    client: Client,
    options: ScanOptions,
    progress: ScanProgress,
    /// The node being scanned, its cursor, and the slots it held (not moving) when its
    /// scan began.
    current: Option<(NodeAddr, Bytes, Vec<u16>)>,
    /// Nodes finished without marking anything, in a row (a slot being migrated).
    stalls: u32,
    /// Since when no node has marked anything.
    stalled_since: Option<std::time::Instant>,
}

impl ClusterScan {
    pub(crate) fn new(client: Client, options: ScanOptions) -> ClusterScan {
        ClusterScan {
            client,
            options,
            progress: ScanProgress::default(),
            current: None,
            stalls: 0,
            stalled_since: None,
        }
    }

    /// How many slots are scanned so far (16384 at the end).
    pub fn slots_scanned(&self) -> usize {
        self.progress.scanned()
    }

    /// The next batch of keys; `Ok(None)` once every slot is scanned. After an error the
    /// scan can go on: the node it failed on is scanned again from its start.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<Bytes>>> {
        loop {
            if self.current.is_none() {
                let Some(slot) = self.progress.next_slot() else {
                    return Ok(None);
                };
                match self.owner_of(slot).await? {
                    Some((node, before)) => {
                        self.current = Some((node, Bytes::from_static(b"0"), before));
                    }
                    None => {
                        // Nobody holds it steadily right now (a migration is under way):
                        // wait for the move to end.
                        self.stalled().await?;
                        continue;
                    }
                }
            }
            let Some((node, cursor, _)) = &self.current else {
                continue;
            };
            let node = node.clone();
            let reply = self
                .client
                .query_node::<Value>(&node, self.command(cursor))
                .await;
            let (next, keys) = match reply.and_then(parse_scan) {
                Ok(parsed) => parsed,
                Err(e) => {
                    self.current = None;
                    return Err(e);
                }
            };
            if &next[..] == b"0" {
                self.finish(&node).await?;
            } else if let Some(current) = &mut self.current {
                current.1 = next;
            }
            if !keys.is_empty() {
                return Ok(Some(keys));
            }
        }
    }

    /// The node that holds `slot` by its own account, and the slots it holds steadily
    /// (not being migrated). The client's map names the node to ask first; when that node
    /// disagrees (a map a moment old), every other primary is asked.
    async fn owner_of(&mut self, slot: Slot) -> Result<Option<(NodeAddr, Vec<u16>)>> {
        let map = self.client.slot_map();
        let mut candidates: Vec<NodeAddr> = map.node_for(slot).into_iter().cloned().collect();
        for p in map.primaries() {
            if !candidates.contains(p) {
                candidates.push(p.clone());
            }
        }
        for node in candidates {
            let view: String = self
                .client
                .query_node(&node, cmd("CLUSTER").arg("NODES"))
                .await?;
            let (owned, moving) = own_slots(&view);
            if owned.contains(&slot.get()) && !moving.contains(&slot.get()) {
                let steady = owned.into_iter().filter(|s| !moving.contains(s)).collect();
                return Ok(Some((node, steady)));
            }
        }
        self.client.refresh_slots().await?;
        Ok(None)
    }

    /// No progress this time: pause (growing), and give up after a minute of it.
    async fn stalled(&mut self) -> Result<()> {
        self.stalls = self.stalls.saturating_add(1);
        let since = *self
            .stalled_since
            .get_or_insert_with(std::time::Instant::now);
        if since.elapsed() > std::time::Duration::from_secs(60) {
            return Err(Error::new(
                ErrorKind::ClusterDown,
                "the scan made no progress for a minute: its slots keep moving",
            ));
        }
        let pause = crate::round::backoff(
            self.stalls,
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(500),
        );
        tokio::time::sleep(pause).await;
        Ok(())
    }

    /// Every remaining key, collected.
    pub async fn collect_all(&mut self) -> Result<Vec<Bytes>> {
        let mut all = Vec::new();
        while let Some(keys) = self.next_batch().await? {
            all.extend(keys);
        }
        Ok(all)
    }

    fn command(&self, cursor: &Bytes) -> Cmd {
        let mut c = cmd("SCAN").arg(cursor.clone());
        if let Some(p) = &self.options.pattern {
            c = c.arg("MATCH").arg(p);
        }
        if let Some(n) = self.options.count {
            c = c.arg("COUNT").arg(n);
        }
        if let Some(t) = &self.options.key_type {
            c = c.arg("TYPE").arg(t);
        }
        c
    }

    /// The node's cursor came back to 0: mark the slots it held throughout.
    async fn finish(&mut self, node: &NodeAddr) -> Result<()> {
        let Some((_, _, before)) = self.current.take() else {
            return Ok(());
        };
        let view: String = self
            .client
            .query_node(node, cmd("CLUSTER").arg("NODES"))
            .await?;
        let (after, moving) = own_slots(&view);
        let marked = self.progress.finish_node(&before, &after, &moving);
        if marked == 0 {
            self.stalled().await?;
        } else {
            self.stalls = 0;
            self.stalled_since = None;
        }
        Ok(())
    }
}

/// `[cursor, [key, ...]]`.
fn parse_scan(reply: Value) -> Result<(Bytes, Vec<Bytes>)> {
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
