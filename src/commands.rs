//! Typed helpers for the commands users reach for first: strings, keys and expiry, hashes,
//! lists, sets, sorted sets, scripting and publishing.
//!
//! Each command is defined once, in a table below, and that one definition gives four
//! things of the same name:
//! - a pure constructor here, `commands::hset(key, field, value)`, that returns the
//!   [`Cmd`] (testable without a server, usable with any client's `query`);
//! - a [`Pipeline`] method that adds it, `pipe.hset(key, field, value)`;
//! - an [`AsyncCommands`] method that runs it and converts the reply with [`FromReply`],
//!   on [`Client`] and [`SharedClient`];
//! - the same method on [`Commands`], without `.await`, on
//!   [`blocking::Client`](crate::blocking::Client) and [`SharedBlocking`].
//!
//! Arguments are generic over [`ToArg`] (one value) or [`ToArgs`] (one value, or a slice,
//! array, `Vec` or tuple of them: keys, members, fields). Replies that carry data (`GET`,
//! `HGETALL`, `LRANGE`, scripts...) convert into a type the caller picks (`Option<String>`,
//! `Vec<u8>`, `HashMap`, tuples...); replies that are a count, a flag or a status have the
//! one type that fits (`u64`, `bool`, `()`), so `client.sadd("s", 1).await?` needs no
//! annotation. Multi-key commands (`MGET`, `MSET`, `DEL`, `UNLINK`, `EXISTS`) may name keys
//! on any slot: the client splits them by slot and merges the replies. `SINTER`, `RENAME`
//! and scripts need their keys in one slot (a hash tag such as `{user1}`).
//!
//! ```
//! use redis_cluster_uring::commands;
//! let c = commands::hset("user:1", "name", "Ada");
//! assert_eq!(&c.to_bytes()[..], b"*4\r\n$4\r\nHSET\r\n$6\r\nuser:1\r\n$4\r\nname\r\n$3\r\nAda\r\n");
//! // A slice or a `Vec` is one argument per element.
//! assert_eq!(commands::del(&["a", "b", "c"]).len(), 4);
//! ```
//!
//! ```no_run
//! use std::collections::HashMap;
//! use redis_cluster_uring::prelude::*;
//! engine::start(async {
//!     let client = Client::connect(&["127.0.0.1:7000"], Config::default()).await?;
//!     client.hset_multiple("user:1", &[("name", "Ada"), ("lang", "en")]).await?;
//!     let user: HashMap<String, String> = client.hgetall("user:1").await?;
//!     let name = client.hget::<_, _, Option<String>>("user:1", "name").await?;
//!     client.sadd("tags", vec!["a", "b", "c"]).await?;
//!     let values: Vec<Option<String>> = client.mget(&["k1", "k2", "k3"]).await?;
//!     let mut pipe = Pipeline::new();
//!     pipe.incr("visits", 1).ignore().zadd("board", "ada", 12.5).zadd("board", "bob", 9.0);
//!     let (ada, bob): (u64, u64) = client.query_pipeline(&pipe).await?;
//!     let top: Vec<(String, f64)> = client.zrevrange_withscores("board", 0, 9).await?;
//!     println!("{user:?} {name:?} {values:?} {ada} {bob} {top:?}");
//!     Ok::<(), redis_cluster_uring::Error>(())
//! })
//! .unwrap();
//! ```

use std::future::Future;

use crate::blocking::Client as BlockingClient;
use crate::client::{Client, Pipeline};
use crate::core::cmd::{cmd, Cmd, ToArg, ToArgs};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::reply::FromReply;
use crate::core::resp::Value;
use crate::shared::{SharedBlocking, SharedClient};

/// The command table is a list of families, each a macro that hands its entries to an
/// emitter. An entry is a doc comment, then
/// `fn name<generics>(arguments) -> Reply = constructor expression;`, where `Reply` is
/// - `T`: the client method gains a last type parameter `T: FromReply` the caller picks;
/// - `Vec<(M, f64)>`: members with their scores, `M: FromReply` picked by the caller, the
///   same on RESP2 (a flat array) and RESP3 (an array of pairs);
/// - any other type: the client method returns exactly that type.
///
/// Four emitters read every family, so each command is defined once and gives: the pure
/// constructor (`commands::get`), the [`Pipeline`] method, the [`AsyncCommands`] method
/// and the [`Commands`] method. The trait methods are emitted one entry at a time (the
/// three reply forms cannot be told apart inside one repetition), so a family stays well
/// below the macro recursion limit.
macro_rules! constructors {
    ($(
        $(#[$meta:meta])*
        fn $name:ident<$($g:ident: $b:ident),*>($($arg:ident: $ty:ty),*) -> $reply:ty
            = $build:expr;
    )*) => {$(
        $(#[$meta])*
        pub fn $name<$($g: $b),*>($($arg: $ty),*) -> Cmd {
            $build
        }
    )*};
}

/// Emits the [`Pipeline`] methods of a family (inside `impl Pipeline`).
macro_rules! pipeline_methods {
    ($(
        $(#[$meta:meta])*
        fn $name:ident<$($g:ident: $b:ident),*>($($arg:ident: $ty:ty),*) -> $reply:ty
            = $build:expr;
    )*) => {$(
        $(#[$meta])*
        pub fn $name<$($g: $b),*>(&mut self, $($arg: $ty),*) -> &mut Pipeline {
            self.add($name($($arg),*))
        }
    )*};
}

/// Emits the [`AsyncCommands`] methods of a family (inside the trait).
macro_rules! async_methods {
    () => {};
    (
        $(#[$meta:meta])*
        fn $name:ident<$($g:ident: $b:ident),*>($($arg:ident: $ty:ty),*) -> T = $build:expr;
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        fn $name<$($g: $b,)* T: FromReply>(
            &self,
            $($arg: $ty),*
        ) -> impl Future<Output = Result<T>> {
            self.query($name($($arg),*))
        }
        async_methods!($($rest)*);
    };
    (
        $(#[$meta:meta])*
        fn $name:ident<$($g:ident: $b:ident),*>($($arg:ident: $ty:ty),*) -> Vec<(M, f64)>
            = $build:expr;
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        fn $name<$($g: $b,)* M: FromReply>(
            &self,
            $($arg: $ty),*
        ) -> impl Future<Output = Result<Vec<(M, f64)>>> {
            let reply = self.query::<Value>($name($($arg),*));
            async move { scored(reply.await?) }
        }
        async_methods!($($rest)*);
    };
    (
        $(#[$meta:meta])*
        fn $name:ident<$($g:ident: $b:ident),*>($($arg:ident: $ty:ty),*) -> $reply:ty
            = $build:expr;
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        fn $name<$($g: $b),*>(&self, $($arg: $ty),*) -> impl Future<Output = Result<$reply>> {
            self.query($name($($arg),*))
        }
        async_methods!($($rest)*);
    };
}

/// Emits the [`Commands`] methods of a family (inside the trait).
macro_rules! blocking_methods {
    () => {};
    (
        $(#[$meta:meta])*
        fn $name:ident<$($g:ident: $b:ident),*>($($arg:ident: $ty:ty),*) -> T = $build:expr;
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        fn $name<$($g: $b,)* T: FromReply>(&mut self, $($arg: $ty),*) -> Result<T> {
            self.query($name($($arg),*))
        }
        blocking_methods!($($rest)*);
    };
    (
        $(#[$meta:meta])*
        fn $name:ident<$($g:ident: $b:ident),*>($($arg:ident: $ty:ty),*) -> Vec<(M, f64)>
            = $build:expr;
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        fn $name<$($g: $b,)* M: FromReply>(
            &mut self,
            $($arg: $ty),*
        ) -> Result<Vec<(M, f64)>> {
            scored(self.query($name($($arg),*))?)
        }
        blocking_methods!($($rest)*);
    };
    (
        $(#[$meta:meta])*
        fn $name:ident<$($g:ident: $b:ident),*>($($arg:ident: $ty:ty),*) -> $reply:ty
            = $build:expr;
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        fn $name<$($g: $b),*>(&mut self, $($arg: $ty),*) -> Result<$reply> {
            self.query($name($($arg),*))
        }
        blocking_methods!($($rest)*);
    };
}

// Strings.
macro_rules! strings {
    ($emit:ident) => {
        $emit! {
            /// `GET key`: the value, or nil.
            fn get<K: ToArg>(key: K) -> T = cmd("GET").arg(key);
            /// `SET key value`.
            fn set<K: ToArg, V: ToArg>(key: K, value: V) -> () = cmd("SET").arg(key).arg(value);
            /// `SET key value` with expiry, condition and `GET` from [`SetOptions`]: `OK` (or the
            /// old value with `GET`), nil when the condition failed; `bool` reads it as "was set".
            fn set_options<K: ToArg, V: ToArg>(key: K, value: V, options: SetOptions) -> T = {
                let mut c = cmd("SET").arg(key).arg(value);
                options.write_to(&mut c);
                c
            };
            /// `SET key value EX seconds`.
            fn set_ex<K: ToArg, V: ToArg>(key: K, value: V, seconds: u64) -> () =
                cmd("SET").arg(key).arg(value).arg("EX").arg(seconds);
            /// `SET key value PX milliseconds`.
            fn pset_ex<K: ToArg, V: ToArg>(key: K, value: V, millis: u64) -> () =
                cmd("SET").arg(key).arg(value).arg("PX").arg(millis);
            /// `SET key value NX`: whether the key was set (it did not exist).
            fn set_nx<K: ToArg, V: ToArg>(key: K, value: V) -> bool =
                cmd("SET").arg(key).arg(value).arg("NX");
            /// `GETSET key value`: the old value, or nil.
            fn getset<K: ToArg, V: ToArg>(key: K, value: V) -> T = cmd("GETSET").arg(key).arg(value);
            /// `GETDEL key`: the value, or nil; the key is deleted.
            fn get_del<K: ToArg>(key: K) -> T = cmd("GETDEL").arg(key);
            /// `MGET key [key ...]`: the values in key order (nil for missing keys).
            fn mget<K: ToArgs>(keys: K) -> T = cmd("MGET").arg_multi(keys);
            /// `MSET key value [key value ...]`.
            fn mset<K: ToArg, V: ToArg>(items: &[(K, V)]) -> () = {
                let mut c = cmd("MSET");
                for (k, v) in items {
                    c.push_arg(k).push_arg(v);
                }
                c
            };
            /// `INCRBY key by`: the new value.
            fn incr<K: ToArg>(key: K, by: i64) -> i64 = cmd("INCRBY").arg(key).arg(by);
            /// `DECRBY key by`: the new value.
            fn decr<K: ToArg>(key: K, by: i64) -> i64 = cmd("DECRBY").arg(key).arg(by);
            /// `INCRBYFLOAT key by`: the new value.
            fn incr_by_float<K: ToArg>(key: K, by: f64) -> f64 = cmd("INCRBYFLOAT").arg(key).arg(by);
            /// `APPEND key value`: the new length.
            fn append<K: ToArg, V: ToArg>(key: K, value: V) -> u64 = cmd("APPEND").arg(key).arg(value);
            /// `STRLEN key`: the value's length (0 when missing).
            fn strlen<K: ToArg>(key: K) -> u64 = cmd("STRLEN").arg(key);
        }
    };
}

// Keys and expiry.
macro_rules! keys_and_expiry {
    ($emit:ident) => {
        $emit! {
            /// `DEL key [key ...]`: how many keys were removed.
            fn del<K: ToArgs>(keys: K) -> u64 = cmd("DEL").arg_multi(keys);
            /// `UNLINK key [key ...]`: how many keys were removed (memory reclaimed later).
            fn unlink<K: ToArgs>(keys: K) -> u64 = cmd("UNLINK").arg_multi(keys);
            /// `EXISTS key`: whether the key exists.
            fn exists<K: ToArg>(key: K) -> bool = cmd("EXISTS").arg(key);
            /// `EXISTS key [key ...]`: how many of the keys exist (a key named twice counts twice).
            fn exists_count<K: ToArgs>(keys: K) -> u64 = cmd("EXISTS").arg_multi(keys);
            /// `EXPIRE key seconds`: whether a timeout was set.
            fn expire<K: ToArg>(key: K, seconds: u64) -> bool = cmd("EXPIRE").arg(key).arg(seconds);
            /// `PEXPIRE key milliseconds`: whether a timeout was set.
            fn pexpire<K: ToArg>(key: K, millis: u64) -> bool = cmd("PEXPIRE").arg(key).arg(millis);
            /// `EXPIREAT key unix-seconds`: whether a timeout was set.
            fn expire_at<K: ToArg>(key: K, unix_seconds: u64) -> bool =
                cmd("EXPIREAT").arg(key).arg(unix_seconds);
            /// `PEXPIREAT key unix-milliseconds`: whether a timeout was set.
            fn pexpire_at<K: ToArg>(key: K, unix_millis: u64) -> bool =
                cmd("PEXPIREAT").arg(key).arg(unix_millis);
            /// `TTL key`: seconds left; -1 without a timeout, -2 when the key is missing.
            fn ttl<K: ToArg>(key: K) -> i64 = cmd("TTL").arg(key);
            /// `PTTL key`: milliseconds left; -1 without a timeout, -2 when the key is missing.
            fn pttl<K: ToArg>(key: K) -> i64 = cmd("PTTL").arg(key);
            /// `PERSIST key`: whether a timeout was removed.
            fn persist<K: ToArg>(key: K) -> bool = cmd("PERSIST").arg(key);
            /// `TYPE key`: `string`, `list`, `set`, `zset`, `hash`, `stream`, or `none`.
            fn type_of<K: ToArg>(key: K) -> String = cmd("TYPE").arg(key);
            /// `RENAME key new_key` (both in one slot).
            fn rename<K: ToArg, N: ToArg>(key: K, new_key: N) -> () =
                cmd("RENAME").arg(key).arg(new_key);
            /// `RENAMENX key new_key` (both in one slot): whether it was renamed.
            fn rename_nx<K: ToArg, N: ToArg>(key: K, new_key: N) -> bool =
                cmd("RENAMENX").arg(key).arg(new_key);
        }
    };
}

// Hashes.
macro_rules! hashes {
    ($emit:ident) => {
        $emit! {
            /// `HSET key field value`: number of fields added.
            fn hset<K: ToArg, F: ToArg, V: ToArg>(key: K, field: F, value: V) -> u64 =
                cmd("HSET").arg(key).arg(field).arg(value);
            /// `HSET key field value [field value ...]`: number of fields added.
            fn hset_multiple<K: ToArg, F: ToArg, V: ToArg>(key: K, items: &[(F, V)]) -> u64 = {
                let mut c = cmd("HSET").arg(key);
                for (f, v) in items {
                    c.push_arg(f).push_arg(v);
                }
                c
            };
            /// `HSETNX key field value`: whether the field was set (it did not exist).
            fn hset_nx<K: ToArg, F: ToArg, V: ToArg>(key: K, field: F, value: V) -> bool =
                cmd("HSETNX").arg(key).arg(field).arg(value);
            /// `HGET key field`: the value, or nil.
            fn hget<K: ToArg, F: ToArg>(key: K, field: F) -> T = cmd("HGET").arg(key).arg(field);
            /// `HMGET key field [field ...]`: the values in field order (nil for missing fields).
            fn hmget<K: ToArg, F: ToArgs>(key: K, fields: F) -> T =
                cmd("HMGET").arg(key).arg_multi(fields);
            /// `HGETALL key`: every field and value (a map, or pairs).
            fn hgetall<K: ToArg>(key: K) -> T = cmd("HGETALL").arg(key);
            /// `HDEL key field [field ...]`: number of fields removed.
            fn hdel<K: ToArg, F: ToArgs>(key: K, fields: F) -> u64 =
                cmd("HDEL").arg(key).arg_multi(fields);
            /// `HEXISTS key field`: whether the field exists.
            fn hexists<K: ToArg, F: ToArg>(key: K, field: F) -> bool =
                cmd("HEXISTS").arg(key).arg(field);
            /// `HINCRBY key field by`: the new value.
            fn hincr_by<K: ToArg, F: ToArg>(key: K, field: F, by: i64) -> i64 =
                cmd("HINCRBY").arg(key).arg(field).arg(by);
            /// `HKEYS key`: the field names.
            fn hkeys<K: ToArg>(key: K) -> T = cmd("HKEYS").arg(key);
            /// `HVALS key`: the values.
            fn hvals<K: ToArg>(key: K) -> T = cmd("HVALS").arg(key);
            /// `HLEN key`: the number of fields.
            fn hlen<K: ToArg>(key: K) -> u64 = cmd("HLEN").arg(key);
        }
    };
}

// Lists.
macro_rules! lists {
    ($emit:ident) => {
        $emit! {
            /// `LPUSH key value [value ...]`: the new length.
            fn lpush<K: ToArg, V: ToArgs>(key: K, values: V) -> u64 =
                cmd("LPUSH").arg(key).arg_multi(values);
            /// `RPUSH key value [value ...]`: the new length.
            fn rpush<K: ToArg, V: ToArgs>(key: K, values: V) -> u64 =
                cmd("RPUSH").arg(key).arg_multi(values);
            /// `LPOP key [count]`: one value (or nil) without a count, a list (or nil) with one.
            fn lpop<K: ToArg>(key: K, count: Option<usize>) -> T = with_count(cmd("LPOP").arg(key), count);
            /// `RPOP key [count]`: one value (or nil) without a count, a list (or nil) with one.
            fn rpop<K: ToArg>(key: K, count: Option<usize>) -> T = with_count(cmd("RPOP").arg(key), count);
            /// `LRANGE key start stop`: the elements from `start` to `stop` inclusive (negative
            /// counts from the end).
            fn lrange<K: ToArg>(key: K, start: isize, stop: isize) -> T =
                cmd("LRANGE").arg(key).arg(start).arg(stop);
            /// `LLEN key`: the length.
            fn llen<K: ToArg>(key: K) -> u64 = cmd("LLEN").arg(key);
            /// `LINDEX key index`: the element, or nil.
            fn lindex<K: ToArg>(key: K, index: isize) -> T = cmd("LINDEX").arg(key).arg(index);
            /// `LSET key index value`.
            fn lset<K: ToArg, V: ToArg>(key: K, index: isize, value: V) -> () =
                cmd("LSET").arg(key).arg(index).arg(value);
            /// `LREM key count value`: how many were removed (`count` > 0 from the head, < 0 from
            /// the tail, 0 all).
            fn lrem<K: ToArg, V: ToArg>(key: K, count: isize, value: V) -> u64 =
                cmd("LREM").arg(key).arg(count).arg(value);
            /// `LTRIM key start stop`: keeps only that range.
            fn ltrim<K: ToArg>(key: K, start: isize, stop: isize) -> () =
                cmd("LTRIM").arg(key).arg(start).arg(stop);
        }
    };
}

// Sets.
macro_rules! sets {
    ($emit:ident) => {
        $emit! {
            /// `SADD key member [member ...]`: how many were added.
            fn sadd<K: ToArg, M: ToArgs>(key: K, members: M) -> u64 =
                cmd("SADD").arg(key).arg_multi(members);
            /// `SREM key member [member ...]`: how many were removed.
            fn srem<K: ToArg, M: ToArgs>(key: K, members: M) -> u64 =
                cmd("SREM").arg(key).arg_multi(members);
            /// `SMEMBERS key`: every member.
            fn smembers<K: ToArg>(key: K) -> T = cmd("SMEMBERS").arg(key);
            /// `SISMEMBER key member`: whether it is a member.
            fn sismember<K: ToArg, M: ToArg>(key: K, member: M) -> bool =
                cmd("SISMEMBER").arg(key).arg(member);
            /// `SCARD key`: the number of members.
            fn scard<K: ToArg>(key: K) -> u64 = cmd("SCARD").arg(key);
            /// `SPOP key`: a random member, removed; nil when the set is empty.
            fn spop<K: ToArg>(key: K) -> T = cmd("SPOP").arg(key);
            /// `SINTER key [key ...]` (keys in one slot): the members in every set.
            fn sinter<K: ToArgs>(keys: K) -> T = cmd("SINTER").arg_multi(keys);
            /// `SUNION key [key ...]` (keys in one slot): the members in any set.
            fn sunion<K: ToArgs>(keys: K) -> T = cmd("SUNION").arg_multi(keys);
            /// `SDIFF key [key ...]` (keys in one slot): the first set's members in no other.
            fn sdiff<K: ToArgs>(keys: K) -> T = cmd("SDIFF").arg_multi(keys);
        }
    };
}

// Sorted sets.
macro_rules! sorted_sets {
    ($emit:ident) => {
        $emit! {
            /// `ZADD key score member`: how many members were added (0 when the score changed).
            fn zadd<K: ToArg, M: ToArg, S: ToArg>(key: K, member: M, score: S) -> u64 =
                cmd("ZADD").arg(key).arg(score).arg(member);
            /// `ZADD key score member [score member ...]` from `(score, member)` pairs: how many
            /// members were added.
            fn zadd_multiple<K: ToArg, S: ToArg, M: ToArg>(key: K, items: &[(S, M)]) -> u64 = {
                let mut c = cmd("ZADD").arg(key);
                for (s, m) in items {
                    c.push_arg(s).push_arg(m);
                }
                c
            };
            /// `ZREM key member [member ...]`: how many were removed.
            fn zrem<K: ToArg, M: ToArgs>(key: K, members: M) -> u64 =
                cmd("ZREM").arg(key).arg_multi(members);
            /// `ZSCORE key member`: the score, or `None` when not a member.
            fn zscore<K: ToArg, M: ToArg>(key: K, member: M) -> Option<f64> =
                cmd("ZSCORE").arg(key).arg(member);
            /// `ZINCRBY key by member`: the new score.
            fn zincr_by<K: ToArg, M: ToArg>(key: K, member: M, by: f64) -> f64 =
                cmd("ZINCRBY").arg(key).arg(by).arg(member);
            /// `ZRANGE key start stop`: members by rank, lowest score first.
            fn zrange<K: ToArg>(key: K, start: isize, stop: isize) -> T =
                cmd("ZRANGE").arg(key).arg(start).arg(stop);
            /// `ZRANGE key start stop WITHSCORES`: `(member, score)` by rank, lowest first.
            fn zrange_withscores<K: ToArg>(key: K, start: isize, stop: isize) -> Vec<(M, f64)> =
                cmd("ZRANGE").arg(key).arg(start).arg(stop).arg("WITHSCORES");
            /// `ZRANGE key start stop REV`: members by rank, highest score first.
            fn zrevrange<K: ToArg>(key: K, start: isize, stop: isize) -> T =
                cmd("ZRANGE").arg(key).arg(start).arg(stop).arg("REV");
            /// `ZRANGE key start stop REV WITHSCORES`: `(member, score)` by rank, highest first.
            fn zrevrange_withscores<K: ToArg>(key: K, start: isize, stop: isize) -> Vec<(M, f64)> =
                cmd("ZRANGE").arg(key).arg(start).arg(stop).arg("REV").arg("WITHSCORES");
            /// `ZRANGE key min max BYSCORE`: members with `min <= score <= max` (`"-inf"`, `"(1"`
            /// for exclusive, numbers).
            fn zrangebyscore<K: ToArg, Min: ToArg, Max: ToArg>(key: K, min: Min, max: Max) -> T =
                cmd("ZRANGE").arg(key).arg(min).arg(max).arg("BYSCORE");
            /// `ZRANGE key min max BYSCORE WITHSCORES`: `(member, score)` in that score range.
            fn zrangebyscore_withscores<K: ToArg, Min: ToArg, Max: ToArg>(
                key: K,
                min: Min,
                max: Max
            ) -> Vec<(M, f64)> =
                cmd("ZRANGE").arg(key).arg(min).arg(max).arg("BYSCORE").arg("WITHSCORES");
            /// `ZCARD key`: the number of members.
            fn zcard<K: ToArg>(key: K) -> u64 = cmd("ZCARD").arg(key);
            /// `ZRANK key member`: the rank from the lowest score, or `None` when not a member.
            fn zrank<K: ToArg, M: ToArg>(key: K, member: M) -> Option<u64> =
                cmd("ZRANK").arg(key).arg(member);
            /// `ZREVRANK key member`: the rank from the highest score, or `None`.
            fn zrevrank<K: ToArg, M: ToArg>(key: K, member: M) -> Option<u64> =
                cmd("ZREVRANK").arg(key).arg(member);
            /// `ZCOUNT key min max`: how many members have `min <= score <= max`.
            fn zcount<K: ToArg, Min: ToArg, Max: ToArg>(key: K, min: Min, max: Max) -> u64 =
                cmd("ZCOUNT").arg(key).arg(min).arg(max);
        }
    };
}

// Scripting and publishing.
macro_rules! scripting_and_publishing {
    ($emit:ident) => {
        $emit! {
            /// `EVAL script numkeys key... arg...` (keys in one slot; `()` for none).
            fn eval<S: ToArg, K: ToArgs, A: ToArgs>(script: S, keys: K, args: A) -> T =
                script_call("EVAL", script, keys, args);
            /// `EVALSHA sha1 numkeys key... arg...` (keys in one slot; `()` for none).
            fn evalsha<S: ToArg, K: ToArgs, A: ToArgs>(sha1: S, keys: K, args: A) -> T =
                script_call("EVALSHA", sha1, keys, args);
            /// `SCRIPT LOAD script` on every primary: the script's SHA1.
            fn script_load<S: ToArg>(script: S) -> String = cmd("SCRIPT").arg("LOAD").arg(script);
            /// `PUBLISH channel message`: how many subscribers on the node that ran it got it (the
            /// cluster forwards it to every node's subscribers).
            fn publish<C: ToArg, M: ToArg>(channel: C, message: M) -> u64 =
                cmd("PUBLISH").arg(channel).arg(message);
            /// `SPUBLISH shard_channel message`: how many shard subscribers got it.
            fn spublish<C: ToArg, M: ToArg>(channel: C, message: M) -> u64 =
                cmd("SPUBLISH").arg(channel).arg(message);
        }
    };
}

/// Every family, through one emitter.
macro_rules! every_family {
    ($emit:ident) => {
        strings!($emit);
        keys_and_expiry!($emit);
        hashes!($emit);
        lists!($emit);
        sets!($emit);
        sorted_sets!($emit);
        scripting_and_publishing!($emit);
    };
}

every_family!(constructors);

impl Pipeline {
    every_family!(pipeline_methods);
}

/// The typed commands of the async clients ([`Client`], [`SharedClient`]): one required
/// [`query`](AsyncCommands::query) (and the pipeline calls), and a provided method per
/// command of this module, which builds the command, runs it and converts the reply with
/// [`FromReply`]. A method's doc names the command and its reply.
///
/// The methods take `&self`: any number of them may be in flight on one client at once,
/// and they share its connections. Import the trait (or [`crate::prelude`]) to call them.
///
/// ```no_run
/// use redis_cluster_uring::{engine, AsyncCommands, Client, Config};
/// engine::start(async {
///     let client = Client::connect(&["127.0.0.1:7000"], Config::default()).await?;
///     client.set("greeting", "hello").await?;
///     let greeting: Option<String> = client.get("greeting").await?;
///     // Two at once on one client: both in flight together.
///     let (a, b) = tokio::join!(client.incr("a", 1), client.incr("b", 1));
///     println!("{greeting:?} {} {}", a?, b?);
///     Ok::<(), redis_cluster_uring::Error>(())
/// })
/// .unwrap();
/// ```
///
/// Code generic over the async clients takes `C: AsyncCommands`. Its futures are `Send`
/// when the client's are ([`SharedClient`]'s) and the caller knows the client's type.
pub trait AsyncCommands {
    /// Runs one command where the cluster routes it and converts the reply
    /// ([`Client::query`]).
    fn query<T: FromReply>(&self, command: Cmd) -> impl Future<Output = Result<T>>;

    /// Runs a pipeline: each command's result at its index, ignored ones left out
    /// ([`Client::execute`]).
    fn execute(&self, pipeline: &Pipeline) -> impl Future<Output = Result<Vec<Result<Value>>>>;

    /// Runs a pipeline and converts its replies into `T` as one array (a `Vec`, a tuple,
    /// `()`); fails on the first error ([`Client::query_pipeline`]).
    fn query_pipeline<T: FromReply>(&self, pipeline: &Pipeline) -> impl Future<Output = Result<T>>;

    /// Runs a [`Script`]: `EVALSHA`, then `EVAL` (which also loads it) when the node
    /// answers `NOSCRIPT`. Keys must share one slot; `()` for none.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{commands::Script, engine, AsyncCommands, Client, Config};
    /// engine::start(async {
    ///     let client = Client::connect(&["127.0.0.1:7000"], Config::default()).await?;
    ///     let add = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    ///     let n: i64 = client.invoke_script(&add, "counter", 5).await?;
    ///     println!("{n}");
    ///     Ok::<(), redis_cluster_uring::Error>(())
    /// })
    /// .unwrap();
    /// ```
    fn invoke_script<K: ToArgs, A: ToArgs, T: FromReply>(
        &self,
        script: &Script,
        keys: K,
        args: A,
    ) -> impl Future<Output = Result<T>> {
        // Both commands built now: the future holds no argument.
        let first = self.query::<Value>(evalsha(script.sha1(), &keys, &args));
        let fallback = eval(script.source(), keys, args);
        async move {
            match first.await {
                Err(e) if e.code() == Some("NOSCRIPT") => self.query(fallback).await,
                reply => T::from_reply(reply?),
            }
        }
    }

    every_family!(async_methods);
}

/// The typed commands of the blocking clients ([`blocking::Client`](crate::blocking::Client),
/// [`SharedBlocking`]): one required
/// [`query`](Commands::query) (and the pipeline calls), and a provided method per command
/// of this module, the same as [`AsyncCommands`]'s without `.await`.
///
/// ```no_run
/// use redis_cluster_uring::{blocking, Commands, Config};
/// let mut client = blocking::Client::connect(&["127.0.0.1:7000"], Config::default())?;
/// client.set("greeting", "hello")?;
/// let greeting: Option<String> = client.get("greeting")?;
/// # Ok::<(), redis_cluster_uring::Error>(())
/// ```
pub trait Commands {
    /// Runs one command where the cluster routes it and converts the reply
    /// ([`blocking::Client::query`](crate::blocking::Client::query)).
    fn query<T: FromReply>(&mut self, command: Cmd) -> Result<T>;

    /// Runs a pipeline: each command's result at its index, ignored ones left out.
    fn execute(&mut self, pipeline: &Pipeline) -> Result<Vec<Result<Value>>>;

    /// Runs a pipeline and converts its replies into `T` as one array (a `Vec`, a tuple,
    /// `()`); fails on the first error.
    fn query_pipeline<T: FromReply>(&mut self, pipeline: &Pipeline) -> Result<T>;

    /// Runs a [`Script`]: `EVALSHA`, then `EVAL` (which also loads it) when the node
    /// answers `NOSCRIPT`. Keys must share one slot; `()` for none.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{blocking, commands::Script, Commands, Config};
    /// let mut client = blocking::Client::connect(&["127.0.0.1:7000"], Config::default())?;
    /// let add = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    /// let n: i64 = client.invoke_script(&add, "counter", 5)?;
    /// # let _ = n;
    /// # Ok::<(), redis_cluster_uring::Error>(())
    /// ```
    fn invoke_script<K: ToArgs, A: ToArgs, T: FromReply>(
        &mut self,
        script: &Script,
        keys: K,
        args: A,
    ) -> Result<T> {
        match self.query::<Value>(evalsha(script.sha1(), &keys, &args)) {
            Err(e) if e.code() == Some("NOSCRIPT") => self.query(eval(script.source(), keys, args)),
            reply => T::from_reply(reply?),
        }
    }

    every_family!(blocking_methods);
}

/// Implements [`AsyncCommands`] for a client type by its inherent methods of the same
/// names (each client keeps those, with its own argument forms).
macro_rules! async_commands_by_inherent_methods {
    ($($t:ty),*) => {$(
        impl AsyncCommands for $t {
            fn query<T: FromReply>(&self, command: Cmd) -> impl Future<Output = Result<T>> {
                <$t>::query(self, command)
            }

            fn execute(
                &self,
                pipeline: &Pipeline,
            ) -> impl Future<Output = Result<Vec<Result<Value>>>> {
                <$t>::execute(self, pipeline)
            }

            fn query_pipeline<T: FromReply>(
                &self,
                pipeline: &Pipeline,
            ) -> impl Future<Output = Result<T>> {
                <$t>::query_pipeline(self, pipeline)
            }
        }
    )*};
}

/// Implements [`Commands`] the same way.
macro_rules! commands_by_inherent_methods {
    ($($t:ty),*) => {$(
        impl Commands for $t {
            fn query<T: FromReply>(&mut self, command: Cmd) -> Result<T> {
                <$t>::query(self, command)
            }

            fn execute(&mut self, pipeline: &Pipeline) -> Result<Vec<Result<Value>>> {
                <$t>::execute(self, pipeline)
            }

            fn query_pipeline<T: FromReply>(&mut self, pipeline: &Pipeline) -> Result<T> {
                <$t>::query_pipeline(self, pipeline)
            }
        }
    )*};
}

async_commands_by_inherent_methods!(Client, SharedClient);
commands_by_inherent_methods!(BlockingClient, SharedBlocking);

/// Appends `count` when there is one (`LPOP key [count]`).
fn with_count(mut c: Cmd, count: Option<usize>) -> Cmd {
    if let Some(n) = count {
        c.push_arg(n);
    }
    c
}

/// `name script numkeys key... arg...`: the keys are written once into a scratch command
/// to count them, since `numkeys` comes first.
fn script_call<S: ToArg, K: ToArgs, A: ToArgs>(name: &str, script: S, keys: K, args: A) -> Cmd {
    let mut written = Cmd::new();
    keys.write_args(&mut written);
    let mut c = cmd(name).arg(script).arg(written.len());
    for key in written.args() {
        c.push_arg(key);
    }
    c.arg_multi(args)
}

/// `(member, score)` pairs from a `WITHSCORES` reply: RESP3 sends an array of pairs,
/// RESP2 a flat `[member, score, member, score]` array.
fn scored<M: FromReply>(value: Value) -> Result<Vec<(M, f64)>> {
    let items = Vec::<Value>::from_reply(value)?;
    if items.iter().all(|v| matches!(v, Value::Array(_))) {
        return items.into_iter().map(<(M, f64)>::from_reply).collect();
    }
    if items.len() % 2 != 0 {
        return Err(Error::new(
            ErrorKind::TypeMismatch,
            "expected member and score pairs, got an odd count",
        ));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(member), Some(score)) = (it.next(), it.next()) {
        out.push((M::from_reply(member)?, f64::from_reply(score)?));
    }
    Ok(out)
}

/// The options of `SET` beyond key and value: expiry, condition, `GET`.
///
/// ```
/// use redis_cluster_uring::commands::{self, SetOptions};
/// let c = commands::set_options("k", "v", SetOptions::new().nx().px(1500).get());
/// let args: Vec<&[u8]> = c.args().collect();
/// assert_eq!(args, vec![&b"SET"[..], b"k", b"v", b"NX", b"GET", b"PX", b"1500"]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetOptions {
    expiry: Option<Expiry>,
    condition: Option<Condition>,
    get: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Seconds(u64),
    Millis(u64),
    AtSeconds(u64),
    AtMillis(u64),
    KeepTtl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    NotExists,
    Exists,
}

impl SetOptions {
    /// No options: a plain `SET`.
    pub const fn new() -> SetOptions {
        SetOptions {
            expiry: None,
            condition: None,
            get: false,
        }
    }

    /// `EX seconds`: expire after that many seconds.
    pub const fn ex(mut self, seconds: u64) -> SetOptions {
        self.expiry = Some(Expiry::Seconds(seconds));
        self
    }

    /// `PX milliseconds`: expire after that many milliseconds.
    pub const fn px(mut self, millis: u64) -> SetOptions {
        self.expiry = Some(Expiry::Millis(millis));
        self
    }

    /// `EXAT unix-seconds`: expire at that time.
    pub const fn exat(mut self, unix_seconds: u64) -> SetOptions {
        self.expiry = Some(Expiry::AtSeconds(unix_seconds));
        self
    }

    /// `PXAT unix-milliseconds`: expire at that time.
    pub const fn pxat(mut self, unix_millis: u64) -> SetOptions {
        self.expiry = Some(Expiry::AtMillis(unix_millis));
        self
    }

    /// `KEEPTTL`: keep the key's current timeout.
    pub const fn keep_ttl(mut self) -> SetOptions {
        self.expiry = Some(Expiry::KeepTtl);
        self
    }

    /// `NX`: set only when the key does not exist.
    pub const fn nx(mut self) -> SetOptions {
        self.condition = Some(Condition::NotExists);
        self
    }

    /// `XX`: set only when the key exists.
    pub const fn xx(mut self) -> SetOptions {
        self.condition = Some(Condition::Exists);
        self
    }

    /// `GET`: reply with the old value (or nil) instead of `OK`.
    pub const fn get(mut self) -> SetOptions {
        self.get = true;
        self
    }

    /// Appends the options in the order the `SET` syntax gives.
    fn write_to(&self, c: &mut Cmd) {
        match self.condition {
            Some(Condition::NotExists) => c.push_arg("NX"),
            Some(Condition::Exists) => c.push_arg("XX"),
            None => c,
        };
        if self.get {
            c.push_arg("GET");
        }
        match self.expiry {
            Some(Expiry::Seconds(n)) => c.push_arg("EX").push_arg(n),
            Some(Expiry::Millis(n)) => c.push_arg("PX").push_arg(n),
            Some(Expiry::AtSeconds(n)) => c.push_arg("EXAT").push_arg(n),
            Some(Expiry::AtMillis(n)) => c.push_arg("PXAT").push_arg(n),
            Some(Expiry::KeepTtl) => c.push_arg("KEEPTTL"),
            None => c,
        };
    }
}

/// A Lua script with its SHA1, for [`Client::invoke_script`]: `EVALSHA` first, `EVAL` when
/// the node does not have it yet.
///
/// ```
/// use redis_cluster_uring::commands::Script;
/// let s = Script::new("return 1");
/// assert_eq!(s.sha1(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    source: String,
    sha1: String,
}

impl Script {
    /// A script from its Lua source; computes the SHA1 the server will know it by.
    pub fn new(source: impl Into<String>) -> Script {
        let source = source.into();
        let sha1 = hex(&sha1(source.as_bytes()));
        Script { source, sha1 }
    }

    /// The Lua source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The SHA1 of the source, lower-case hex, as `SCRIPT LOAD` answers it.
    pub fn sha1(&self) -> &str {
        &self.sha1
    }
}

/// SHA-1 (FIPS 180-4), for script digests only: Redis names scripts by it, and this is
/// 30 lines against a new dependency. Not for anything that needs collision resistance.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    // Padding: 0x80, zeros up to 56 mod 64, then the length in bits, big-endian.
    let mut msg = Vec::with_capacity(data.len() + 72);
    msg.extend_from_slice(data);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64).wrapping_mul(8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (h, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *h = h.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, v) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn args(c: &Cmd) -> Vec<String> {
        c.args()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    fn bulk(s: &'static str) -> Value {
        Value::Bulk(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn strings() {
        assert_eq!(args(&get("k")), ["GET", "k"]);
        assert_eq!(args(&set("k", 1)), ["SET", "k", "1"]);
        assert_eq!(args(&set_ex("k", "v", 10)), ["SET", "k", "v", "EX", "10"]);
        assert_eq!(args(&pset_ex("k", "v", 10)), ["SET", "k", "v", "PX", "10"]);
        assert_eq!(args(&set_nx("k", "v")), ["SET", "k", "v", "NX"]);
        assert_eq!(args(&getset("k", "v")), ["GETSET", "k", "v"]);
        assert_eq!(args(&get_del("k")), ["GETDEL", "k"]);
        assert_eq!(args(&mget(["a", "b"])), ["MGET", "a", "b"]);
        assert_eq!(args(&mget("a")), ["MGET", "a"]);
        assert_eq!(
            args(&mset(&[("a", 1), ("b", 2)])),
            ["MSET", "a", "1", "b", "2"]
        );
        assert_eq!(args(&incr("n", 1)), ["INCRBY", "n", "1"]);
        assert_eq!(args(&decr("n", 2)), ["DECRBY", "n", "2"]);
        assert_eq!(args(&incr_by_float("n", 0.5)), ["INCRBYFLOAT", "n", "0.5"]);
        assert_eq!(args(&append("k", "x")), ["APPEND", "k", "x"]);
        assert_eq!(args(&strlen("k")), ["STRLEN", "k"]);
    }

    #[test]
    fn set_options_follow_the_set_syntax() {
        let o = SetOptions::new();
        assert_eq!(args(&set_options("k", "v", o)), ["SET", "k", "v"]);
        assert_eq!(
            args(&set_options("k", "v", o.xx().ex(5))),
            ["SET", "k", "v", "XX", "EX", "5"]
        );
        assert_eq!(
            args(&set_options("k", "v", o.exat(7).get())),
            ["SET", "k", "v", "GET", "EXAT", "7"]
        );
        assert_eq!(
            args(&set_options("k", "v", o.pxat(8))),
            ["SET", "k", "v", "PXAT", "8"]
        );
        // The last expiry and the last condition win.
        assert_eq!(
            args(&set_options("k", "v", o.ex(1).nx().keep_ttl())),
            ["SET", "k", "v", "NX", "KEEPTTL"]
        );
        const ONCE: SetOptions = SetOptions::new().nx().px(100);
        assert_eq!(
            args(&set_options("k", "v", ONCE)),
            ["SET", "k", "v", "NX", "PX", "100"]
        );
    }

    #[test]
    fn keys_and_expiry() {
        let keys = vec!["a".to_string(), "b".to_string()];
        assert_eq!(args(&del(&keys)), ["DEL", "a", "b"]);
        assert_eq!(args(&del("a")), ["DEL", "a"]);
        assert_eq!(args(&unlink(&["a", "b"][..])), ["UNLINK", "a", "b"]);
        assert_eq!(args(&exists("a")), ["EXISTS", "a"]);
        assert_eq!(args(&exists_count(keys)), ["EXISTS", "a", "b"]);
        assert_eq!(args(&expire("k", 5)), ["EXPIRE", "k", "5"]);
        assert_eq!(args(&pexpire("k", 5)), ["PEXPIRE", "k", "5"]);
        assert_eq!(args(&expire_at("k", 9)), ["EXPIREAT", "k", "9"]);
        assert_eq!(args(&pexpire_at("k", 9)), ["PEXPIREAT", "k", "9"]);
        assert_eq!(args(&ttl("k")), ["TTL", "k"]);
        assert_eq!(args(&pttl("k")), ["PTTL", "k"]);
        assert_eq!(args(&persist("k")), ["PERSIST", "k"]);
        assert_eq!(args(&type_of("k")), ["TYPE", "k"]);
        assert_eq!(args(&rename("a", "b")), ["RENAME", "a", "b"]);
        assert_eq!(args(&rename_nx("a", "b")), ["RENAMENX", "a", "b"]);
    }

    #[test]
    fn hashes() {
        assert_eq!(args(&hset("h", "f", 1)), ["HSET", "h", "f", "1"]);
        assert_eq!(
            args(&hset_multiple("h", &[("a", "1"), ("b", "2")])),
            ["HSET", "h", "a", "1", "b", "2"]
        );
        assert_eq!(args(&hset_nx("h", "f", 1)), ["HSETNX", "h", "f", "1"]);
        assert_eq!(args(&hget("h", "f")), ["HGET", "h", "f"]);
        assert_eq!(args(&hmget("h", vec!["a", "b"])), ["HMGET", "h", "a", "b"]);
        assert_eq!(args(&hgetall("h")), ["HGETALL", "h"]);
        assert_eq!(args(&hdel("h", ["a", "b"])), ["HDEL", "h", "a", "b"]);
        assert_eq!(args(&hexists("h", "f")), ["HEXISTS", "h", "f"]);
        assert_eq!(args(&hincr_by("h", "f", -3)), ["HINCRBY", "h", "f", "-3"]);
        assert_eq!(args(&hkeys("h")), ["HKEYS", "h"]);
        assert_eq!(args(&hvals("h")), ["HVALS", "h"]);
        assert_eq!(args(&hlen("h")), ["HLEN", "h"]);
    }

    #[test]
    fn lists() {
        assert_eq!(
            args(&lpush("l", vec![1, 2, 3])),
            ["LPUSH", "l", "1", "2", "3"]
        );
        assert_eq!(args(&rpush("l", "x")), ["RPUSH", "l", "x"]);
        assert_eq!(args(&lpop("l", None)), ["LPOP", "l"]);
        assert_eq!(args(&rpop("l", Some(2))), ["RPOP", "l", "2"]);
        assert_eq!(args(&lrange("l", 0, -1)), ["LRANGE", "l", "0", "-1"]);
        assert_eq!(args(&llen("l")), ["LLEN", "l"]);
        assert_eq!(args(&lindex("l", -1)), ["LINDEX", "l", "-1"]);
        assert_eq!(args(&lset("l", 0, "v")), ["LSET", "l", "0", "v"]);
        assert_eq!(args(&lrem("l", -2, "v")), ["LREM", "l", "-2", "v"]);
        assert_eq!(args(&ltrim("l", 1, 3)), ["LTRIM", "l", "1", "3"]);
    }

    #[test]
    fn sets() {
        assert_eq!(args(&sadd("s", vec![1, 2])), ["SADD", "s", "1", "2"]);
        assert_eq!(args(&sadd("s", "one")), ["SADD", "s", "one"]);
        assert_eq!(args(&srem("s", ["a"])), ["SREM", "s", "a"]);
        assert_eq!(args(&smembers("s")), ["SMEMBERS", "s"]);
        assert_eq!(args(&sismember("s", "a")), ["SISMEMBER", "s", "a"]);
        assert_eq!(args(&scard("s")), ["SCARD", "s"]);
        assert_eq!(args(&spop("s")), ["SPOP", "s"]);
        assert_eq!(args(&sinter(["a", "b"])), ["SINTER", "a", "b"]);
        assert_eq!(args(&sunion(["a", "b"])), ["SUNION", "a", "b"]);
        assert_eq!(args(&sdiff(["a", "b"])), ["SDIFF", "a", "b"]);
    }

    #[test]
    fn sorted_sets() {
        assert_eq!(args(&zadd("z", "m", 1.5)), ["ZADD", "z", "1.5", "m"]);
        assert_eq!(
            args(&zadd_multiple("z", &[(1, "a"), (2, "b")])),
            ["ZADD", "z", "1", "a", "2", "b"]
        );
        assert_eq!(args(&zrem("z", ["a", "b"])), ["ZREM", "z", "a", "b"]);
        assert_eq!(args(&zscore("z", "m")), ["ZSCORE", "z", "m"]);
        assert_eq!(args(&zincr_by("z", "m", 2.0)), ["ZINCRBY", "z", "2", "m"]);
        assert_eq!(args(&zrange("z", 0, -1)), ["ZRANGE", "z", "0", "-1"]);
        assert_eq!(
            args(&zrange_withscores("z", 0, -1)),
            ["ZRANGE", "z", "0", "-1", "WITHSCORES"]
        );
        assert_eq!(
            args(&zrevrange("z", 0, 1)),
            ["ZRANGE", "z", "0", "1", "REV"]
        );
        assert_eq!(
            args(&zrevrange_withscores("z", 0, 1)),
            ["ZRANGE", "z", "0", "1", "REV", "WITHSCORES"]
        );
        assert_eq!(
            args(&zrangebyscore("z", "-inf", "(2")),
            ["ZRANGE", "z", "-inf", "(2", "BYSCORE"]
        );
        assert_eq!(
            args(&zrangebyscore_withscores("z", 1, 2)),
            ["ZRANGE", "z", "1", "2", "BYSCORE", "WITHSCORES"]
        );
        assert_eq!(args(&zcard("z")), ["ZCARD", "z"]);
        assert_eq!(args(&zrank("z", "m")), ["ZRANK", "z", "m"]);
        assert_eq!(args(&zrevrank("z", "m")), ["ZREVRANK", "z", "m"]);
        assert_eq!(args(&zcount("z", 0, "+inf")), ["ZCOUNT", "z", "0", "+inf"]);
    }

    #[test]
    fn scripts_and_publishing() {
        assert_eq!(args(&eval("return 1", (), ())), ["EVAL", "return 1", "0"]);
        assert_eq!(
            args(&eval("s", ["{t}a", "{t}b"], vec![1, 2, 3])),
            ["EVAL", "s", "2", "{t}a", "{t}b", "1", "2", "3"]
        );
        assert_eq!(
            args(&evalsha("abc", "k", "x")),
            ["EVALSHA", "abc", "1", "k", "x"]
        );
        assert_eq!(args(&script_load("s")), ["SCRIPT", "LOAD", "s"]);
        assert_eq!(args(&publish("ch", "m")), ["PUBLISH", "ch", "m"]);
        assert_eq!(args(&spublish("ch", "m")), ["SPUBLISH", "ch", "m"]);
        // Routing sees the keys after numkeys.
        let c = eval("s", ["{t}a", "{t}b"], "argv");
        assert_eq!(
            crate::core::route::command_keys(&c),
            [&b"{t}a"[..], b"{t}b"]
        );
    }

    #[test]
    // A borrowed array is the form callers write with a `Vec` or slice they keep.
    #[allow(clippy::needless_borrows_for_generic_args)]
    fn encodes_exact_resp() {
        assert_eq!(
            &del(&["a", "b"]).to_bytes()[..],
            b"*3\r\n$3\r\nDEL\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        // Bytes stay one binary argument, inside a list too.
        assert_eq!(
            &rpush("l", vec![b"\x00\r\n".as_slice()]).to_bytes()[..],
            b"*3\r\n$5\r\nRPUSH\r\n$1\r\nl\r\n$3\r\n\x00\r\n\r\n"
        );
        assert_eq!(args(&set("k", b"raw".to_vec())), ["SET", "k", "raw"]);
    }

    #[test]
    fn pipeline_methods_add_the_same_commands() {
        let mut pipe = Pipeline::new();
        pipe.hset("h", "f", 1)
            .sadd("s", vec![1, 2])
            .del(["a", "b"])
            .zrange_withscores("z", 0, -1);
        assert_eq!(
            pipe.commands(),
            &[
                hset("h", "f", 1),
                sadd("s", vec![1, 2]),
                del(["a", "b"]),
                zrange_withscores("z", 0, -1)
            ]
        );
    }

    #[test]
    fn scores_from_either_protocol() {
        let resp3 = Value::Array(vec![
            Value::Array(vec![bulk("a"), Value::Double(1.0)]),
            Value::Array(vec![bulk("b"), Value::Double(2.5)]),
        ]);
        let resp2 = Value::Array(vec![bulk("a"), bulk("1"), bulk("b"), bulk("2.5")]);
        for v in [resp3, resp2] {
            let got: Vec<(String, f64)> = scored(v).unwrap();
            assert_eq!(got, vec![("a".to_string(), 1.0), ("b".to_string(), 2.5)]);
        }
        assert!(scored::<String>(Value::Array(vec![])).unwrap().is_empty());
        assert!(scored::<String>(Value::Nil).unwrap().is_empty());
        for bad in [
            Value::Array(vec![bulk("a")]),
            Value::Array(vec![bulk("a"), bulk("not a number")]),
            Value::Int(3),
        ] {
            assert_eq!(
                scored::<String>(bad).unwrap_err().kind(),
                ErrorKind::TypeMismatch
            );
        }
        let e = scored::<String>(Value::Error(Bytes::from_static(b"WRONGTYPE x"))).unwrap_err();
        assert_eq!(e.code(), Some("WRONGTYPE"));
    }

    #[test]
    fn sha1_matches_the_standard_vectors() {
        let cases: [(&[u8], &str); 4] = [
            (b"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            (b"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
            ),
            (
                b"The quick brown fox jumps over the lazy dog",
                "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex(&sha1(input)), want);
        }
        // A million 'a's: many blocks; and lengths around the padding boundary.
        assert_eq!(
            hex(&sha1(&vec![b'a'; 1_000_000])),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
        for (n, want) in [
            (55, "cef734ba81a024479e09eb5a75b6ddae62e6abf1"),
            (56, "901305367c259952f4e7af8323f480d59f81335b"),
            (63, "0ddc4e0cccd9a12850deb5abb0853a4425559fec"),
            (64, "bb2fa3ee7afb9f54c6dfb5d021f14b1ffe40c163"),
            (65, "78c741ddc482e4cdf8c474a0876347a0905b6233"),
        ] {
            assert_eq!(hex(&sha1(&vec![b'x'; n])), want, "{n} bytes");
        }
        assert_eq!(Script::new("return 1").source(), "return 1");
    }
}
