//! The floor's per-node batches: which primary owns each command's key, and each node's
//! commands encoded once, back to back, as the bytes of its one send per pipeline.
//!
//! Pure: a slot map and the commands in, batches out. The encoding is the library's own
//! (`resp::encode`), so the floor sends the bytes the clients send.

use bytes::BytesMut;
use redis_cluster_uring::resp::encode::{encode_command, encoded_len};
use redis_cluster_uring::{slot_for_key, NodeAddr, SlotMap};

/// One node's share of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBatch {
    /// The primary that owns the slots of these commands' keys.
    pub node: NodeAddr,
    /// The commands' positions in the pipeline, in the order they are sent (and so the
    /// order of their replies).
    pub indexes: Vec<usize>,
    /// The commands as RESP arrays, back to back.
    pub bytes: Vec<u8>,
}

/// Groups `commands` (each its arguments, the key second: `GET key`, `SET key value`)
/// by the node `map` says owns the key's slot, nodes in order of their first command,
/// and encodes every batch into one buffer reserved once.
pub fn plan_batches<A: AsRef<[u8]>>(
    commands: &[Vec<A>],
    map: &SlotMap,
) -> Result<Vec<NodeBatch>, String> {
    let mut batches: Vec<NodeBatch> = Vec::new();
    for (index, args) in commands.iter().enumerate() {
        let key = args
            .get(1)
            .ok_or_else(|| format!("command {index} has no key"))?
            .as_ref();
        let slot = slot_for_key(key);
        let node = map
            .node_for(slot)
            .ok_or_else(|| format!("no primary owns slot {slot} (command {index})"))?;
        match batches.iter_mut().find(|b| &b.node == node) {
            Some(batch) => batch.indexes.push(index),
            None => batches.push(NodeBatch {
                node: node.clone(),
                indexes: vec![index],
                bytes: Vec::new(),
            }),
        }
    }
    for batch in &mut batches {
        let args_of = |i: usize| commands[i].iter().map(AsRef::as_ref);
        let len = batch.indexes.iter().map(|&i| encoded_len(args_of(i))).sum();
        let mut bytes = BytesMut::with_capacity(len);
        for &i in &batch.indexes {
            let args: Vec<&[u8]> = args_of(i).collect();
            encode_command(&mut bytes, args);
        }
        debug_assert_eq!(bytes.len(), len);
        batch.bytes = bytes.into();
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::{self, Workload};

    fn three_nodes() -> SlotMap {
        SlotMap::split_evenly(&[
            NodeAddr::new("127.0.0.1", 7000),
            NodeAddr::new("127.0.0.1", 7001),
            NodeAddr::new("127.0.0.1", 7002),
        ])
    }

    fn resp(args: &[&str]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        out.into_bytes()
    }

    #[test]
    fn every_command_goes_once_to_the_owner_of_its_slot_in_pipeline_order() {
        let map = three_nodes();
        for k in [1, 2, 16, 129] {
            let commands = clients::pipeline_args(Workload::Fanout, k);
            let batches = plan_batches(&commands, &map).unwrap();
            let mut all: Vec<usize> = batches.iter().flat_map(|b| b.indexes.clone()).collect();
            all.sort_unstable();
            assert_eq!(all, (0..k).collect::<Vec<_>>(), "K={k}");
            for b in &batches {
                assert!(b.indexes.windows(2).all(|w| w[0] < w[1]), "K={k}");
                for &i in &b.indexes {
                    let slot = slot_for_key(&commands[i][1]);
                    assert_eq!(map.node_for(slot), Some(&b.node), "K={k} command {i}");
                }
            }
            let nodes: Vec<&NodeAddr> = batches.iter().map(|b| &b.node).collect();
            let mut distinct = nodes.clone();
            distinct.dedup();
            assert_eq!(nodes, distinct, "one batch per node, K={k}");
        }
        // Enough keys reach every node.
        let fanout = plan_batches(&clients::pipeline_args(Workload::Fanout, 16), &map).unwrap();
        assert_eq!(fanout.len(), 3);
    }

    #[test]
    fn a_batch_is_its_commands_encoded_back_to_back_half_get_half_set() {
        let commands = clients::pipeline_args(Workload::SingleNode, 4);
        let batches = plan_batches(&commands, &three_nodes()).unwrap();
        assert_eq!(batches.len(), 1, "one hash tag, one node");
        assert_eq!(batches[0].indexes, [0, 1, 2, 3]);
        let value = clients::VALUE;
        let want: Vec<u8> = [
            resp(&["GET", "{bench}:0"]),
            resp(&["SET", "{bench}:1", value]),
            resp(&["GET", "{bench}:2"]),
            resp(&["SET", "{bench}:3", value]),
        ]
        .concat();
        assert_eq!(batches[0].bytes, want);
    }

    #[test]
    fn an_unowned_slot_or_a_keyless_command_is_an_error() {
        let commands = clients::pipeline_args(Workload::Fanout, 4);
        assert!(plan_batches(&commands, &SlotMap::empty()).is_err());
        let keyless = vec![vec![b"PING".to_vec()]];
        assert!(plan_batches(&keyless, &three_nodes()).is_err());
    }
}
