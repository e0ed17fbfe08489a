//! Command routing: which arguments of a command are keys, and so which slot it goes to.
//!
//! Most commands have one key, at index 1. The exceptions are listed here by name:
//! keyless commands go to any node; multi-key commands must keep every key in one slot
//! (the server refuses them otherwise with `CROSSSLOT`, so the client refuses them first,
//! without a round trip); scripts and streams say where their keys are. A command this
//! table does not know is assumed to have its key at index 1, which is right for the
//! great majority of module and future commands.

use crate::core::cmd::Cmd;
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

/// Where the keys of a command are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// No key.
    None,
    /// One key at this index.
    At(usize),
    /// Keys from index `first`, every `step` arguments, until the end (minus `skip_last`).
    Every {
        first: usize,
        step: usize,
        skip_last: usize,
    },
    /// `numkeys` at index `at`, the keys right after it (EVAL and FCALL at 2, LMPOP and
    /// ZUNION at 1, BLMPOP after its timeout at 2).
    NumKeysAt(usize),
    /// A destination key at 1, `numkeys` at 2, the source keys after it (ZUNIONSTORE).
    DestThenCounted,
    /// After the `STREAMS` keyword, the first half of what remains (XREAD, XREADGROUP).
    Streams,
}

/// The command name upper-cased into a stack buffer (names are short; a longer one is no
/// command these tables know). Shared with the command table.
pub(crate) fn upper_name(name: &[u8]) -> Option<([u8; 24], usize)> {
    if name.len() > 24 {
        return None;
    }
    let mut buf = [0u8; 24];
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    Some((buf, name.len()))
}

fn key_positions(cmd: &Cmd) -> Keys {
    let every = |step, skip_last| Keys::Every {
        first: 1,
        step,
        skip_last,
    };
    let default = if cmd.len() > 1 {
        Keys::At(1)
    } else {
        Keys::None
    };
    let Some((buf, len)) = upper_name(cmd.name()) else {
        return default;
    };
    // One `match` over the upper-cased name: the compiler turns it into a few length and
    // byte comparisons instead of a scan through tables, which matters at a million
    // commands per second.
    match &buf[..len] {
        b"GET" | b"SET" | b"INCR" | b"INCRBY" | b"DECR" | b"DECRBY" | b"HGET" | b"HSET"
        | b"HGETALL" | b"EXPIRE" | b"TTL" | b"LPUSH" | b"RPUSH" | b"LPOP" | b"RPOP" | b"SADD"
        | b"ZADD" | b"STRLEN" | b"APPEND" | b"GETSET" | b"SETEX" | b"PEXPIRE" => default,
        b"ACL" | b"ASKING" | b"AUTH" | b"BGREWRITEAOF" | b"BGSAVE" | b"CLIENT" | b"CLUSTER"
        | b"COMMAND" | b"CONFIG" | b"DBSIZE" | b"DEBUG" | b"ECHO" | b"FAILOVER" | b"FLUSHALL"
        | b"FLUSHDB" | b"FUNCTION" | b"HELLO" | b"INFO" | b"KEYS" | b"LASTSAVE" | b"LATENCY"
        | b"LOLWUT" | b"MODULE" | b"MONITOR" | b"MULTI" | b"EXEC" | b"DISCARD" | b"PING"
        | b"PSUBSCRIBE" | b"PUBLISH" | b"PUBSUB" | b"PUNSUBSCRIBE" | b"QUIT" | b"RANDOMKEY"
        | b"READONLY" | b"READWRITE" | b"REPLICAOF" | b"RESET" | b"ROLE" | b"SAVE" | b"SCAN"
        | b"SCRIPT" | b"SELECT" | b"SHUTDOWN" | b"SLAVEOF" | b"SLOWLOG" | b"SUBSCRIBE"
        | b"SWAPDB" | b"SYNC" | b"TIME" | b"UNSUBSCRIBE" | b"UNWATCH" | b"WAIT" | b"WAITAOF" => {
            Keys::None
        }
        // `MEMORY USAGE key` is the one keyed MEMORY subcommand.
        b"MEMORY" => match cmd.arg_at(1) {
            Some(sub) if sub.eq_ignore_ascii_case(b"USAGE") => Keys::At(2),
            _ => Keys::None,
        },
        // Every argument after the name is a key.
        b"DEL" | b"EXISTS" | b"MGET" | b"PFCOUNT" | b"PFMERGE" | b"SDIFF" | b"SDIFFSTORE"
        | b"SINTER" | b"SINTERSTORE" | b"SUNION" | b"SUNIONSTORE" | b"TOUCH" | b"UNLINK"
        | b"WATCH" => every(1, 0),
        // Source and destination at 1 and 2.
        b"BLMOVE" | b"BRPOPLPUSH" | b"COPY" | b"LMOVE" | b"RENAME" | b"RENAMENX" | b"RPOPLPUSH"
        | b"SMOVE" => every(1, cmd.len().saturating_sub(3)),
        b"MSET" | b"MSETNX" => every(2, 0),
        // The last argument is the timeout.
        b"BLPOP" | b"BRPOP" | b"BZPOPMIN" | b"BZPOPMAX" => every(1, 1),
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" | b"BLMPOP"
        | b"BZMPOP" => Keys::NumKeysAt(2),
        b"LMPOP" | b"ZMPOP" | b"SINTERCARD" | b"ZUNION" | b"ZINTER" | b"ZDIFF" | b"ZINTERCARD" => {
            Keys::NumKeysAt(1)
        }
        b"ZUNIONSTORE" | b"ZINTERSTORE" | b"ZDIFFSTORE" => Keys::DestThenCounted,
        b"XREAD" | b"XREADGROUP" => Keys::Streams,
        // Subcommand first, then the key (`OBJECT ENCODING key`, `XINFO STREAM key`);
        // `OBJECT HELP` has none.
        b"OBJECT" | b"XINFO" => {
            if cmd.len() > 2 {
                Keys::At(2)
            } else {
                Keys::None
            }
        }
        _ => default,
    }
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
    let args = cmd.len();
    match key_positions(cmd) {
        Keys::None => Vec::new(),
        Keys::At(i) => cmd.arg_at(i).into_iter().collect(),
        Keys::Every {
            first,
            step,
            skip_last,
        } => (first..args.saturating_sub(skip_last))
            .step_by(step)
            .filter_map(|i| cmd.arg_at(i))
            .collect(),
        Keys::NumKeysAt(at) => numkeys_after(cmd, at).collect(),
        Keys::DestThenCounted => cmd
            .arg_at(1)
            .into_iter()
            .chain(numkeys_after(cmd, 2))
            .collect(),
        Keys::Streams => {
            let Some(at) = stream_options(cmd).streams_at else {
                return Vec::new();
            };
            let rest = args - at - 1;
            (at + 1..at + 1 + rest / 2)
                .filter_map(|i| cmd.arg_at(i))
                .collect()
        }
    }
}

/// The keys counted by the `numkeys` argument at index `at`; a count larger than the
/// arguments is clamped, not trusted.
fn numkeys_after(cmd: &Cmd, at: usize) -> impl Iterator<Item = &[u8]> {
    let n = cmd
        .arg_at(at)
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let end = (at + 1).saturating_add(n).min(cmd.len());
    (at + 1..end).filter_map(|i| cmd.arg_at(i))
}

/// The options of `XREAD` / `XREADGROUP` before their `STREAMS` keyword.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions<'a> {
    /// The argument after `BLOCK`, if the command blocks.
    pub block: Option<&'a [u8]>,
    /// Index of the `STREAMS` keyword.
    pub streams_at: Option<usize>,
}

/// Parses the options of `XREAD` / `XREADGROUP` keyword by keyword, skipping each
/// option's values, so a group or consumer *named* `STREAMS` or `BLOCK` is a name, not
/// a keyword.
///
/// ```
/// use redis_cluster_uring::{cmd, core::route::stream_options};
/// let c = cmd("XREADGROUP").arg("GROUP").arg("streams").arg("block").arg("BLOCK").arg(0)
///     .arg("STREAMS").arg("s").arg(">");
/// let o = stream_options(&c);
/// assert_eq!(o.block, Some(&b"0"[..]));
/// assert_eq!(o.streams_at, Some(6));
/// ```
pub fn stream_options(cmd: &Cmd) -> StreamOptions<'_> {
    let mut options = StreamOptions::default();
    let mut i = 1;
    while let Some(arg) = cmd.arg_at(i) {
        let word = |w: &[u8]| arg.eq_ignore_ascii_case(w);
        if word(b"STREAMS") {
            options.streams_at = Some(i);
            break;
        } else if word(b"GROUP") {
            i += 3;
        } else if word(b"BLOCK") {
            options.block = cmd.arg_at(i + 1);
            i += 2;
        } else if word(b"COUNT") || word(b"CLAIM") {
            i += 2;
        } else {
            // NOACK, or an option this client does not know: one word.
            i += 1;
        }
    }
    options
}

/// True when the command can name several keys (and so may need splitting by slot).
pub fn is_multi_key(cmd: &Cmd) -> bool {
    !matches!(key_positions(cmd), Keys::None | Keys::At(_))
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
    // The one-key case is by far the most common: no allocation for it.
    if let Keys::At(i) = key_positions(cmd) {
        return Ok(match cmd.arg_at(i) {
            Some(key) => Route::Slot(slot_for_key(key)),
            None => Route::AnyNode,
        });
    }
    let mut slot = None;
    for key in command_keys(cmd) {
        let s = slot_for_key(key);
        match slot {
            None => slot = Some(s),
            Some(first) if first != s => {
                return Err(Error::new(
                    ErrorKind::CrossSlot,
                    format!(
                        "{} keys hash to different slots ({first} and {s}); use a hash tag",
                        String::from_utf8_lossy(cmd.name())
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(slot.map_or(Route::AnyNode, Route::Slot))
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
