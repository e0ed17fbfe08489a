//! Command routing: which arguments of a command are keys, and so which slot it goes to.
//!
//! Where the keys are is the command table's business ([`crate::core::command_table`],
//! one lookup of the name): most commands have one key, at index 1; keyless commands go
//! to any node; multi-key commands must keep every key in one slot (the server refuses
//! them otherwise with `CROSSSLOT`, so the client refuses them first, without a round
//! trip); scripts and streams say where their keys are. A command the table does not
//! know is assumed to have its key at index 1, which is right for the great majority of
//! module and future commands. This module turns those positions into keys and a slot.

use std::ops::Range;

use crate::core::cmd::Cmd;
use crate::core::command_table::{describe, Keys};
pub use crate::core::command_table::{stream_options, StreamOptions};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::slot::{slot_for_key, Slot};

/// Where a command must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The primary of this slot.
    Slot(Slot),
    /// Any node will do (keyless commands such as `ECHO`, `TIME`, `PUBLISH`).
    AnyNode,
}

/// The slots of a command's keys, as far as routing needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySlots {
    /// No key: any node.
    None,
    /// Every key in this slot.
    One(Slot),
    /// The first key's slot, and the first other slot met.
    Cross(Slot, Slot),
}

impl KeySlots {
    /// As a route, or the `CrossSlot` error naming `cmd`.
    pub(crate) fn route(self, cmd: &Cmd) -> Result<Route> {
        match self {
            KeySlots::None => Ok(Route::AnyNode),
            KeySlots::One(slot) => Ok(Route::Slot(slot)),
            KeySlots::Cross(first, other) => Err(Error::new(
                ErrorKind::CrossSlot,
                format!(
                    "{} keys hash to different slots ({first} and {other}); use a hash tag",
                    String::from_utf8_lossy(cmd.name())
                ),
            )),
        }
    }
}

/// The slots of the keys at `keys` in `cmd`.
#[inline]
pub(crate) fn key_slots(cmd: &Cmd, keys: Keys) -> KeySlots {
    // The one-key case is by far the most common.
    if let Keys::At(i) = keys {
        return match cmd.arg_at(i) {
            Some(key) => KeySlots::One(slot_for_key(key)),
            None => KeySlots::None,
        };
    }
    several_key_slots(cmd, keys)
}

/// [`key_slots`] of anything but one key.
fn several_key_slots(cmd: &Cmd, keys: Keys) -> KeySlots {
    let mut slot = None;
    for key in keys_at(cmd, keys) {
        let s = slot_for_key(key);
        match slot {
            None => slot = Some(s),
            Some(first) if first != s => return KeySlots::Cross(first, s),
            Some(_) => {}
        }
    }
    slot.map_or(KeySlots::None, KeySlots::One)
}

/// The keys of a command, in argument order.
///
/// ```
/// use redis_cluster_uring::{cmd, core::route::command_keys};
/// let c = cmd("MSET").arg("a").arg(1).arg("b").arg(2);
/// assert_eq!(command_keys(&c), vec![&b"a"[..], b"b"]);
/// let c = cmd("EVAL").arg("return 1").arg(2).arg("k1").arg("k2").arg("argv");
/// assert_eq!(command_keys(&c), vec![&b"k1"[..], b"k2"]);
/// ```
pub fn command_keys(cmd: &Cmd) -> Vec<&[u8]> {
    keys_at(cmd, describe(cmd).keys).collect()
}

/// The keys at `keys` in `cmd`, in argument order.
fn keys_at(cmd: &Cmd, keys: Keys) -> impl Iterator<Item = &[u8]> {
    let (lead, rest) = key_indexes(cmd, keys);
    lead.into_iter().chain(rest).filter_map(|i| cmd.arg_at(i))
}

/// The argument indexes of a command's keys: maybe one, then a run every `step`.
fn key_indexes(cmd: &Cmd, keys: Keys) -> (Option<usize>, std::iter::StepBy<Range<usize>>) {
    let args = cmd.len();
    let run = |range: Range<usize>| range.step_by(1);
    match keys {
        Keys::None => (None, run(0..0)),
        Keys::At(i) => (Some(i), run(0..0)),
        Keys::Every {
            first,
            step,
            skip_last,
        } => (None, (first..args.saturating_sub(skip_last)).step_by(step)),
        Keys::NumKeysAt(at) => (None, run(numkeys_after(cmd, at))),
        Keys::DestThenCounted => (Some(1), run(numkeys_after(cmd, 2))),
        Keys::Streams => match stream_options(cmd).streams_at {
            Some(at) => {
                let rest = args - at - 1;
                (None, run(at + 1..at + 1 + rest / 2))
            }
            None => (None, run(0..0)),
        },
    }
}

/// The indexes of the keys counted by the `numkeys` argument at index `at`; a count
/// larger than the arguments is clamped, not trusted.
fn numkeys_after(cmd: &Cmd, at: usize) -> Range<usize> {
    let n = cmd
        .arg_at(at)
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let end = (at + 1).saturating_add(n).min(cmd.len());
    at + 1..end.max(at + 1)
}

/// True when the command can name several keys (and so may need splitting by slot).
pub fn is_multi_key(cmd: &Cmd) -> bool {
    describe(cmd).keys.is_multi_key()
}

/// Routes one command: the slot of its keys, `AnyNode` when it has none, or a `CrossSlot`
/// error when its keys live in different slots.
///
/// ```
/// use redis_cluster_uring::{cmd, core::route::{route_command, Route}, slot_for_key, ErrorKind};
/// assert_eq!(route_command(&cmd("GET").arg("foo")).unwrap(), Route::Slot(slot_for_key(b"foo")));
/// assert_eq!(route_command(&cmd("PING")).unwrap(), Route::AnyNode);
/// let e = route_command(&cmd("MGET").arg("a").arg("b")).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::CrossSlot);
/// assert!(route_command(&cmd("MGET").arg("{t}a").arg("{t}b")).is_ok());
/// ```
pub fn route_command(cmd: &Cmd) -> Result<Route> {
    key_slots(cmd, describe(cmd).keys).route(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cmd::cmd;

    fn slot(key: &str) -> Route {
        Route::Slot(slot_for_key(key.as_bytes()))
    }

    #[test]
    fn single_key_commands_use_index_one() {
        assert_eq!(route_command(&cmd("get").arg("k")).unwrap(), slot("k"));
        assert_eq!(
            route_command(&cmd("HSET").arg("h").arg("f").arg("v")).unwrap(),
            slot("h")
        );
        assert_eq!(
            route_command(&cmd("SOMEMODULE.CMD").arg("m")).unwrap(),
            slot("m")
        );
    }

    #[test]
    fn keyless_commands_go_anywhere() {
        for c in ["PING", "INFO", "TIME", "DBSIZE", "cluster", "FLUSHALL"] {
            assert_eq!(route_command(&cmd(c)).unwrap(), Route::AnyNode, "{c}");
        }
        assert_eq!(
            route_command(&cmd("ECHO").arg("hello")).unwrap(),
            Route::AnyNode
        );
        assert_eq!(
            route_command(&cmd("EVAL").arg("return 1").arg(0)).unwrap(),
            Route::AnyNode
        );
        assert_eq!(
            route_command(&cmd("OBJECT").arg("HELP")).unwrap(),
            Route::AnyNode
        );
    }

    #[test]
    fn special_key_positions() {
        assert_eq!(
            route_command(&cmd("MEMORY").arg("USAGE").arg("k")).unwrap(),
            slot("k")
        );
        assert_eq!(
            route_command(&cmd("OBJECT").arg("ENCODING").arg("k")).unwrap(),
            slot("k")
        );
        assert_eq!(
            route_command(
                &cmd("XREAD")
                    .arg("COUNT")
                    .arg(2)
                    .arg("STREAMS")
                    .arg("{s}1")
                    .arg("{s}2")
                    .arg("0")
                    .arg("0")
            )
            .unwrap(),
            slot("s")
        );
        assert_eq!(
            command_keys(
                &cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("g")
                    .arg("c")
                    .arg("STREAMS")
                    .arg("a")
                    .arg(">")
            ),
            vec![&b"a"[..]]
        );
        assert_eq!(
            command_keys(&cmd("BLPOP").arg("a").arg("b").arg(0)),
            vec![&b"a"[..], b"b"]
        );
        assert_eq!(
            command_keys(&cmd("LMOVE").arg("a").arg("b").arg("LEFT").arg("RIGHT")),
            vec![&b"a"[..], b"b"]
        );
        assert_eq!(
            command_keys(&cmd("FCALL").arg("f").arg(1).arg("k").arg("x")),
            vec![&b"k"[..]]
        );
        // Group and consumer names that look like keywords are names.
        assert_eq!(
            command_keys(
                &cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("STREAMS")
                    .arg("BLOCK")
                    .arg("COUNT")
                    .arg(1)
                    .arg("streams")
                    .arg("s1")
                    .arg(">")
            ),
            vec![&b"s1"[..]]
        );
        assert_eq!(
            command_keys(&cmd("BLMPOP").arg(0).arg(2).arg("a").arg("b").arg("LEFT")),
            vec![&b"a"[..], b"b"]
        );
        assert_eq!(
            command_keys(&cmd("LMPOP").arg(1).arg("a").arg("LEFT")),
            vec![&b"a"[..]]
        );
        assert_eq!(
            command_keys(
                &cmd("ZUNIONSTORE")
                    .arg("d")
                    .arg(2)
                    .arg("a")
                    .arg("b")
                    .arg("WEIGHTS")
                    .arg(1)
                    .arg(2)
            ),
            vec![&b"d"[..], b"a", b"b"]
        );
        assert_eq!(
            command_keys(&cmd("EVAL").arg("s").arg(usize::MAX).arg("k")),
            vec![&b"k"[..]]
        );
        // A numkeys larger than the arguments is clamped, not trusted.
        assert_eq!(
            command_keys(&cmd("EVAL").arg("s").arg(99).arg("k")),
            vec![&b"k"[..]]
        );
    }

    #[test]
    fn multi_key_commands_must_share_a_slot() {
        assert_eq!(
            route_command(&cmd("MSET").arg("{u}a").arg(1).arg("{u}b").arg(2)).unwrap(),
            slot("u")
        );
        // Values of MSET are not keys.
        assert!(route_command(&cmd("MSET").arg("{u}a").arg("zzz").arg("{u}b").arg("yyy")).is_ok());
        let e = route_command(&cmd("DEL").arg("a").arg("b")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CrossSlot);
        assert!(e.detail().contains("DEL"));
        assert!(route_command(&cmd("RENAME").arg("a").arg("b")).is_err());
        assert!(is_multi_key(&cmd("MGET").arg("a")));
        assert!(!is_multi_key(&cmd("GET").arg("a")));
    }
}
