//! A pipeline as sent: each command expanded by its class into the commands that actually
//! go out, and the replies folded back into one result per command. Pure; shared by the
//! async and the blocking client.
//!
//! A command becomes a *span* of the commands sent: none when it is refused, one copy per
//! node for a multi-node command (pinned to that node), its per-slot parts when a
//! cross-slot multi-key command is split (in place, so per-node order, and so what each
//! part observes, is the pipeline's), or itself. Every node is still written once, all
//! in flight together.

use crate::core::cmd::Cmd;
use crate::core::command_table::{refusal, CommandClass};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::fanout::{fan_out_class, merge, Fanout};
use crate::core::judgement::Judgement;
use crate::core::resp::Value;
use crate::core::split::{merge_replies, split_by_slot, Split};
use crate::core::topology::{NodeAddr, SlotMap};

/// Whether a command judged `judged` is split by slot: a multi-key command whose keys
/// span slots, if its meaning survives splitting (the others keep their cross-slot
/// error).
pub(crate) fn splits(c: &Cmd, judged: &Judgement) -> Option<Split> {
    if judged.is_multi_key() && judged.is_cross_slot() {
        split_by_slot(c)
    } else {
        None
    }
}

/// True when every command goes out as it is: regular, nothing to split. The common case,
/// which needs no expansion at all.
pub(crate) fn is_plain(cmds: &[Cmd], judged: &[Judgement]) -> bool {
    cmds.iter()
        .zip(judged)
        .all(|(c, j)| j.class() == CommandClass::Regular && splits(c, j).is_none())
}

enum Span {
    Refused(Error),
    One,
    Split(Split),
    Fanout(Fanout),
}

/// The commands to send for a pipeline, and how to fold their replies back.
pub(crate) struct Expansion {
    /// What goes out, in pipeline order.
    pub(crate) sent: Vec<Cmd>,
    /// The judgement of each command sent (a copy's is its original's, a part's its own).
    pub(crate) judged: Vec<Judgement>,
    /// Per sent command, the node it is pinned to (multi-node copies); empty when none is.
    pub(crate) pins: Vec<Option<NodeAddr>>,
    /// Commands refused before sending.
    pub(crate) refused: usize,
    spans: Vec<(usize, Span)>,
}

impl std::fmt::Debug for Expansion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expansion")
            .field("sent", &self.sent.len())
            .field("refused", &self.refused)
            .finish()
    }
}

/// Expands `cmds` (judged `judged`) against `map` (multi-node commands go to the nodes
/// it names).
pub(crate) fn expand(cmds: &[Cmd], judged: &[Judgement], map: &SlotMap) -> Expansion {
    let mut sent: Vec<Cmd> = Vec::with_capacity(cmds.len());
    let mut sent_judged: Vec<Judgement> = Vec::with_capacity(cmds.len());
    let mut pins: Vec<Option<NodeAddr>> = Vec::new();
    let mut spans: Vec<(usize, Span)> = Vec::with_capacity(cmds.len());
    let mut refused = 0;
    for (c, j) in cmds.iter().zip(judged) {
        if let Some(fan) = fan_out_class(c, j.class(), map) {
            match fan {
                Ok(fan) => {
                    pins.resize(sent.len(), None);
                    for node in &fan.nodes {
                        sent.push(c.clone());
                        sent_judged.push(*j);
                        pins.push(Some(node.clone()));
                    }
                    spans.push((fan.nodes.len(), Span::Fanout(fan)));
                }
                Err(error) => {
                    refused += 1;
                    spans.push((0, Span::Refused(error)));
                }
            }
            continue;
        }
        if let Some(error) = refusal(c, j.class(), true) {
            refused += 1;
            spans.push((0, Span::Refused(error)));
            continue;
        }
        match splits(c, j) {
            Some(split) => {
                for part in &split.parts {
                    sent.push(part.cmd.clone());
                    sent_judged.push(Judgement::of(&part.cmd));
                }
                spans.push((split.parts.len(), Span::Split(split)));
            }
            None => {
                sent.push(c.clone());
                sent_judged.push(*j);
                spans.push((1, Span::One));
            }
        }
    }
    if !pins.is_empty() {
        pins.resize(sent.len(), None);
    }
    Expansion {
        sent,
        judged: sent_judged,
        pins,
        refused,
        spans,
    }
}

impl Expansion {
    /// One result per original command, from the sent commands' results in order.
    pub(crate) fn fold(self, results: Vec<Result<Value>>) -> Vec<Result<Value>> {
        let mut results = results.into_iter();
        self.spans
            .into_iter()
            .map(|(n, span)| match span {
                Span::Refused(error) => Err(error),
                Span::Split(split) => merge_replies(&split, results.by_ref().take(n).collect()),
                Span::Fanout(fan) => merge(&fan, results.by_ref().take(n).collect()),
                Span::One => results.next().unwrap_or_else(|| {
                    Err(Error::new(ErrorKind::Protocol, "a command lost its reply"))
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cmd::cmd;
    use bytes::Bytes;

    #[test]
    fn spans_fold_back_in_pipeline_order() {
        let nodes = [
            NodeAddr::new("127.0.0.1", 7000),
            NodeAddr::new("127.0.0.1", 7001),
        ];
        let map = SlotMap::split_evenly(&nodes);
        let cmds = [
            cmd("GET").arg("a"),
            cmd("MULTI"),
            cmd("DBSIZE"),
            cmd("MGET").arg("a").arg("b"),
            cmd("SET").arg("c").arg(1),
        ];
        let judged = Judgement::all(&cmds);
        assert!(!is_plain(&cmds, &judged));
        assert!(is_plain(&cmds[4..], &judged[4..]));
        let e = expand(&cmds, &judged, &map);
        assert_eq!(e.judged.len(), e.sent.len());
        assert!(e
            .sent
            .iter()
            .zip(&e.judged)
            .all(|(c, j)| Judgement::of(c) == *j));
        assert_eq!(e.refused, 1);
        // GET, DBSIZE × 2 nodes, MGET split in 2 (a and b hash to different slots), SET.
        let split_parts = split_by_slot(&cmds[3]).map_or(1, |s| s.parts.len());
        assert_eq!(e.sent.len(), 1 + 2 + split_parts + 1);
        assert_eq!(e.pins.len(), e.sent.len());
        assert_eq!(e.pins.iter().filter(|p| p.is_some()).count(), 2);
        let bulk = |s: &'static str| Ok(Value::Bulk(Bytes::from_static(s.as_bytes())));
        let mut results = vec![bulk("va"), Ok(Value::Int(3)), Ok(Value::Int(4))];
        results.extend((0..split_parts).map(|i| {
            Ok(Value::Array(vec![if i == 0 {
                Value::Bulk("va".into())
            } else {
                Value::Bulk("vb".into())
            }]))
        }));
        results.push(Ok(Value::SimpleString("OK".into())));
        let folded = e.fold(results);
        assert_eq!(folded.len(), 5);
        assert_eq!(folded[0].as_ref().unwrap(), &Value::Bulk("va".into()));
        assert_eq!(
            folded[1].as_ref().unwrap_err().kind(),
            ErrorKind::Unsupported
        );
        assert_eq!(folded[2].as_ref().unwrap(), &Value::Int(7));
        assert!(matches!(folded[3], Ok(Value::Array(ref v)) if v.len() == 2));
        assert!(folded[4].is_ok());
    }
}
