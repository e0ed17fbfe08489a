//! The cluster SCAN driver of the blocking client: it carries out what the pure
//! [`ScanMachine`] (`src/scan.rs`) decides, exactly as the async client's does.

use std::time::Instant;

use bytes::Bytes;

use super::driver::Client;
use crate::core::error::Result;
use crate::core::resp::Value;
use crate::core::scan::{ScanMachine, ScanOptions, ScanStep};

/// A scan over every key of the cluster on a blocking client; see [`Client::scan`].
#[derive(Debug)]
pub struct BlockingScan<'c> {
    client: &'c mut Client,
    machine: ScanMachine,
}

impl<'c> BlockingScan<'c> {
    pub(super) fn new(client: &'c mut Client, options: ScanOptions) -> BlockingScan<'c> {
        BlockingScan {
            client,
            machine: ScanMachine::new(options),
        }
    }

    /// How many slots are scanned so far (16384 at the end).
    pub fn slots_scanned(&self) -> usize {
        self.machine.scanned()
    }

    /// The next batch of keys; `Ok(None)` once every slot is scanned. After an error the
    /// scan can go on: the node it failed on is scanned again from its start.
    pub fn next_batch(&mut self) -> Result<Option<Vec<Bytes>>> {
        loop {
            let step = self
                .machine
                .step(self.client.cluster.map(), Instant::now())?;
            match step {
                ScanStep::Ask { node, command } => {
                    let reply = self.client.query_node::<Value>(&node, command);
                    if let Some(keys) = self.machine.answer(reply)? {
                        return Ok(Some(keys));
                    }
                }
                ScanStep::RefreshMap => self.client.refresh_slots()?,
                ScanStep::Pause(pause) => std::thread::sleep(pause),
                ScanStep::Done => return Ok(None),
            }
        }
    }

    /// Every remaining key, collected.
    pub fn collect_all(&mut self) -> Result<Vec<Bytes>> {
        let mut all = Vec::new();
        while let Some(keys) = self.next_batch()? {
            all.extend(keys);
        }
        Ok(all)
    }
}

impl Client {
    /// Every key of the cluster, `MATCH`, `COUNT` and `TYPE` as in `options`, one node
    /// at a time; progress is counted in slots, so the scan survives resharding and
    /// failover exactly as [`crate::Client::scan`] does (the same pure scan machine, see
    /// [`crate::core::scan`]).
    ///
    /// ```no_run
    /// use redis_cluster_uring::{blocking, scan::ScanOptions, Config};
    /// let mut client = blocking::Client::connect(&["127.0.0.1:7000"], Config::default())?;
    /// let mut scan = client.scan(ScanOptions { pattern: Some("user:*".into()), ..Default::default() });
    /// while let Some(keys) = scan.next_batch()? {
    ///     println!("{} keys", keys.len());
    /// }
    /// # Ok::<(), redis_cluster_uring::Error>(())
    /// ```
    pub fn scan(&mut self, options: crate::core::scan::ScanOptions) -> BlockingScan<'_> {
        BlockingScan::new(self, options)
    }
}
