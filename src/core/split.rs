//! Splitting multi-key commands whose keys live in several slots, and merging the parts'
//! replies back into the one reply the caller expects. Pure.
//!
//! A cluster refuses `MGET a b` when `a` and `b` hash to different slots. For the
//! commands whose meaning survives splitting, the client sends one command per slot and
//! merges: `MGET` values go back in key order, `DEL`/`UNLINK`/`EXISTS`/`TOUCH` counts are
//! summed, `MSET` is OK when every part is. The parts run on different nodes, so a split
//! `MSET` is not atomic (the server's cross-slot refusal exists for that reason); callers
//! who need atomicity use a hash tag.

use crate::core::cmd::Cmd;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::resp::Value;
use crate::core::slot::{slot_for_key, Slot};

/// How the parts' replies combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Arrays of per-key values, put back in the original key order (`MGET`).
    Values,
    /// Integer counts, summed (`DEL`, `UNLINK`, `EXISTS`, `TOUCH`).
    Sum,
    /// Every part must answer OK (`MSET`).
    AllOk,
}

/// One part: a command over the keys of one slot, and where its keys were in the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The command for one slot.
    pub cmd: Cmd,
    /// Positions (in the original key order) of this part's keys.
    pub positions: Vec<usize>,
}

/// A command split by slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The parts, in order of first appearance of their slot.
    pub parts: Vec<Part>,
    /// How to merge their replies.
    pub merge: Merge,
    /// Number of keys in the original command.
    pub keys: usize,
}

/// Splits a command whose keys span several slots, if its meaning survives splitting.
/// `None` for single-slot commands and for commands that cannot be split (`SINTER`,
/// `RENAME`, scripts...), which keep their cross-slot error.
///
/// ```
/// use redis_cluster_uring::{cmd, core::split::{split_by_slot, Merge}};
/// let s = split_by_slot(&cmd("MGET").arg("a").arg("b").arg("c")).unwrap();
/// assert_eq!(s.merge, Merge::Values);
/// assert_eq!(s.parts.iter().map(|p| p.positions.len()).sum::<usize>(), 3);
/// assert!(split_by_slot(&cmd("MGET").arg("{t}a").arg("{t}b")).is_none());
/// ```
pub fn split_by_slot(command: &Cmd) -> Option<Split> {
    let name = command.name();
    let (merge, step) = if name.eq_ignore_ascii_case(b"MGET") {
        (Merge::Values, 1)
    } else if ["DEL", "UNLINK", "EXISTS", "TOUCH"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
    {
        (Merge::Sum, 1)
    } else if name.eq_ignore_ascii_case(b"MSET") {
        (Merge::AllOk, 2)
    } else {
        return None;
    };
    let args = command.len();
    if args < 2 || (step == 2 && (args - 1) % 2 != 0) {
        return None;
    }
    // (slot, part) in order of first appearance; few slots per command, so a Vec.
    let mut parts: Vec<(Slot, Part)> = Vec::new();
    let mut position = 0;
    let mut i = 1;
    while i < args {
        let key = command.arg_at(i)?;
        let slot = slot_for_key(key);
        let at = match parts.iter().position(|(s, _)| *s == slot) {
            Some(at) => at,
            None => {
                parts.push((
                    slot,
                    Part {
                        cmd: Cmd::new().arg(name),
                        positions: Vec::new(),
                    },
                ));
                parts.len() - 1
            }
        };
        let part = &mut parts[at].1;
        for j in i..i + step {
            part.cmd.push_arg(command.arg_at(j)?);
        }
        part.positions.push(position);
        position += 1;
        i += step;
    }
    if parts.len() < 2 {
        return None;
    }
    Some(Split {
        parts: parts.into_iter().map(|(_, p)| p).collect(),
        merge,
        keys: position,
    })
}

/// Merges the parts' replies (in part order) into the original command's reply. An error
/// in any part is the command's error.
pub fn merge_replies(split: &Split, replies: Vec<Result<Value>>) -> Result<Value> {
    if replies.len() != split.parts.len() {
        return Err(Error::new(
            ErrorKind::Protocol,
            "a split command lost a part's reply",
        ));
    }
    let mismatch = |what: &str| Error::new(ErrorKind::TypeMismatch, format!("split part: {what}"));
    match split.merge {
        Merge::Values => {
            let mut out = vec![Value::Nil; split.keys];
            for (part, reply) in split.parts.iter().zip(replies) {
                let Value::Array(values) = reply? else {
                    return Err(mismatch("MGET part did not answer an array"));
                };
                if values.len() != part.positions.len() {
                    return Err(mismatch("MGET part answered the wrong number of values"));
                }
                for (&pos, v) in part.positions.iter().zip(values) {
                    if let Some(slot) = out.get_mut(pos) {
                        *slot = v;
                    }
                }
            }
            Ok(Value::Array(out))
        }
        Merge::Sum => {
            let mut total: i64 = 0;
            for reply in replies {
                match reply? {
                    Value::Int(n) => total = total.saturating_add(n),
                    _ => return Err(mismatch("count part did not answer an integer")),
                }
            }
            Ok(Value::Int(total))
        }
        Merge::AllOk => {
            let mut last = Value::Nil;
            for reply in replies {
                last = reply?;
            }
            Ok(last)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cmd::cmd;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn only_splittable_cross_slot_commands_split() {
        assert!(split_by_slot(&cmd("GET").arg("a")).is_none());
        assert!(split_by_slot(&cmd("SINTER").arg("a").arg("b")).is_none());
        assert!(split_by_slot(&cmd("DEL").arg("{x}1").arg("{x}2")).is_none());
        assert!(split_by_slot(&cmd("MSET").arg("a").arg(1).arg("b")).is_none());
        let s = split_by_slot(&cmd("del").arg("a").arg("b")).unwrap();
        assert_eq!(s.merge, Merge::Sum);
        assert_eq!(s.parts[0].cmd.name(), b"del");
    }

    #[test]
    fn mset_parts_keep_pairs_together() {
        let s = split_by_slot(
            &cmd("MSET")
                .arg("a")
                .arg(1)
                .arg("b")
                .arg(2)
                .arg("{a}x")
                .arg(3),
        )
        .unwrap();
        assert_eq!(s.merge, Merge::AllOk);
        // "a" and "{a}x" share a slot, "b" does not.
        let a: Vec<&[u8]> = s.parts[0].cmd.args().collect();
        assert_eq!(a, vec![&b"MSET"[..], b"a", b"1", b"{a}x", b"3"]);
        assert_eq!(s.parts[0].positions, vec![0, 2]);
        assert_eq!(s.parts[1].positions, vec![1]);
        assert_eq!(
            merge_replies(&s, vec![Ok(Value::SimpleString("OK".into())); 2]).unwrap(),
            Value::SimpleString("OK".into())
        );
    }

    #[test]
    fn errors_and_malformed_parts_are_the_commands_error() {
        let s = split_by_slot(&cmd("MGET").arg("a").arg("b")).unwrap();
        let e = merge_replies(
            &s,
            vec![
                Ok(Value::Array(vec![Value::Nil])),
                Err(Error::new(ErrorKind::Io, "x")),
            ],
        );
        assert_eq!(e.unwrap_err().kind(), ErrorKind::Io);
        let e = merge_replies(
            &s,
            vec![Ok(Value::Int(1)), Ok(Value::Array(vec![Value::Nil]))],
        );
        assert_eq!(e.unwrap_err().kind(), ErrorKind::TypeMismatch);
        assert!(merge_replies(&s, vec![]).is_err());
    }

    proptest! {
        /// Whatever the keys, MGET's merged reply has each key's value at its position.
        #[test]
        fn mget_merge_restores_key_order(keys in proptest::collection::vec("[a-z]{1,6}", 2..40)) {
            let mut c = cmd("MGET");
            for k in &keys { c.push_arg(k.as_str()); }
            let Some(s) = split_by_slot(&c) else {
                // All keys in one slot: nothing to split.
                let first = slot_for_key(keys[0].as_bytes());
                prop_assert!(keys.iter().all(|k| slot_for_key(k.as_bytes()) == first));
                return Ok(());
            };
            // Each part is single-slot, and together they cover every key once.
            let mut seen = vec![0; keys.len()];
            let replies: Vec<Result<Value>> = s.parts.iter().map(|p| {
                let slots: Vec<Slot> = p.cmd.args().skip(1).map(slot_for_key).collect();
                assert!(slots.windows(2).all(|w| w[0] == w[1]));
                for &pos in &p.positions { seen[pos] += 1; }
                // The simulated server answers each key with the key itself.
                Ok(Value::Array(p.cmd.args().skip(1).map(|k| Value::Bulk(Bytes::copy_from_slice(k))).collect()))
            }).collect();
            prop_assert!(seen.iter().all(|&n| n == 1));
            let merged = merge_replies(&s, replies).unwrap();
            prop_assert_eq!(merged, Value::Array(keys.iter().map(|k| bulk(k)).collect()));
        }
    }
}
