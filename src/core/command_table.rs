//! The command table: which path each command takes, decided once, in one place.
//!
//! The shared connection to a node is multiplexed: many callers' commands are written to
//! it back to back, and the n-th reply belongs to the n-th command. That holds only for
//! commands that produce exactly one reply, promptly, and leave the connection as they
//! found it. This table sorts every command into one [`CommandClass`], in the spirit of
//! the server's own `COMMAND INFO` flags (`blocking`, `pubsub`, `no-multi`, ...) and tips
//! (`request_policy:all_shards`, `response_policy:agg_sum`, ...):
//!
//! | class | examples | path |
//! |---|---|---|
//! | [`Regular`](CommandClass::Regular) | `GET`, `SET`, `ECHO`, `PUBLISH` | the shared connection of the key's node |
//! | [`Empty`](CommandClass::Empty) | a command without a name | refused before anything is sent |
//! | [`ConnectionState`](CommandClass::ConnectionState) | `MULTI`, `SUBSCRIBE`, `CLIENT REPLY`, `SELECT` | refused: it would change the connection under every other caller |
//! | [`Blocking`](CommandClass::Blocking) | `BLPOP`, `XREAD ... BLOCK` | a dedicated connection, not shared while it blocks |
//! | [`MultiNode`](CommandClass::MultiNode) | `DBSIZE`, `FLUSHALL`, `KEYS`, `SCAN`, `WAIT` | one copy per node, replies merged by policy ([`crate::core::fanout`]); `SCAN` and `WAIT` only on a named node |
//! | [`NodeSpecific`](CommandClass::NodeSpecific) | `CLUSTER FAILOVER`, `SHUTDOWN`, `DEBUG` | refused unless sent to a named node |
//!
//! A command the table does not know (module commands, newer server commands) is
//! [`Regular`](CommandClass::Regular): that is right for the great majority, and the
//! classes that would break the connection are the ones listed here.

use std::time::Duration;

use crate::core::cmd::Cmd;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::route::{stream_options, upper_name};

/// How a multi-node command is fanned out (the server's `request_policy` tip).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestPolicy {
    /// Every primary (`all_shards`).
    AllShards,
    /// Every node, replicas included (`all_nodes`).
    AllNodes,
}

/// How the replies of a multi-node command are merged (the server's `response_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponsePolicy {
    /// Integer sum (`DBSIZE`).
    Sum,
    /// Success only when every node succeeded (`FLUSHALL`, `CONFIG SET`).
    AllSucceeded,
    /// Success when any node succeeded (`SCRIPT KILL`).
    OneSucceeded,
    /// Element-wise logical AND of arrays (`SCRIPT EXISTS`).
    LogicalAnd,
    /// The smallest integer (`WAIT`).
    Min,
    /// Arrays concatenated (`KEYS`).
    Concat,
    /// Command-specific (`SCAN`, `RANDOMKEY`, `INFO`).
    Special,
}

/// The path a command takes. Every command is in exactly one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandClass {
    /// One prompt reply, no connection state: the shared connection.
    Regular,
    /// No arguments at all. Redis sends no reply to `*0\r\n`, so on a shared connection
    /// every later reply would shift by one.
    Empty,
    /// Changes the connection's state or its reply stream (transactions, pub/sub, reply
    /// modes, authentication, database selection). `api` says what to use instead.
    ConnectionState {
        /// The API that does this properly, or why there is none yet.
        api: &'static str,
    },
    /// Blocks until data arrives or its timeout passes: a dedicated connection.
    Blocking,
    /// Meant for several nodes, with a merge of their replies.
    MultiNode {
        /// Which nodes.
        request: RequestPolicy,
        /// How the replies combine.
        response: ResponsePolicy,
    },
    /// Acts on the node it is sent to (administration, replication, debugging): only
    /// meaningful with a node named by the caller.
    NodeSpecific,
}

impl CommandClass {
    /// True for classes the shared connection may carry when the caller names the node
    /// ([`Client::query_node`](crate::Client::query_node)).
    pub fn allowed_on_named_node(self) -> bool {
        matches!(
            self,
            CommandClass::Regular | CommandClass::MultiNode { .. } | CommandClass::NodeSpecific
        )
    }
}

const TRANSACTIONS: &str = "use Pipeline::atomic for MULTI/EXEC (written in one piece on the slot's connection) and Client::transaction for WATCH (a connection of its own)";
const PUBSUB: &str = "pub/sub needs connections of its own: use Client::subscriber (and PUBLISH/SPUBLISH on the client)";
const HANDSHAKE: &str =
    "authentication and protocol settings belong to the connection handshake (Config), not to a command";
const NO_SELECT: &str = "Redis Cluster has only database 0";
const REPLY_MODE: &str =
    "it would silence replies that other callers of the shared connection wait for";
const ROUTING: &str = "the client sends ASKING, READONLY and READWRITE itself when it routes";
const CONNECTION: &str = "it would change or end the connection shared by every caller";

fn is(arg: Option<&[u8]>, word: &[u8]) -> bool {
    arg.is_some_and(|a| a.eq_ignore_ascii_case(word))
}

fn multi(request: RequestPolicy, response: ResponsePolicy) -> CommandClass {
    CommandClass::MultiNode { request, response }
}

/// The class of a command: the one decision every path of the client follows.
///
/// ```
/// use redis_cluster_uring::{cmd, Cmd};
/// use redis_cluster_uring::core::command_table::{command_class, CommandClass, ResponsePolicy};
/// assert_eq!(command_class(&cmd("GET").arg("k")), CommandClass::Regular);
/// assert_eq!(command_class(&Cmd::new()), CommandClass::Empty);
/// assert!(matches!(command_class(&cmd("MULTI")), CommandClass::ConnectionState { .. }));
/// assert_eq!(command_class(&cmd("BLPOP").arg("q").arg(0)), CommandClass::Blocking);
/// assert!(matches!(
///     command_class(&cmd("DBSIZE")),
///     CommandClass::MultiNode { response: ResponsePolicy::Sum, .. }
/// ));
/// ```
pub fn command_class(cmd: &Cmd) -> CommandClass {
    use CommandClass::*;
    use RequestPolicy::*;
    use ResponsePolicy::*;
    if cmd.is_empty() {
        return Empty;
    }
    let Some((buf, len)) = upper_name(cmd.name()) else {
        return Regular;
    };
    let sub = cmd.arg_at(1);
    match &buf[..len] {
        // Most traffic: decided by the first comparison.
        b"GET" | b"SET" | b"MGET" | b"MSET" | b"DEL" | b"INCR" | b"INCRBY" | b"HGET" | b"HSET"
        | b"EXPIRE" | b"EXISTS" => Regular,

        b"MULTI" | b"EXEC" | b"DISCARD" | b"WATCH" | b"UNWATCH" => {
            ConnectionState { api: TRANSACTIONS }
        }
        b"SUBSCRIBE" | b"UNSUBSCRIBE" | b"PSUBSCRIBE" | b"PUNSUBSCRIBE" | b"SSUBSCRIBE"
        | b"SUNSUBSCRIBE" => ConnectionState { api: PUBSUB },
        b"HELLO" | b"AUTH" => ConnectionState { api: HANDSHAKE },
        b"SELECT" | b"SWAPDB" => ConnectionState { api: NO_SELECT },
        b"ASKING" | b"READONLY" | b"READWRITE" => ConnectionState { api: ROUTING },
        b"RESET" | b"QUIT" | b"MONITOR" | b"SYNC" | b"PSYNC" | b"REPLCONF" => {
            ConnectionState { api: CONNECTION }
        }
        b"CLIENT" => {
            if is(sub, b"REPLY") {
                ConnectionState { api: REPLY_MODE }
            } else if is(sub, b"TRACKING") || is(sub, b"CACHING") {
                ConnectionState {
                    api: "client-side caching is not supported yet (invalidations need the push handler of a later version)",
                }
            } else if is(sub, b"SETNAME") || is(sub, b"SETINFO") {
                ConnectionState { api: HANDSHAKE }
            } else if is(sub, b"NO-EVICT") || is(sub, b"NO-TOUCH") {
                ConnectionState { api: CONNECTION }
            } else if is(sub, b"PAUSE") || is(sub, b"UNPAUSE") || is(sub, b"KILL") {
                NodeSpecific
            } else {
                Regular
            }
        }

        b"BLPOP" | b"BRPOP" | b"BLMOVE" | b"BLMPOP" | b"BZPOPMIN" | b"BZPOPMAX" | b"BZMPOP"
        | b"BRPOPLPUSH" => Blocking,
        b"XREAD" | b"XREADGROUP" => {
            if stream_block_ms(cmd).is_some() {
                Blocking
            } else {
                Regular
            }
        }

        b"DBSIZE" => multi(AllShards, Sum),
        b"FLUSHALL" | b"FLUSHDB" => multi(AllShards, AllSucceeded),
        b"KEYS" => multi(AllShards, Concat),
        b"SCAN" | b"RANDOMKEY" | b"INFO" => multi(AllShards, Special),
        b"PING" => multi(AllShards, AllSucceeded),
        b"WAIT" | b"WAITAOF" => multi(AllShards, Min),
        b"SCRIPT" => {
            if is(sub, b"DEBUG") {
                // The next EVAL on the connection would start a debugging session.
                ConnectionState { api: CONNECTION }
            } else if is(sub, b"EXISTS") {
                multi(AllShards, LogicalAnd)
            } else if is(sub, b"KILL") {
                multi(AllShards, OneSucceeded)
            } else if is(sub, b"LOAD") || is(sub, b"FLUSH") {
                multi(AllNodes, AllSucceeded)
            } else {
                Regular
            }
        }
        b"FUNCTION" => {
            if is(sub, b"LOAD") || is(sub, b"DELETE") || is(sub, b"FLUSH") || is(sub, b"RESTORE") {
                multi(AllShards, AllSucceeded)
            } else if is(sub, b"KILL") {
                multi(AllShards, OneSucceeded)
            } else if is(sub, b"STATS") {
                multi(AllShards, Special)
            } else {
                Regular
            }
        }
        b"CONFIG" => {
            if is(sub, b"SET") || is(sub, b"RESETSTAT") || is(sub, b"REWRITE") {
                multi(AllNodes, AllSucceeded)
            } else {
                NodeSpecific
            }
        }
        b"MEMORY" => {
            if is(sub, b"USAGE") || is(sub, b"HELP") {
                Regular
            } else {
                multi(AllShards, Special)
            }
        }
        b"LATENCY" | b"SLOWLOG" => multi(AllNodes, Special),
        b"PUBSUB" => {
            if is(sub, b"SHARDCHANNELS") || is(sub, b"SHARDNUMSUB") {
                multi(AllShards, Special)
            } else {
                Regular
            }
        }

        b"SHUTDOWN" | b"FAILOVER" | b"REPLICAOF" | b"SLAVEOF" | b"DEBUG" | b"SAVE" | b"BGSAVE"
        | b"BGREWRITEAOF" | b"MODULE" | b"LASTSAVE" | b"ROLE" => NodeSpecific,
        b"CLUSTER" => {
            // Questions any node answers the same way go anywhere; everything that acts
            // on (or describes) one particular node needs that node named.
            let anywhere = [
                &b"SLOTS"[..],
                b"SHARDS",
                b"NODES",
                b"INFO",
                b"KEYSLOT",
                b"HELP",
            ];
            if sub.is_some_and(|s| anywhere.iter().any(|w| s.eq_ignore_ascii_case(w))) {
                Regular
            } else {
                NodeSpecific
            }
        }
        _ => Regular,
    }
}

/// True for commands that only read (the server's `readonly` flag): with replica reads
/// configured they may go to a replica. Anything not listed is treated as a write and
/// goes to the primary, which is always safe.
///
/// ```
/// use redis_cluster_uring::cmd;
/// use redis_cluster_uring::core::command_table::is_read_only;
/// assert!(is_read_only(&cmd("get").arg("k")));
/// assert!(is_read_only(&cmd("HGETALL").arg("h")));
/// assert!(!is_read_only(&cmd("SET").arg("k").arg(1)));
/// assert!(!is_read_only(&cmd("EVAL").arg("return 1").arg(0)));
/// ```
pub fn is_read_only(cmd: &Cmd) -> bool {
    let Some((buf, len)) = upper_name(cmd.name()) else {
        return false;
    };
    matches!(
        &buf[..len],
        b"GET"
            | b"MGET"
            | b"STRLEN"
            | b"GETRANGE"
            | b"SUBSTR"
            | b"LCS"
            | b"EXISTS"
            | b"TTL"
            | b"PTTL"
            | b"EXPIRETIME"
            | b"PEXPIRETIME"
            | b"TYPE"
            | b"TOUCH"
            | b"DUMP"
            | b"GETBIT"
            | b"BITCOUNT"
            | b"BITPOS"
            | b"BITFIELD_RO"
            | b"HGET"
            | b"HMGET"
            | b"HGETALL"
            | b"HKEYS"
            | b"HVALS"
            | b"HLEN"
            | b"HEXISTS"
            | b"HSTRLEN"
            | b"HRANDFIELD"
            | b"HSCAN"
            | b"LRANGE"
            | b"LLEN"
            | b"LINDEX"
            | b"LPOS"
            | b"SMEMBERS"
            | b"SISMEMBER"
            | b"SMISMEMBER"
            | b"SCARD"
            | b"SRANDMEMBER"
            | b"SINTER"
            | b"SUNION"
            | b"SDIFF"
            | b"SINTERCARD"
            | b"SSCAN"
            | b"ZRANGE"
            | b"ZRANGEBYSCORE"
            | b"ZRANGEBYLEX"
            | b"ZREVRANGE"
            | b"ZREVRANGEBYSCORE"
            | b"ZREVRANGEBYLEX"
            | b"ZSCORE"
            | b"ZMSCORE"
            | b"ZCARD"
            | b"ZCOUNT"
            | b"ZLEXCOUNT"
            | b"ZRANK"
            | b"ZREVRANK"
            | b"ZSCAN"
            | b"ZRANDMEMBER"
            | b"ZINTER"
            | b"ZUNION"
            | b"ZDIFF"
            | b"ZINTERCARD"
            | b"XRANGE"
            | b"XREVRANGE"
            | b"XLEN"
            | b"XPENDING"
            | b"PFCOUNT"
            | b"GEOPOS"
            | b"GEODIST"
            | b"GEOHASH"
            | b"GEOSEARCH"
            | b"GEORADIUS_RO"
            | b"GEORADIUSBYMEMBER_RO"
            | b"SORT_RO"
            | b"EVAL_RO"
            | b"EVALSHA_RO"
            | b"FCALL_RO"
    ) || (&buf[..len] == b"XREAD" && stream_block_ms(cmd).is_none())
        || (&buf[..len] == b"XINFO" && cmd.len() > 2)
        || (&buf[..len] == b"OBJECT" && cmd.len() > 2)
        || (&buf[..len] == b"MEMORY" && is(cmd.arg_at(1), b"USAGE"))
}

/// The error for a command the shared path refuses, naming what to do instead; `None`
/// for [`CommandClass::Regular`].
///
/// `in_pipeline` changes the advice for blocking commands (they run alone).
pub fn refusal(cmd: &Cmd, class: CommandClass, in_pipeline: bool) -> Option<Error> {
    let name = || String::from_utf8_lossy(cmd.name()).to_ascii_uppercase();
    let unsupported = |detail: String| Some(Error::new(ErrorKind::Unsupported, detail));
    match class {
        CommandClass::Regular => None,
        CommandClass::Empty => Some(Error::new(
            ErrorKind::InvalidCommand,
            "empty command: a command needs at least its name",
        )),
        CommandClass::ConnectionState { api } => unsupported(format!(
            "{} is refused on the shared connection: {api}",
            name()
        )),
        CommandClass::Blocking if in_pipeline => unsupported(format!(
            "{} blocks and cannot be pipelined: run it alone with Client::query, which gives it a dedicated connection",
            name()
        )),
        CommandClass::Blocking => None,
        // Sent to every node and merged (`fanout`), which refuses the few it cannot
        // merge (SCAN, WAIT).
        CommandClass::MultiNode { .. } => None,
        CommandClass::NodeSpecific => unsupported(format!(
            "{} acts on one particular node: name it with Client::query_node",
            name()
        )),
    }
}

/// How long a blocking command may block on the server: `Ok(None)` for ever (timeout 0),
/// `Ok(Some(d))` otherwise. A timeout the server would reject is a typed error here, so
/// the client-side deadline is never guessed.
///
/// ```
/// use std::time::Duration;
/// use redis_cluster_uring::cmd;
/// use redis_cluster_uring::core::command_table::blocking_timeout;
/// assert_eq!(blocking_timeout(&cmd("BLPOP").arg("q").arg(0)).unwrap(), None);
/// assert_eq!(
///     blocking_timeout(&cmd("BLPOP").arg("q").arg("1.5")).unwrap(),
///     Some(Duration::from_millis(1500))
/// );
/// assert_eq!(
///     blocking_timeout(&cmd("XREAD").arg("BLOCK").arg(250).arg("STREAMS").arg("s").arg("$")).unwrap(),
///     Some(Duration::from_millis(250))
/// );
/// ```
pub fn blocking_timeout(cmd: &Cmd) -> Result<Option<Duration>> {
    let name = cmd.name().to_ascii_uppercase();
    let (arg, millis) = match name.as_slice() {
        b"BLPOP" | b"BRPOP" | b"BZPOPMIN" | b"BZPOPMAX" | b"BLMOVE" | b"BRPOPLPUSH" => {
            (cmd.len().checked_sub(1).and_then(|i| cmd.arg_at(i)), false)
        }
        b"BLMPOP" | b"BZMPOP" => (cmd.arg_at(1), false),
        b"WAIT" => (cmd.arg_at(2), true),
        b"WAITAOF" => (cmd.arg_at(3), true),
        b"XREAD" | b"XREADGROUP" => match stream_block_ms(cmd) {
            Some(ms) => (Some(ms), true),
            None => return Ok(Some(Duration::ZERO)),
        },
        _ => return Ok(Some(Duration::ZERO)),
    };
    let bad = || {
        Error::new(
            ErrorKind::InvalidCommand,
            format!(
                "{}: the timeout is not a non-negative number",
                String::from_utf8_lossy(&name)
            ),
        )
    };
    let text = arg
        .and_then(|a| std::str::from_utf8(a).ok())
        .ok_or_else(bad)?;
    let seconds = if millis {
        text.parse::<u64>().map_err(|_| bad())? as f64 / 1000.0
    } else {
        text.parse::<f64>().map_err(|_| bad())?
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(bad());
    }
    if seconds == 0.0 {
        return Ok(None);
    }
    // Beyond what a Duration holds is, for a client, the same as for ever.
    Ok(Duration::try_from_secs_f64(seconds).ok())
}

/// How long a request may take when its command blocks: the command's own timeout plus
/// `request_timeout`; `None` (no deadline) when it blocks for ever or there is no
/// request timeout. A regular command blocks for zero, so this is `request_timeout`.
pub(crate) fn deadline_budget(
    cmd: &Cmd,
    request_timeout: Option<Duration>,
) -> Result<Option<Duration>> {
    Ok(match (blocking_timeout(cmd)?, request_timeout) {
        (Some(blocks), Some(t)) => Some(blocks.saturating_add(t)),
        _ => None,
    })
}

/// How a command sent to a node the caller named runs (both clients' `query_node`).
#[derive(Debug)]
pub(crate) enum NamedNode {
    /// On a connection of its own (a blocking command), within this much.
    Dedicated(Option<Duration>),
    /// On the node's shared connection, within this much (`WAIT`/`WAITAOF` add their
    /// own timeout to `request_timeout`).
    Shared(Option<Duration>),
    /// Refused before anything is sent.
    Refused(Error),
}

/// The path of `cmd` sent to a named node: blocking commands get a connection of their
/// own; commands that would break the shared connection are refused; `WAIT` and `WAITAOF`
/// stall the node's shared connection for the timeout they give, so a timeout of 0 (for
/// ever) is refused. An unparsable timeout is an error of kind `InvalidCommand`.
pub(crate) fn named_node_path(cmd: &Cmd, request_timeout: Option<Duration>) -> Result<NamedNode> {
    let class = command_class(cmd);
    Ok(match class {
        CommandClass::Blocking => NamedNode::Dedicated(deadline_budget(cmd, request_timeout)?),
        _ if !class.allowed_on_named_node() => NamedNode::Refused(
            refusal(cmd, class, false)
                .unwrap_or_else(|| Error::new(ErrorKind::Unsupported, "refused on a named node")),
        ),
        _ => match blocking_timeout(cmd)? {
            None => NamedNode::Refused(Error::new(
                ErrorKind::Unsupported,
                "WAIT/WAITAOF with timeout 0 would stall every other request to the node for ever: give a timeout",
            )),
            Some(blocks) => NamedNode::Shared(request_timeout.map(|t| t.saturating_add(blocks))),
        },
    })
}

/// The `BLOCK` argument of `XREAD` / `XREADGROUP`, if any.
fn stream_block_ms(cmd: &Cmd) -> Option<&[u8]> {
    stream_options(cmd).block
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cmd::cmd;

    fn class(args: &[&str]) -> CommandClass {
        let mut c = Cmd::new();
        for a in args {
            c.push_arg(*a);
        }
        command_class(&c)
    }

    #[test]
    fn regular_commands_keep_the_shared_path() {
        for args in [
            &["GET", "k"][..],
            &["set", "k", "v"],
            &["ECHO", "x"],
            &["PUBLISH", "ch", "m"],
            &["SPUBLISH", "ch", "m"],
            &["XREAD", "COUNT", "2", "STREAMS", "s", "0"],
            &["CLUSTER", "SLOTS"],
            &["client", "id"],
            &["SCRIPT", "HELP"],
            &["MEMORY", "USAGE", "k"],
            &["SOME.MODULE.CMD", "k"],
            &["AVERYLONGMODULECOMMANDNAMEOVER24BYTES"],
            &["EVAL", "return 1", "0"],
        ] {
            assert_eq!(class(args), CommandClass::Regular, "{args:?}");
            assert!(refusal(&cmd(args[0]), CommandClass::Regular, true).is_none());
        }
    }

    #[test]
    fn empty_is_refused_as_invalid() {
        let c = Cmd::new();
        assert_eq!(command_class(&c), CommandClass::Empty);
        let e = refusal(&c, CommandClass::Empty, false).unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidCommand);
    }

    #[test]
    fn connection_state_is_refused_with_the_reason() {
        for (args, says) in [
            (&["MULTI"][..], "Pipeline::atomic"),
            (&["exec"], "Pipeline::atomic"),
            (&["DISCARD"], "Pipeline::atomic"),
            (&["WATCH", "k"], "Pipeline::atomic"),
            (&["UNWATCH"], "Pipeline::atomic"),
            (&["SUBSCRIBE", "a", "b"], "pub/sub"),
            (&["PSUBSCRIBE", "a*"], "pub/sub"),
            (&["SSUBSCRIBE", "a"], "pub/sub"),
            (&["UNSUBSCRIBE"], "pub/sub"),
            (&["PUNSUBSCRIBE"], "pub/sub"),
            (&["SUNSUBSCRIBE"], "pub/sub"),
            (&["MONITOR"], "shared"),
            (&["CLIENT", "REPLY", "OFF"], "silence"),
            (&["client", "reply", "skip"], "silence"),
            (&["CLIENT", "TRACKING", "ON"], "caching"),
            (&["HELLO", "3"], "handshake"),
            (&["AUTH", "pw"], "handshake"),
            (&["CLIENT", "SETNAME", "x"], "handshake"),
            (&["SELECT", "1"], "database 0"),
            (&["RESET"], "shared"),
            (&["QUIT"], "shared"),
            (&["READONLY"], "routes"),
            (&["READWRITE"], "routes"),
            (&["ASKING"], "routes"),
            (&["SCRIPT", "DEBUG", "SYNC"], "shared"),
        ] {
            let c = class(args);
            assert!(
                matches!(c, CommandClass::ConnectionState { .. }),
                "{args:?}: {c:?}"
            );
            assert!(!c.allowed_on_named_node());
            let e = refusal(&cmd(args[0]), c, false).unwrap();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            assert!(e.detail().contains(says), "{args:?}: {}", e.detail());
        }
    }

    #[test]
    fn blocking_commands_get_a_dedicated_connection() {
        for args in [
            &["BLPOP", "a", "0"][..],
            &["BRPOP", "a", "b", "1"],
            &["BLMOVE", "a", "b", "LEFT", "RIGHT", "0"],
            &["BLMPOP", "0", "1", "a", "LEFT"],
            &["BZPOPMIN", "z", "0"],
            &["BZPOPMAX", "z", "0"],
            &["BZMPOP", "0", "1", "z", "MIN"],
            &["BRPOPLPUSH", "a", "b", "0"],
            &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "BLOCK",
                "10",
                "STREAMS",
                "s",
                ">",
            ],
        ] {
            let c = class(args);
            assert_eq!(c, CommandClass::Blocking, "{args:?}");
            assert!(!c.allowed_on_named_node());
            assert!(refusal(&cmd(args[0]), c, false).is_none());
            let e = refusal(&cmd(args[0]), c, true).unwrap();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            assert!(e.detail().contains("Client::query"));
        }
    }

    #[test]
    fn multi_node_commands_carry_their_policies() {
        for (args, response) in [
            (&["DBSIZE"][..], ResponsePolicy::Sum),
            (&["FLUSHALL"], ResponsePolicy::AllSucceeded),
            (&["FLUSHDB", "ASYNC"], ResponsePolicy::AllSucceeded),
            (&["KEYS", "*"], ResponsePolicy::Concat),
            (&["SCAN", "0"], ResponsePolicy::Special),
            (&["RANDOMKEY"], ResponsePolicy::Special),
            (&["PING"], ResponsePolicy::AllSucceeded),
            (
                &["SCRIPT", "LOAD", "return 1"],
                ResponsePolicy::AllSucceeded,
            ),
            (&["script", "flush"], ResponsePolicy::AllSucceeded),
            (&["SCRIPT", "EXISTS", "abc"], ResponsePolicy::LogicalAnd),
            (&["FUNCTION", "LOAD", "x"], ResponsePolicy::AllSucceeded),
            (&["FUNCTION", "DELETE", "x"], ResponsePolicy::AllSucceeded),
            (&["FUNCTION", "FLUSH"], ResponsePolicy::AllSucceeded),
            (&["CONFIG", "SET", "a", "b"], ResponsePolicy::AllSucceeded),
            (&["WAIT", "1", "100"], ResponsePolicy::Min),
            (&["WAITAOF", "1", "0", "100"], ResponsePolicy::Min),
        ] {
            let c = class(args);
            assert!(
                matches!(c, CommandClass::MultiNode { response: r, .. } if r == response),
                "{args:?}: {c:?}"
            );
            assert!(c.allowed_on_named_node());
            // Not refused: fanned out to every node and merged (see `fanout`).
            assert!(refusal(&cmd(args[0]), c, true).is_none());
        }
    }

    #[test]
    fn node_specific_commands_need_a_named_node() {
        for args in [
            &["CLUSTER", "FAILOVER"][..],
            &["CLUSTER", "MYID"],
            &["CONFIG", "GET", "x"],
            &["DEBUG", "SLEEP", "1"],
            &["SHUTDOWN"],
            &["ROLE"],
        ] {
            let c = class(args);
            assert_eq!(c, CommandClass::NodeSpecific, "{args:?}");
            assert!(c.allowed_on_named_node());
            assert!(refusal(&cmd(args[0]), c, false)
                .unwrap()
                .detail()
                .contains("query_node"));
        }
    }

    #[test]
    fn blocking_timeouts() {
        let t = |args: &[&str]| {
            let mut c = Cmd::new();
            for a in args {
                c.push_arg(*a);
            }
            blocking_timeout(&c)
        };
        let ms = Duration::from_millis;
        assert_eq!(t(&["BLPOP", "a", "b", "0"]).unwrap(), None);
        assert_eq!(t(&["BRPOP", "a", "0.25"]).unwrap(), Some(ms(250)));
        assert_eq!(
            t(&["BLMPOP", "2", "1", "a", "LEFT"]).unwrap(),
            Some(ms(2000))
        );
        assert_eq!(t(&["BZMPOP", "0", "1", "z", "MIN"]).unwrap(), None);
        assert_eq!(
            t(&["BLMOVE", "a", "b", "LEFT", "RIGHT", "3"]).unwrap(),
            Some(ms(3000))
        );
        assert_eq!(t(&["WAIT", "1", "150"]).unwrap(), Some(ms(150)));
        assert_eq!(t(&["WAITAOF", "1", "1", "0"]).unwrap(), None);
        assert_eq!(
            t(&[
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "BLOCK",
                "20",
                "STREAMS",
                "s",
                ">"
            ])
            .unwrap(),
            Some(ms(20))
        );
        // Not blocking at all.
        assert_eq!(t(&["GET", "a"]).unwrap(), Some(Duration::ZERO));
        // A stream key named BLOCK after STREAMS is a key, not the option; so is a group
        // named BLOCK.
        assert_eq!(
            t(&["XREAD", "STREAMS", "BLOCK", "0"]).unwrap(),
            Some(Duration::ZERO)
        );
        assert_eq!(
            t(&["XREADGROUP", "GROUP", "BLOCK", "c", "STREAMS", "s", ">"]).unwrap(),
            Some(Duration::ZERO)
        );
        // Huge is "for ever", not a panic.
        assert_eq!(t(&["BLPOP", "a", "1e300"]).unwrap(), None);
        for bad in [
            &["BLPOP", "a"][..],
            &["BLPOP", "a", "-1"],
            &["BLPOP", "a", "nan"],
            &["BLPOP", "a", "inf"],
            &["WAIT", "1", "1.5"],
            &["BLPOP", "a", "soon"],
        ] {
            assert_eq!(
                t(bad).unwrap_err().kind(),
                ErrorKind::InvalidCommand,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn named_node_paths() {
        let t = Some(Duration::from_secs(1));
        let secs = Duration::from_secs;
        let path = |c: Cmd, t| named_node_path(&c, t).unwrap();
        let dedicated = |p| match p {
            NamedNode::Dedicated(d) => d,
            other => panic!("{other:?}"),
        };
        let shared = |p| match p {
            NamedNode::Shared(d) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            dedicated(path(cmd("BLPOP").arg("q").arg(2), t)),
            Some(secs(3))
        );
        assert_eq!(
            dedicated(path(cmd("BLPOP").arg("q").arg(0), t)),
            None,
            "for ever"
        );
        assert_eq!(dedicated(path(cmd("BLPOP").arg("q").arg(2), None)), None);
        assert_eq!(shared(path(cmd("DBSIZE"), t)), t);
        assert_eq!(shared(path(cmd("GET").arg("k"), None)), None);
        assert_eq!(
            shared(path(cmd("WAIT").arg(1).arg(500), t)),
            Some(Duration::from_millis(1500))
        );
        for refused in [
            cmd("WAIT").arg(1).arg(0),
            cmd("MULTI"),
            cmd("SUBSCRIBE").arg("c"),
        ] {
            match named_node_path(&refused, t).unwrap() {
                NamedNode::Refused(e) => assert_eq!(e.kind(), ErrorKind::Unsupported),
                other => panic!("{other:?}"),
            }
        }
        let e = named_node_path(&cmd("WAIT").arg(1).arg("soon"), t).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidCommand);
        assert_eq!(deadline_budget(&cmd("GET").arg("k"), t).unwrap(), t);
        assert_eq!(
            deadline_budget(&cmd("BRPOP").arg("k").arg(0), t).unwrap(),
            None
        );
    }
}
