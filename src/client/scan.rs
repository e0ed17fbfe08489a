//! The cluster SCAN driver: asks nodes and sleeps between stalls; every decision about
//! which slots are done is [`ScanProgress`]'s (`src/scan.rs`, pure).

use bytes::Bytes;

use super::Client;
use crate::cmd::{cmd, Cmd};
use crate::error::{Error, ErrorKind, Result};
use crate::resp::Value;
use crate::scan::{own_slots, parse_scan, ScanOptions, ScanProgress};
use crate::slot::Slot;
use crate::topology::NodeAddr;

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
