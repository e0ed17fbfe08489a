//! The cluster SCAN driver of the async client: it carries out what the pure
//! [`ScanMachine`] (`src/scan.rs`) decides (asks nodes, reloads the map, pauses).

use std::time::Instant;

use bytes::Bytes;

use super::Client;
use crate::error::Result;
use crate::resp::Value;
use crate::scan::{ScanMachine, ScanOptions, ScanStep};

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
                ScanStep::Pause(pause) => tokio::time::sleep(pause).await,
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
