//! Command routing: which arguments of a command are keys, and so which slot it goes to.
//!
//! Most commands have one key, at index 1. The exceptions are listed here by name:
//! keyless commands go to any node; multi-key commands must keep every key in one slot
//! (the server refuses them otherwise with `CROSSSLOT`, so the client refuses them first,
//! without a round trip); scripts and streams say where their keys are. A command this
//! table does not know is assumed to have its key at index 1, which is right for the
//! great majority of module and future commands.

use crate::cmd::Cmd;
use crate::error::{Error, ErrorKind, Result};
use crate::slot::{slot_for_key, Slot};

/// Where a command must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The primary of this slot.
    Slot(Slot),
    /// Any node will do (keyless commands such as `PING`, `INFO`, `TIME`).
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
    /// `numkeys` at index 2, keys after it (EVAL, FCALL).
    NumKeysAt2,
    /// After the `STREAMS` keyword, the first half of what remains (XREAD, XREADGROUP).
    Streams,
}

const KEYLESS: &[&str] = &[
    "ACL",
    "ASKING",
    "AUTH",
    "BGREWRITEAOF",
    "BGSAVE",
    "CLIENT",
    "CLUSTER",
    "COMMAND",
    "CONFIG",
    "DBSIZE",
    "DEBUG",
    "ECHO",
    "FAILOVER",
    "FLUSHALL",
    "FLUSHDB",
    "FUNCTION",
    "HELLO",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LATENCY",
    "LOLWUT",
    "MEMORY",
    "MODULE",
    "MONITOR",
    "MULTI",
    "EXEC",
    "DISCARD",
    "PING",
    "PSUBSCRIBE",
    "PUBLISH",
    "PUBSUB",
    "PUNSUBSCRIBE",
    "QUIT",
    "RANDOMKEY",
    "READONLY",
    "READWRITE",
    "REPLICAOF",
    "RESET",
    "ROLE",
    "SAVE",
    "SCAN",
    "SCRIPT",
    "SELECT",
    "SHUTDOWN",
    "SLAVEOF",
    "SLOWLOG",
    "SUBSCRIBE",
    "SWAPDB",
    "SYNC",
    "TIME",
    "UNSUBSCRIBE",
    "UNWATCH",
    "WAIT",
    "WAITAOF",
];

/// Commands whose every argument after the name is a key.
const ALL_KEYS: &[&str] = &[
    "DEL",
    "EXISTS",
    "MGET",
    "PFCOUNT",
    "PFMERGE",
    "SDIFF",
    "SDIFFSTORE",
    "SINTER",
    "SINTERSTORE",
    "SUNION",
    "SUNIONSTORE",
    "TOUCH",
    "UNLINK",
    "WATCH",
];

/// Commands with keys at 1 and 2 (source and destination).
const TWO_KEYS: &[&str] = &[
    "BLMOVE",
    "BRPOPLPUSH",
    "COPY",
    "LMOVE",
    "RENAME",
    "RENAMENX",
    "RPOPLPUSH",
    "SMOVE",
];

fn eq(name: &[u8], candidate: &str) -> bool {
    name.eq_ignore_ascii_case(candidate.as_bytes())
}

fn is_one_of(name: &[u8], list: &[&str]) -> bool {
    list.iter().any(|c| eq(name, c))
}

fn key_positions(cmd: &Cmd) -> Keys {
    let name = cmd.name();
    if is_one_of(name, KEYLESS) {
        // `MEMORY USAGE key` is the one keyed MEMORY subcommand.
        if eq(name, "MEMORY") && cmd.arg_at(1).is_some_and(|s| eq(s, "USAGE")) {
            return Keys::At(2);
        }
        return Keys::None;
    }
    if is_one_of(name, ALL_KEYS) {
        return Keys::Every {
            first: 1,
            step: 1,
            skip_last: 0,
        };
    }
    if is_one_of(name, TWO_KEYS) {
        return Keys::Every {
            first: 1,
            step: 1,
            skip_last: cmd.len().saturating_sub(3),
        };
    }
    if eq(name, "MSET") || eq(name, "MSETNX") {
        return Keys::Every {
            first: 1,
            step: 2,
            skip_last: 0,
        };
    }
    if eq(name, "BLPOP") || eq(name, "BRPOP") || eq(name, "BZPOPMIN") || eq(name, "BZPOPMAX") {
        // The last argument is the timeout.
        return Keys::Every {
            first: 1,
            step: 1,
            skip_last: 1,
        };
    }
    if is_one_of(
        name,
        &[
            "EVAL",
            "EVALSHA",
            "EVAL_RO",
            "EVALSHA_RO",
            "FCALL",
            "FCALL_RO",
        ],
    ) {
        return Keys::NumKeysAt2;
    }
    if eq(name, "XREAD") || eq(name, "XREADGROUP") {
        return Keys::Streams;
    }
    if is_one_of(name, &["OBJECT", "XINFO"]) {
        // Subcommand first, then the key (`OBJECT ENCODING key`, `XINFO STREAM key`);
        // `OBJECT HELP` has none.
        return if cmd.len() > 2 {
            Keys::At(2)
        } else {
            Keys::None
        };
    }
    if cmd.len() > 1 {
        Keys::At(1)
    } else {
        Keys::None
    }
}

/// The keys of a command, in argument order.
///
/// ```
/// use redis_cluster_uring::{cmd, route::command_keys};
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
        Keys::NumKeysAt2 => {
            let n = cmd
                .arg_at(2)
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            (3..(3 + n).min(args))
                .filter_map(|i| cmd.arg_at(i))
                .collect()
        }
        Keys::Streams => {
            let Some(at) = (1..args).find(|&i| cmd.arg_at(i).is_some_and(|a| eq(a, "STREAMS")))
            else {
                return Vec::new();
            };
            let rest = args - at - 1;
            (at + 1..at + 1 + rest / 2)
                .filter_map(|i| cmd.arg_at(i))
                .collect()
        }
    }
}

/// True when the command can name several keys (and so may need splitting by slot).
pub fn is_multi_key(cmd: &Cmd) -> bool {
    !matches!(key_positions(cmd), Keys::None | Keys::At(_))
}

/// Routes one command: the slot of its keys, `AnyNode` when it has none, or a `CrossSlot`
/// error when its keys live in different slots.
///
/// ```
/// use redis_cluster_uring::{cmd, route::{route_command, Route}, slot_for_key, ErrorKind};
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
    use crate::cmd::cmd;

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
