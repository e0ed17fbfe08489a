//! A command judged once: its class, whether it only reads, whether it can name several
//! keys, and the slot of its keys, found when it enters a request and carried with it.
//!
//! Every step of a request needs some of these facts: the expansion (refused? split?
//! fanned out?), planning (which node, a replica for a read?), a retry routed again by
//! the map, a transaction's slot. Asking the command table at each step upper-cased the
//! name and walked its arguments again each time (six passes through routing and four
//! through the table per command of a pipeline). A [`Judgement`] is one lookup of the
//! name ([`crate::core::command_table`]) and one hash of the keys, computed where a
//! command enters, kept beside it (a `Vec<Judgement>` parallel to the commands), and
//! read by every later step.

use crate::core::cmd::Cmd;
use crate::core::command_table::{describe, CommandClass};
use crate::core::error::Result;
use crate::core::route::{key_slots, KeySlots, Route};
use crate::core::slot::Slot;

/// What the client decides about one command before sending it, decided once.
///
/// ```
/// use redis_cluster_uring::{cmd, slot_for_key, ErrorKind};
/// use redis_cluster_uring::core::command_table::CommandClass;
/// use redis_cluster_uring::core::judgement::Judgement;
/// use redis_cluster_uring::core::route::Route;
/// let get = cmd("get").arg("k");
/// let j = Judgement::of(&get);
/// assert_eq!(j.class(), CommandClass::Regular);
/// assert!(j.is_read_only());
/// assert_eq!(j.route(&get).unwrap(), Route::Slot(slot_for_key(b"k")));
/// let mget = cmd("MGET").arg("a").arg("b");
/// let j = Judgement::of(&mget);
/// assert!(j.is_multi_key());
/// assert_eq!(j.route(&mget).unwrap_err().kind(), ErrorKind::CrossSlot);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    class: CommandClass,
    slots: KeySlots,
    read_only: bool,
    multi_key: bool,
}

impl Judgement {
    /// Judges `cmd`: one lookup of its name in the command table, then its keys hashed.
    #[inline]
    pub fn of(cmd: &Cmd) -> Judgement {
        let described = describe(cmd);
        Judgement {
            class: described.class,
            slots: key_slots(cmd, described.keys),
            read_only: described.read_only,
            multi_key: described.keys.is_multi_key(),
        }
    }

    /// Judges every command of a pipeline, in order.
    pub fn all(cmds: &[Cmd]) -> Vec<Judgement> {
        cmds.iter().map(Judgement::of).collect()
    }

    /// The command's class ([`crate::core::command_table::command_class`]).
    pub fn class(&self) -> CommandClass {
        self.class
    }

    /// Whether the command only reads
    /// ([`crate::core::command_table::is_read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether the command can name several keys
    /// ([`crate::core::route::is_multi_key`]).
    pub fn is_multi_key(&self) -> bool {
        self.multi_key
    }

    /// Whether its keys span several slots (the server would answer `CROSSSLOT`).
    pub fn is_cross_slot(&self) -> bool {
        matches!(self.slots, KeySlots::Cross(..))
    }

    /// The slot of its keys, `None` when it has none or they span several.
    pub fn slot(&self) -> Option<Slot> {
        match self.slots {
            KeySlots::One(slot) => Some(slot),
            KeySlots::None | KeySlots::Cross(..) => None,
        }
    }

    /// Where `cmd` (the command judged) must go
    /// ([`crate::core::route::route_command`]): its keys' slot, any node, or the
    /// `CrossSlot` error naming it.
    pub fn route(&self, cmd: &Cmd) -> Result<Route> {
        self.slots.route(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::command_table::{command_class, is_read_only};
    use crate::core::route::{command_keys, is_multi_key, route_command};
    use proptest::prelude::*;

    /// Every name the command table lists.
    const NAMES: &[&str] = &[
        "ACL",
        "APPEND",
        "ASKING",
        "AUTH",
        "BGREWRITEAOF",
        "BGSAVE",
        "BITCOUNT",
        "BITFIELD_RO",
        "BITPOS",
        "BLMOVE",
        "BLMPOP",
        "BLPOP",
        "BRPOP",
        "BRPOPLPUSH",
        "BZMPOP",
        "BZPOPMAX",
        "BZPOPMIN",
        "CLIENT",
        "CLUSTER",
        "COMMAND",
        "CONFIG",
        "COPY",
        "DBSIZE",
        "DEBUG",
        "DECR",
        "DECRBY",
        "DEL",
        "DISCARD",
        "DUMP",
        "ECHO",
        "EVAL",
        "EVALSHA",
        "EVALSHA_RO",
        "EVAL_RO",
        "EXEC",
        "EXISTS",
        "EXPIRE",
        "EXPIRETIME",
        "FAILOVER",
        "FCALL",
        "FCALL_RO",
        "FLUSHALL",
        "FLUSHDB",
        "FUNCTION",
        "GEODIST",
        "GEOHASH",
        "GEOPOS",
        "GEORADIUSBYMEMBER_RO",
        "GEORADIUS_RO",
        "GEOSEARCH",
        "GET",
        "GETBIT",
        "GETRANGE",
        "GETSET",
        "HELLO",
        "HEXISTS",
        "HGET",
        "HGETALL",
        "HKEYS",
        "HLEN",
        "HMGET",
        "HRANDFIELD",
        "HSCAN",
        "HSET",
        "HSTRLEN",
        "HVALS",
        "INCR",
        "INCRBY",
        "INFO",
        "KEYS",
        "LASTSAVE",
        "LATENCY",
        "LCS",
        "LINDEX",
        "LLEN",
        "LMOVE",
        "LMPOP",
        "LOLWUT",
        "LPOP",
        "LPOS",
        "LPUSH",
        "LRANGE",
        "MEMORY",
        "MGET",
        "MODULE",
        "MONITOR",
        "MSET",
        "MSETNX",
        "MULTI",
        "OBJECT",
        "PEXPIRE",
        "PEXPIRETIME",
        "PFCOUNT",
        "PFMERGE",
        "PING",
        "PSUBSCRIBE",
        "PSYNC",
        "PTTL",
        "PUBLISH",
        "PUBSUB",
        "PUNSUBSCRIBE",
        "QUIT",
        "RANDOMKEY",
        "READONLY",
        "READWRITE",
        "RENAME",
        "RENAMENX",
        "REPLCONF",
        "REPLICAOF",
        "RESET",
        "ROLE",
        "RPOP",
        "RPOPLPUSH",
        "RPUSH",
        "SADD",
        "SAVE",
        "SCAN",
        "SCARD",
        "SCRIPT",
        "SDIFF",
        "SDIFFSTORE",
        "SELECT",
        "SET",
        "SETEX",
        "SHUTDOWN",
        "SINTER",
        "SINTERCARD",
        "SINTERSTORE",
        "SISMEMBER",
        "SLAVEOF",
        "SLOWLOG",
        "SMEMBERS",
        "SMISMEMBER",
        "SMOVE",
        "SORT_RO",
        "SRANDMEMBER",
        "SSCAN",
        "SSUBSCRIBE",
        "STRLEN",
        "SUBSCRIBE",
        "SUBSTR",
        "SUNION",
        "SUNIONSTORE",
        "SUNSUBSCRIBE",
        "SWAPDB",
        "SYNC",
        "TIME",
        "TOUCH",
        "TTL",
        "TYPE",
        "UNLINK",
        "UNSUBSCRIBE",
        "UNWATCH",
        "WAIT",
        "WAITAOF",
        "WATCH",
        "XINFO",
        "XLEN",
        "XPENDING",
        "XRANGE",
        "XREAD",
        "XREADGROUP",
        "XREVRANGE",
        "ZADD",
        "ZCARD",
        "ZCOUNT",
        "ZDIFF",
        "ZDIFFSTORE",
        "ZINTER",
        "ZINTERCARD",
        "ZINTERSTORE",
        "ZLEXCOUNT",
        "ZMPOP",
        "ZMSCORE",
        "ZRANDMEMBER",
        "ZRANGE",
        "ZRANGEBYLEX",
        "ZRANGEBYSCORE",
        "ZRANK",
        "ZREVRANGE",
        "ZREVRANGEBYLEX",
        "ZREVRANGEBYSCORE",
        "ZREVRANK",
        "ZSCAN",
        "ZSCORE",
        "ZUNION",
        "ZUNIONSTORE",
    ];

    /// Names it does not list: a module command, one longer than any it knows, none.
    const UNKNOWN: &[&str] = &[
        "SOMEMODULE.CMD",
        "AVERYLONGMODULECOMMANDNAMEOVER24BYTES",
        "",
        "X",
    ];

    /// Argument lists after the name, meant to reach every rule: keys, numkeys, stream
    /// options, every subcommand the table names, in both cases.
    fn shapes() -> Vec<Vec<String>> {
        let mut shapes: Vec<Vec<&str>> = vec![
            vec![],
            vec!["k"],
            vec!["k", "v"],
            vec!["a", "b"],
            vec!["a", "b", "0"],
            vec!["{t}a", "{t}b", "{t}c"],
            vec!["{t}a", "1", "{t}b", "2"],
            vec!["a", "1", "b", "2"],
            vec!["a", "1", "b"],
            vec!["a", "b", "LEFT", "RIGHT", "0"],
            vec!["2", "a", "b", "LEFT"],
            vec!["0", "2", "a", "b", "LEFT"],
            vec!["0", "2", "{t}a", "{t}b"],
            vec!["script", "2", "a", "b", "argv"],
            vec!["script", "99", "k"],
            vec!["script", "x", "k"],
            vec!["d", "2", "a", "b", "WEIGHTS", "1", "2"],
            vec!["d", "2", "{d}a", "{d}b"],
            vec!["COUNT", "2", "STREAMS", "s1", "s2", "0", "0"],
            vec!["BLOCK", "0", "STREAMS", "{s}1", "{s}2", "0", "0"],
            vec!["block", "10", "streams", "s", "$"],
            vec!["GROUP", "g", "c", "BLOCK", "5", "STREAMS", "s", ">"],
            vec![
                "GROUP", "STREAMS", "BLOCK", "COUNT", "1", "streams", "s1", ">",
            ],
            vec!["STREAMS", "BLOCK", "0"],
            vec!["NOACK", "CLAIM", "1", "STREAMS", "a", "b", "c", "d"],
        ];
        for sub in [
            "REPLY",
            "TRACKING",
            "CACHING",
            "SETNAME",
            "SETINFO",
            "NO-EVICT",
            "NO-TOUCH",
            "PAUSE",
            "UNPAUSE",
            "KILL",
            "ID",
            "DEBUG",
            "EXISTS",
            "LOAD",
            "FLUSH",
            "DELETE",
            "RESTORE",
            "STATS",
            "HELP",
            "SET",
            "GET",
            "RESETSTAT",
            "REWRITE",
            "USAGE",
            "DOCTOR",
            "SHARDCHANNELS",
            "SHARDNUMSUB",
            "CHANNELS",
            "SLOTS",
            "SHARDS",
            "NODES",
            "INFO",
            "KEYSLOT",
            "FAILOVER",
            "MYID",
            "ENCODING",
            "STREAM",
        ] {
            shapes.push(vec![sub]);
            shapes.push(vec![sub, "k"]);
            shapes.push(vec![sub, "k", "v"]);
        }
        let owned = |shape: &Vec<&str>| shape.iter().map(|a| a.to_string()).collect();
        let lower = |shape: &Vec<&str>| shape.iter().map(|a| a.to_ascii_lowercase()).collect();
        shapes
            .iter()
            .map(owned)
            .chain(shapes.iter().map(lower))
            .collect()
    }

    /// `name` as given, lower-cased and in mixed case.
    fn casings(name: &str) -> [String; 3] {
        let mixed = name
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect();
        [name.to_string(), name.to_ascii_lowercase(), mixed]
    }

    fn command(name: &str, args: &[&str]) -> Cmd {
        let mut c = Cmd::new();
        if !name.is_empty() || !args.is_empty() {
            c.push_arg(name);
        }
        for a in args {
            c.push_arg(*a);
        }
        c
    }

    /// The judgement, and every public function now answering from the one lookup, agree
    /// with the old tables on `c`.
    fn agrees(c: &Cmd) -> std::result::Result<(), String> {
        let j = Judgement::of(c);
        let what = format!("{c:?}");
        let class = reference::command_class(c);
        if j.class() != class || command_class(c) != class {
            return Err(format!("{what}: class {:?}, was {class:?}", j.class()));
        }
        let read_only = reference::is_read_only(c);
        if j.is_read_only() != read_only || is_read_only(c) != read_only {
            return Err(format!(
                "{what}: read-only {}, was {read_only}",
                j.is_read_only()
            ));
        }
        let multi = reference::is_multi_key(c);
        if j.is_multi_key() != multi || is_multi_key(c) != multi {
            return Err(format!(
                "{what}: multi-key {}, was {multi}",
                j.is_multi_key()
            ));
        }
        if command_keys(c) != reference::command_keys(c) {
            return Err(format!(
                "{what}: keys {:?}, were {:?}",
                command_keys(c),
                reference::command_keys(c)
            ));
        }
        let was = reference::route_command(c);
        for now in [j.route(c), route_command(c)] {
            let same = match (&now, &was) {
                (Ok(a), Ok(b)) => a == b,
                (Err(a), Err(b)) => a.kind() == b.kind() && a.detail() == b.detail(),
                _ => false,
            };
            if !same {
                return Err(format!("{what}: route {now:?}, was {was:?}"));
            }
        }
        let slot = match &was {
            Ok(Route::Slot(s)) => Some(*s),
            _ => None,
        };
        if j.slot() != slot || j.is_cross_slot() != was.is_err() {
            return Err(format!("{what}: slot {:?}, route was {was:?}", j.slot()));
        }
        Ok(())
    }

    #[test]
    fn the_judgement_equals_the_tables_for_every_command_in_any_case() {
        let shapes = shapes();
        let mut checked = 0;
        for name in NAMES.iter().chain(UNKNOWN) {
            for name in casings(name) {
                for args in &shapes {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    agrees(&command(&name, &args)).unwrap();
                    checked += 1;
                }
            }
        }
        agrees(&Cmd::new()).unwrap();
        assert!(checked > 40_000, "{checked}");
    }

    fn arg() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("STREAMS".to_string()),
            Just("block".to_string()),
            Just("GROUP".to_string()),
            Just("COUNT".to_string()),
            Just("USAGE".to_string()),
            Just("reply".to_string()),
            "[0-3]",
            "\\{[ab]\\}[a-c]",
            "[a-z]{1,3}",
        ]
    }

    proptest! {
        #[test]
        fn random_commands_are_judged_as_the_tables_said(
            name in proptest::sample::select(NAMES),
            lower in any::<bool>(),
            args in proptest::collection::vec(arg(), 0..8),
        ) {
            let name = if lower { name.to_ascii_lowercase() } else { name.to_string() };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Err(e) = agrees(&command(&name, &args)) {
                return Err(TestCaseError::fail(e));
            }
        }
    }

    /// The command table and the router as they were before judgements, kept verbatim
    /// (three lookups, each upper-casing the name) to check the one lookup against.
    mod reference {
        use crate::core::cmd::Cmd;
        use crate::core::command_table::{CommandClass, RequestPolicy, ResponsePolicy};
        use crate::core::error::{Error, ErrorKind, Result};
        use crate::core::route::{stream_options, Route};
        use crate::core::slot::slot_for_key;

        const TRANSACTIONS: &str = "use Pipeline::atomic for MULTI/EXEC (written in one piece on the slot's connection) and Client::transaction for WATCH (a connection of its own)";
        const PUBSUB: &str = "pub/sub needs connections of its own: use Client::subscriber (and PUBLISH/SPUBLISH on the client)";
        const HANDSHAKE: &str =
            "authentication and protocol settings belong to the connection handshake (Config), not to a command";
        const NO_SELECT: &str = "the database belongs to the connection handshake: use Config::database (every connection selects it; Redis Cluster has only database 0)";
        const REPLY_MODE: &str =
            "it would silence replies that other callers of the shared connection wait for";
        const ROUTING: &str =
            "the client sends ASKING, READONLY and READWRITE itself when it routes";
        const CONNECTION: &str = "it would change or end the connection shared by every caller";

        fn is(arg: Option<&[u8]>, word: &[u8]) -> bool {
            arg.is_some_and(|a| a.eq_ignore_ascii_case(word))
        }

        fn multi(request: RequestPolicy, response: ResponsePolicy) -> CommandClass {
            CommandClass::MultiNode { request, response }
        }

        pub(super) fn command_class(cmd: &Cmd) -> CommandClass {
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
                b"GET" | b"SET" | b"MGET" | b"MSET" | b"DEL" | b"INCR" | b"INCRBY" | b"HGET"
                | b"HSET" | b"EXPIRE" | b"EXISTS" => Regular,

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

                b"BLPOP" | b"BRPOP" | b"BLMOVE" | b"BLMPOP" | b"BZPOPMIN" | b"BZPOPMAX"
                | b"BZMPOP" | b"BRPOPLPUSH" => Blocking,
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
                    if is(sub, b"LOAD")
                        || is(sub, b"DELETE")
                        || is(sub, b"FLUSH")
                        || is(sub, b"RESTORE")
                    {
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

                b"SHUTDOWN" | b"FAILOVER" | b"REPLICAOF" | b"SLAVEOF" | b"DEBUG" | b"SAVE"
                | b"BGSAVE" | b"BGREWRITEAOF" | b"MODULE" | b"LASTSAVE" | b"ROLE" => NodeSpecific,
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

        pub(super) fn is_read_only(cmd: &Cmd) -> bool {
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

        fn upper_name(name: &[u8]) -> Option<([u8; 24], usize)> {
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
                | b"HGETALL" | b"EXPIRE" | b"TTL" | b"LPUSH" | b"RPUSH" | b"LPOP" | b"RPOP"
                | b"SADD" | b"ZADD" | b"STRLEN" | b"APPEND" | b"GETSET" | b"SETEX" | b"PEXPIRE" => {
                    default
                }
                b"ACL" | b"ASKING" | b"AUTH" | b"BGREWRITEAOF" | b"BGSAVE" | b"CLIENT"
                | b"CLUSTER" | b"COMMAND" | b"CONFIG" | b"DBSIZE" | b"DEBUG" | b"ECHO"
                | b"FAILOVER" | b"FLUSHALL" | b"FLUSHDB" | b"FUNCTION" | b"HELLO" | b"INFO"
                | b"KEYS" | b"LASTSAVE" | b"LATENCY" | b"LOLWUT" | b"MODULE" | b"MONITOR"
                | b"MULTI" | b"EXEC" | b"DISCARD" | b"PING" | b"PSUBSCRIBE" | b"PUBLISH"
                | b"PUBSUB" | b"PUNSUBSCRIBE" | b"QUIT" | b"RANDOMKEY" | b"READONLY"
                | b"READWRITE" | b"REPLICAOF" | b"RESET" | b"ROLE" | b"SAVE" | b"SCAN"
                | b"SCRIPT" | b"SELECT" | b"SHUTDOWN" | b"SLAVEOF" | b"SLOWLOG" | b"SUBSCRIBE"
                | b"SWAPDB" | b"SYNC" | b"TIME" | b"UNSUBSCRIBE" | b"UNWATCH" | b"WAIT"
                | b"WAITAOF" => Keys::None,
                // `MEMORY USAGE key` is the one keyed MEMORY subcommand.
                b"MEMORY" => match cmd.arg_at(1) {
                    Some(sub) if sub.eq_ignore_ascii_case(b"USAGE") => Keys::At(2),
                    _ => Keys::None,
                },
                // Every argument after the name is a key.
                b"DEL" | b"EXISTS" | b"MGET" | b"PFCOUNT" | b"PFMERGE" | b"SDIFF"
                | b"SDIFFSTORE" | b"SINTER" | b"SINTERSTORE" | b"SUNION" | b"SUNIONSTORE"
                | b"TOUCH" | b"UNLINK" | b"WATCH" => every(1, 0),
                // Source and destination at 1 and 2.
                b"BLMOVE" | b"BRPOPLPUSH" | b"COPY" | b"LMOVE" | b"RENAME" | b"RENAMENX"
                | b"RPOPLPUSH" | b"SMOVE" => every(1, cmd.len().saturating_sub(3)),
                b"MSET" | b"MSETNX" => every(2, 0),
                // The last argument is the timeout.
                b"BLPOP" | b"BRPOP" | b"BZPOPMIN" | b"BZPOPMAX" => every(1, 1),
                b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO"
                | b"BLMPOP" | b"BZMPOP" => Keys::NumKeysAt(2),
                b"LMPOP" | b"ZMPOP" | b"SINTERCARD" | b"ZUNION" | b"ZINTER" | b"ZDIFF"
                | b"ZINTERCARD" => Keys::NumKeysAt(1),
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

        pub(super) fn command_keys(cmd: &Cmd) -> Vec<&[u8]> {
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

        fn numkeys_after(cmd: &Cmd, at: usize) -> impl Iterator<Item = &[u8]> {
            let n = cmd
                .arg_at(at)
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            let end = (at + 1).saturating_add(n).min(cmd.len());
            (at + 1..end).filter_map(|i| cmd.arg_at(i))
        }

        pub(super) fn is_multi_key(cmd: &Cmd) -> bool {
            !matches!(key_positions(cmd), Keys::None | Keys::At(_))
        }

        pub(super) fn route_command(cmd: &Cmd) -> Result<Route> {
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
        fn stream_block_ms(cmd: &Cmd) -> Option<&[u8]> {
            stream_options(cmd).block
        }
    }
}
