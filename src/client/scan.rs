//! The cluster SCAN driver of the async client: it carries out what the pure
//! [`ScanMachine`] (`src/scan.rs`) decides (asks nodes, reloads the map, pauses).

use std::time::Instant;

use bytes::Bytes;

use super::driver::Client;
use crate::core::error::Result;
use crate::core::resp::Value;
use crate::core::scan::{ScanMachine, ScanOptions, ScanStep};

/// A scan over every key of the cluster; see [`Client::scan`].
#[derive(Debug)]
pub struct ClusterScan {
    client: Client,
    machine: ScanMachine,
}

impl ClusterScan {
    pub(crate) fn new(client: Client, options: ScanOptions) -> ClusterScan {
        ClusterScan {
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
    pub async fn next_batch(&mut self) -> Result<Option<Vec<Bytes>>> {
        loop {
            let step = self.machine.step(&self.client.slot_map(), Instant::now())?;
            match step {
                ScanStep::Ask { node, command } => {
                    let reply = self.client.query_node::<Value>(&node, command).await;
                    if let Some(keys) = self.machine.answer(reply)? {
                        return Ok(Some(keys));
                    }
                }
                ScanStep::RefreshMap => self.client.refresh_slots().await?,
                ScanStep::Pause(d) => super::driver::pause(d).await,
                ScanStep::Done => return Ok(None),
            }
        }
    }

    /// Every remaining key, collected.
    pub async fn collect_all(&mut self) -> Result<Vec<Bytes>> {
        let mut all = Vec::new();
        while let Some(keys) = self.next_batch().await? {
            all.extend(keys);
        }
        Ok(all)
    }
}

impl Client {
    /// Scans every key of every primary (`SCAN` node by node), with `MATCH`, `COUNT`
    /// and `TYPE` as in `options`. Progress is counted in slots, so the scan survives
    /// resharding and failover: every key that exists for the whole scan is returned,
    /// some possibly more than once.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{engine, scan::ScanOptions, Client, Config};
    /// engine::start(async {
    ///     let client = Client::connect(&["127.0.0.1:7000"], Config::default()).await?;
    ///     let mut scan = client.scan(ScanOptions { pattern: Some("user:*".into()), ..Default::default() });
    ///     while let Some(keys) = scan.next_batch().await? {
    ///         println!("{} keys", keys.len());
    ///     }
    ///     Ok::<(), redis_cluster_uring::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn scan(&self, options: crate::core::scan::ScanOptions) -> ClusterScan {
        ClusterScan::new(self.clone(), options)
    }
}
