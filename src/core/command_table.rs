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
const NO_SELECT: &str = "the database belongs to the connection handshake: use Config::database (every connection selects it; Redis Cluster has only database 0)";
const REPLY_MODE: &str =
    "it would silence replies that other callers of the shared connection wait for";
const ROUTING: &str = "the client sends ASKING, READONLY and READWRITE itself when it routes";
const CONNECTION: &str = "it would change or end the connection shared by every caller";

fn is(arg: Option<&[u8]>, word: &[u8]) -> bool {
    arg.is_some_and(|a| a.eq_ignore_ascii_case(word))
}

const fn multi(request: RequestPolicy, response: ResponsePolicy) -> CommandClass {
    CommandClass::MultiNode { request, response }
}

const fn state(api: &'static str) -> CommandClass {
    CommandClass::ConnectionState { api }
}

/// The table's entry for a command name, compared case-insensitively: looked up as it
/// is when it has no lower-case letter (the usual `GET`), otherwise upper-cased into a
/// stack buffer first (names are short; a longer one is no command this table knows).
fn lookup_name(name: &[u8]) -> Entry {
    if name.len() > 24 {
        return UNKNOWN;
    }
    if !name.iter().any(u8::is_ascii_lowercase) {
        return lookup(name);
    }
    let mut buf = [0u8; 24];
    let upper = &mut buf[..name.len()];
    upper.copy_from_slice(name);
    upper.make_ascii_uppercase();
    lookup(upper)
}

/// Where a command's keys are (the server's key specs, for the commands that matter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
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

impl Keys {
    /// Whether these positions can name several keys.
    pub(crate) fn is_multi_key(self) -> bool {
        !matches!(self, Keys::None | Keys::At(_))
    }
}

/// A command's class as its name gives it, or the subcommand (or option) that decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClassRule {
    Is(CommandClass),
    Client,
    Script,
    Function,
    Config,
    Memory,
    Pubsub,
    Cluster,
    /// `XREAD`/`XREADGROUP`: blocking with a `BLOCK` option, regular otherwise.
    Streams,
}

/// Where a command's keys are as its name gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyRule {
    /// At index 1 when there is an argument (the great majority, and every command the
    /// table does not know).
    FirstArg,
    NoKeys,
    /// Every argument after the name.
    EveryArg,
    /// Keys and values alternating (`MSET`).
    Pairs,
    /// Every argument but the last, a timeout (`BLPOP`).
    AllButTimeout,
    /// Source and destination at 1 and 2, options after (`LMOVE`, `RENAME`).
    SourceAndDestination,
    NumKeysAt(usize),
    DestThenCounted,
    Streams,
    /// A subcommand, then the key (`OBJECT ENCODING key`, `XINFO STREAM key`); none
    /// without it (`OBJECT HELP`).
    SubcommandThenKey,
    /// `MEMORY USAGE key` is the one keyed `MEMORY` subcommand.
    MemoryUsage,
}

/// Whether a command only reads (the server's `readonly` flag), as its name gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadRule {
    Writes,
    Reads,
    /// `XREAD` without `BLOCK`.
    UnlessBlocking,
    /// With a key after the subcommand (`XINFO STREAM key`, `OBJECT ENCODING key`).
    WithKey,
    /// `MEMORY USAGE`.
    MemoryUsage,
}

/// What the table says of a command name before its arguments are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    class: ClassRule,
    keys: KeyRule,
    reads: ReadRule,
}

const fn entry(class: ClassRule, keys: KeyRule, reads: ReadRule) -> Entry {
    Entry { class, keys, reads }
}

const REGULAR: ClassRule = ClassRule::Is(CommandClass::Regular);

/// A name the table does not know (module commands, newer server commands): regular,
/// its key first, a write (the primary is always safe).
const UNKNOWN: Entry = entry(REGULAR, KeyRule::FirstArg, ReadRule::Writes);

/// The table: every facet of a command name in one `match` over the upper-cased name,
/// which the compiler turns into a few length and byte comparisons rather than a scan,
/// so a command is looked up once, whatever the client needs to know of it.
fn lookup(name: &[u8]) -> Entry {
    use ClassRule::*;
    use CommandClass::{Blocking, NodeSpecific};
    use KeyRule::*;
    use ReadRule::*;
    use RequestPolicy::*;
    use ResponsePolicy::*;
    match name {
        // Reads of one key.
        b"GET"
        | b"STRLEN"
        | b"GETRANGE"
        | b"SUBSTR"
        | b"LCS"
        | b"TTL"
        | b"PTTL"
        | b"EXPIRETIME"
        | b"PEXPIRETIME"
        | b"TYPE"
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
        | b"XRANGE"
        | b"XREVRANGE"
        | b"XLEN"
        | b"XPENDING"
        | b"GEOPOS"
        | b"GEODIST"
        | b"GEOHASH"
        | b"GEOSEARCH"
        | b"GEORADIUS_RO"
        | b"GEORADIUSBYMEMBER_RO"
        | b"SORT_RO" => entry(REGULAR, FirstArg, Reads),
        // Writes of one key (listed for the reader: an unknown name is the same).
        b"SET" | b"INCR" | b"INCRBY" | b"DECR" | b"DECRBY" | b"HSET" | b"EXPIRE" | b"PEXPIRE"
        | b"LPUSH" | b"RPUSH" | b"LPOP" | b"RPOP" | b"SADD" | b"ZADD" | b"APPEND" | b"GETSET"
        | b"SETEX" => UNKNOWN,
        // Every argument after the name is a key.
        b"MGET" | b"EXISTS" | b"PFCOUNT" | b"SDIFF" | b"SINTER" | b"SUNION" | b"TOUCH" => {
            entry(REGULAR, EveryArg, Reads)
        }
        b"DEL" | b"UNLINK" | b"PFMERGE" | b"SDIFFSTORE" | b"SINTERSTORE" | b"SUNIONSTORE" => {
            entry(REGULAR, EveryArg, Writes)
        }
        b"MSET" | b"MSETNX" => entry(REGULAR, Pairs, Writes),
        b"COPY" | b"LMOVE" | b"RENAME" | b"RENAMENX" | b"RPOPLPUSH" | b"SMOVE" => {
            entry(REGULAR, SourceAndDestination, Writes)
        }
        b"SINTERCARD" | b"ZUNION" | b"ZINTER" | b"ZDIFF" | b"ZINTERCARD" => {
            entry(REGULAR, NumKeysAt(1), Reads)
        }
        b"LMPOP" | b"ZMPOP" => entry(REGULAR, NumKeysAt(1), Writes),
        b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL_RO" => entry(REGULAR, NumKeysAt(2), Reads),
        b"EVAL" | b"EVALSHA" | b"FCALL" => entry(REGULAR, NumKeysAt(2), Writes),
        b"ZUNIONSTORE" | b"ZINTERSTORE" | b"ZDIFFSTORE" => entry(REGULAR, DestThenCounted, Writes),
        b"OBJECT" | b"XINFO" => entry(REGULAR, SubcommandThenKey, WithKey),
        b"ACL" | b"COMMAND" | b"ECHO" | b"LOLWUT" | b"PUBLISH" | b"TIME" => {
            entry(REGULAR, NoKeys, Writes)
        }

        b"XREAD" => entry(ClassRule::Streams, KeyRule::Streams, UnlessBlocking),
        b"XREADGROUP" => entry(ClassRule::Streams, KeyRule::Streams, Writes),
        b"BLPOP" | b"BRPOP" | b"BZPOPMIN" | b"BZPOPMAX" => {
            entry(Is(Blocking), AllButTimeout, Writes)
        }
        b"BLMOVE" | b"BRPOPLPUSH" => entry(Is(Blocking), SourceAndDestination, Writes),
        b"BLMPOP" | b"BZMPOP" => entry(Is(Blocking), NumKeysAt(2), Writes),

        b"MULTI" | b"EXEC" | b"DISCARD" | b"UNWATCH" => {
            entry(Is(state(TRANSACTIONS)), NoKeys, Writes)
        }
        b"WATCH" => entry(Is(state(TRANSACTIONS)), EveryArg, Writes),
        b"SUBSCRIBE" | b"UNSUBSCRIBE" | b"PSUBSCRIBE" | b"PUNSUBSCRIBE" => {
            entry(Is(state(PUBSUB)), NoKeys, Writes)
        }
        // A shard channel is routed like a key.
        b"SSUBSCRIBE" | b"SUNSUBSCRIBE" => entry(Is(state(PUBSUB)), FirstArg, Writes),
        b"HELLO" | b"AUTH" => entry(Is(state(HANDSHAKE)), NoKeys, Writes),
        b"SELECT" | b"SWAPDB" => entry(Is(state(NO_SELECT)), NoKeys, Writes),
        b"ASKING" | b"READONLY" | b"READWRITE" => entry(Is(state(ROUTING)), NoKeys, Writes),
        b"RESET" | b"QUIT" | b"MONITOR" | b"SYNC" => entry(Is(state(CONNECTION)), NoKeys, Writes),
        b"PSYNC" | b"REPLCONF" => entry(Is(state(CONNECTION)), FirstArg, Writes),
        b"CLIENT" => entry(Client, NoKeys, Writes),

        b"DBSIZE" => entry(Is(multi(AllShards, Sum)), NoKeys, Writes),
        b"FLUSHALL" | b"FLUSHDB" | b"PING" => {
            entry(Is(multi(AllShards, AllSucceeded)), NoKeys, Writes)
        }
        b"KEYS" => entry(Is(multi(AllShards, Concat)), NoKeys, Writes),
        b"SCAN" | b"RANDOMKEY" | b"INFO" => entry(Is(multi(AllShards, Special)), NoKeys, Writes),
        b"WAIT" | b"WAITAOF" => entry(Is(multi(AllShards, Min)), NoKeys, Writes),
        b"LATENCY" | b"SLOWLOG" => entry(Is(multi(AllNodes, Special)), NoKeys, Writes),
        b"SCRIPT" => entry(Script, NoKeys, Writes),
        b"FUNCTION" => entry(Function, NoKeys, Writes),
        b"CONFIG" => entry(Config, NoKeys, Writes),
        b"MEMORY" => entry(Memory, KeyRule::MemoryUsage, ReadRule::MemoryUsage),
        b"PUBSUB" => entry(Pubsub, NoKeys, Writes),

        b"SHUTDOWN" | b"FAILOVER" | b"REPLICAOF" | b"SLAVEOF" | b"DEBUG" | b"SAVE" | b"BGSAVE"
        | b"BGREWRITEAOF" | b"MODULE" | b"LASTSAVE" | b"ROLE" => {
            entry(Is(NodeSpecific), NoKeys, Writes)
        }
        b"CLUSTER" => entry(Cluster, NoKeys, Writes),
        _ => UNKNOWN,
    }
}

/// The class of a `CLIENT` command, by its subcommand.
fn client_class(sub: Option<&[u8]>) -> CommandClass {
    if is(sub, b"REPLY") {
        state(REPLY_MODE)
    } else if is(sub, b"TRACKING") || is(sub, b"CACHING") {
        state("client-side caching is not supported yet (invalidations need the push handler of a later version)")
    } else if is(sub, b"SETNAME") || is(sub, b"SETINFO") {
        state(HANDSHAKE)
    } else if is(sub, b"NO-EVICT") || is(sub, b"NO-TOUCH") {
        state(CONNECTION)
    } else if is(sub, b"PAUSE") || is(sub, b"UNPAUSE") || is(sub, b"KILL") {
        CommandClass::NodeSpecific
    } else {
        CommandClass::Regular
    }
}

/// The class of a command whose subcommand decides (everything but `CLIENT`).
fn subcommand_class(rule: ClassRule, sub: Option<&[u8]>) -> CommandClass {
    use RequestPolicy::*;
    use ResponsePolicy::*;
    match rule {
        ClassRule::Script => {
            if is(sub, b"DEBUG") {
                // The next EVAL on the connection would start a debugging session.
                state(CONNECTION)
            } else if is(sub, b"EXISTS") {
                multi(AllShards, LogicalAnd)
            } else if is(sub, b"KILL") {
                multi(AllShards, OneSucceeded)
            } else if is(sub, b"LOAD") || is(sub, b"FLUSH") {
                multi(AllNodes, AllSucceeded)
            } else {
                CommandClass::Regular
            }
        }
        ClassRule::Function => {
            if is(sub, b"LOAD") || is(sub, b"DELETE") || is(sub, b"FLUSH") || is(sub, b"RESTORE") {
                multi(AllShards, AllSucceeded)
            } else if is(sub, b"KILL") {
                multi(AllShards, OneSucceeded)
            } else if is(sub, b"STATS") {
                multi(AllShards, Special)
            } else {
                CommandClass::Regular
            }
        }
        ClassRule::Config => {
            if is(sub, b"SET") || is(sub, b"RESETSTAT") || is(sub, b"REWRITE") {
                multi(AllNodes, AllSucceeded)
            } else {
                CommandClass::NodeSpecific
            }
        }
        ClassRule::Memory => {
            if is(sub, b"USAGE") || is(sub, b"HELP") {
                CommandClass::Regular
            } else {
                multi(AllShards, Special)
            }
        }
        ClassRule::Pubsub => {
            if is(sub, b"SHARDCHANNELS") || is(sub, b"SHARDNUMSUB") {
                multi(AllShards, Special)
            } else {
                CommandClass::Regular
            }
        }
        ClassRule::Cluster => {
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
                CommandClass::Regular
            } else {
                CommandClass::NodeSpecific
            }
        }
        ClassRule::Client => client_class(sub),
        ClassRule::Is(class) => class,
        ClassRule::Streams => CommandClass::Regular,
    }
}

/// What the table says of one command: its class, where its keys are, and whether it
/// only reads. One lookup of its name (upper-cased once, on the stack), then only the
/// arguments the facets depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Described {
    pub(crate) class: CommandClass,
    pub(crate) keys: Keys,
    pub(crate) read_only: bool,
}

/// Looks `cmd` up in the table (see [`Described`]). Inlined into its callers, so that
/// judging a command builds no `Described` in memory.
#[inline(always)]
pub(crate) fn describe(cmd: &Cmd) -> Described {
    let args = cmd.len();
    let entry = lookup_name(cmd.name());
    let sub = || cmd.arg_at(1);
    // Only the stream commands need their options parsed, and then once for all facets.
    let streams = matches!(entry.keys, KeyRule::Streams).then(|| stream_options(cmd));
    let blocks = streams.is_some_and(|o| o.block.is_some());
    let class = if cmd.is_empty() {
        CommandClass::Empty
    } else {
        match entry.class {
            ClassRule::Is(class) => class,
            ClassRule::Streams if blocks => CommandClass::Blocking,
            rule => subcommand_class(rule, sub()),
        }
    };
    let every = |step, skip_last| Keys::Every {
        first: 1,
        step,
        skip_last,
    };
    let keys = match entry.keys {
        KeyRule::FirstArg if args > 1 => Keys::At(1),
        KeyRule::FirstArg | KeyRule::NoKeys => Keys::None,
        KeyRule::EveryArg => every(1, 0),
        KeyRule::Pairs => every(2, 0),
        KeyRule::AllButTimeout => every(1, 1),
        KeyRule::SourceAndDestination => every(1, args.saturating_sub(3)),
        KeyRule::NumKeysAt(at) => Keys::NumKeysAt(at),
        KeyRule::DestThenCounted => Keys::DestThenCounted,
        KeyRule::Streams => Keys::Streams,
        KeyRule::SubcommandThenKey if args > 2 => Keys::At(2),
        KeyRule::SubcommandThenKey => Keys::None,
        KeyRule::MemoryUsage if is(sub(), b"USAGE") => Keys::At(2),
        KeyRule::MemoryUsage => Keys::None,
    };
    let read_only = match entry.reads {
        ReadRule::Writes => false,
        ReadRule::Reads => true,
        ReadRule::UnlessBlocking => !blocks,
        ReadRule::WithKey => args > 2,
        ReadRule::MemoryUsage => is(sub(), b"USAGE"),
    };
    Described {
        class,
        keys,
        read_only,
    }
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
    describe(cmd).class
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
    describe(cmd).read_only
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
            (&["SELECT", "1"], "Config::database"),
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
