//! The typed helpers of `src/commands.rs` against a real cluster: every family, typed
//! replies (tuples, `Vec`, maps, sets, `Option`, `f64` scores), keys on every node, both
//! protocols for the replies whose shape differs, and a pipeline built from the helpers.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use redis_cluster_uring::commands::{self, Script, SetOptions};
use redis_cluster_uring::handshake::Protocol;
use redis_cluster_uring::AsyncCommands;
use redis_cluster_uring::{slot_for_key, Config, ErrorKind, FromReply, Pipeline, Value};
use support::{client, client_with, cluster, run};

/// Keys that land on many slots (and so on every node of a 3-node cluster).
fn spread(prefix: &str, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}:{i}")).collect();
    let slots: HashSet<u16> = keys
        .iter()
        .map(|k| slot_for_key(k.as_bytes()).get())
        .collect();
    assert!(slots.len() > 1, "the keys should span slots");
    keys
}

#[test]
fn strings_keys_and_expiry() {
    let cluster = cluster(3, 0);
    run(async {
        let client = client(&cluster).await;

        // GET / SET in the caller's types.
        client.set("s:n", 42).await.unwrap();
        let n: i64 = client.get("s:n").await.unwrap();
        assert_eq!(n, 42);
        let raw: Vec<u8> = client.get("s:n").await.unwrap();
        assert_eq!(raw, b"42");
        let missing: Option<String> = client.get("s:missing").await.unwrap();
        assert_eq!(missing, None);

        // SET options: NX, XX, GET and expiry.
        let set: bool = client
            .set_options("s:once", "first", SetOptions::new().nx())
            .await
            .unwrap();
        assert!(set);
        let set: bool = client
            .set_options("s:once", "second", SetOptions::new().nx())
            .await
            .unwrap();
        assert!(!set, "NX on an existing key does not set");
        let old: Option<String> = client
            .set_options("s:once", "third", SetOptions::new().xx().get().ex(100))
            .await
            .unwrap();
        assert_eq!(old.as_deref(), Some("first"));
        let ttl = client.ttl("s:once").await.unwrap();
        assert!((1..=100).contains(&ttl), "ttl {ttl}");
        let kept: bool = client
            .set_options("s:once", "fourth", SetOptions::new().keep_ttl())
            .await
            .unwrap();
        assert!(kept);
        assert!(client.ttl("s:once").await.unwrap() > 0, "KEEPTTL kept it");
        let set: bool = client
            .set_options("s:none", "x", SetOptions::new().xx())
            .await
            .unwrap();
        assert!(!set, "XX on a missing key does not set");
        assert!(client.set_nx("s:nx", 1).await.unwrap());
        assert!(!client.set_nx("s:nx", 2).await.unwrap());

        client.set_ex("s:ex", "v", 100).await.unwrap();
        assert!((1..=100).contains(&client.ttl("s:ex").await.unwrap()));
        client.pset_ex("s:px", "v", 100_000).await.unwrap();
        assert!((1..=100_000).contains(&client.pttl("s:px").await.unwrap()));

        // GETSET, GETDEL.
        let old: Option<String> = client.getset("s:n", 7).await.unwrap();
        assert_eq!(old.as_deref(), Some("42"));
        let taken: Option<i64> = client.get_del("s:n").await.unwrap();
        assert_eq!(taken, Some(7));
        assert!(!client.exists("s:n").await.unwrap());

        // MSET / MGET across slots, from a Vec and a slice; a tuple of exact arity.
        let keys = spread("m", 30);
        let pairs: Vec<(String, usize)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        client.mset(&pairs).await.unwrap();
        let values: Vec<Option<usize>> = client.mget(&keys).await.unwrap();
        assert_eq!(values, (0..30).map(Some).collect::<Vec<_>>());
        let (a, b, none): (String, i64, Option<String>) =
            client.mget(["m:0", "m:29", "m:absent"]).await.unwrap();
        assert_eq!((a.as_str(), b, none), ("0", 29, None));
        let one: Vec<String> = client.mget("m:3").await.unwrap();
        assert_eq!(one, ["3"]);

        // Counters and string edits.
        assert_eq!(client.incr("s:c", 5).await.unwrap(), 5);
        assert_eq!(client.decr("s:c", 2).await.unwrap(), 3);
        assert_eq!(client.incr_by_float("s:c", 0.5).await.unwrap(), 3.5);
        assert_eq!(client.append("s:str", "ab").await.unwrap(), 2);
        assert_eq!(client.append("s:str", "cd").await.unwrap(), 4);
        assert_eq!(client.strlen("s:str").await.unwrap(), 4);
        assert_eq!(client.strlen("s:absent").await.unwrap(), 0);

        // EXISTS / DEL / UNLINK across slots.
        assert!(client.exists(&keys[0]).await.unwrap());
        assert_eq!(client.exists_count(&keys).await.unwrap(), 30);
        assert_eq!(client.exists_count(["m:0", "m:0"]).await.unwrap(), 2);
        assert_eq!(client.del(&keys[..10]).await.unwrap(), 10);
        assert_eq!(client.unlink(keys[10..20].to_vec()).await.unwrap(), 10);
        assert_eq!(client.del(&keys).await.unwrap(), 10);
        assert_eq!(client.del("m:0").await.unwrap(), 0);

        // Expiry.
        client.set("e:k", 1).await.unwrap();
        assert_eq!(client.ttl("e:k").await.unwrap(), -1);
        assert_eq!(client.ttl("e:absent").await.unwrap(), -2);
        assert!(client.expire("e:k", 100).await.unwrap());
        assert!(client.persist("e:k").await.unwrap());
        assert_eq!(client.pttl("e:k").await.unwrap(), -1);
        assert!(client.pexpire("e:k", 100_000).await.unwrap());
        assert!(client.pttl("e:k").await.unwrap() > 0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(client.expire_at("e:k", now + 1000).await.unwrap());
        assert!(client.ttl("e:k").await.unwrap() > 100);
        assert!(client.pexpire_at("e:k", (now + 1000) * 1000).await.unwrap());
        assert!(!client.expire("e:absent", 10).await.unwrap());
        assert!(!client.persist("e:absent").await.unwrap());

        // TYPE and RENAME (same slot through a hash tag).
        assert_eq!(client.type_of("e:k").await.unwrap(), "string");
        assert_eq!(client.type_of("e:absent").await.unwrap(), "none");
        client.set("{r}a", "v").await.unwrap();
        client.rename("{r}a", "{r}b").await.unwrap();
        assert!(!client.exists("{r}a").await.unwrap());
        client.set("{r}c", "w").await.unwrap();
        assert!(!client.rename_nx("{r}b", "{r}c").await.unwrap());
        assert!(client.rename_nx("{r}b", "{r}d").await.unwrap());
        let e = client.rename("{r}d", "{other}d").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CrossSlot);
    });
}

#[test]
fn hashes_lists_and_sets() {
    let cluster = cluster(3, 0);
    run(async {
        let client = client(&cluster).await;

        // Hashes.
        assert_eq!(client.hset("h", "name", "Ada").await.unwrap(), 1);
        assert_eq!(
            client
                .hset_multiple("h", &[("lang", "en"), ("visits", "3"), ("name", "Ada L")])
                .await
                .unwrap(),
            2
        );
        assert!(client.hset_nx("h", "born", 1815).await.unwrap());
        assert!(!client.hset_nx("h", "born", 1816).await.unwrap());
        let name: Option<String> = client.hget("h", "name").await.unwrap();
        assert_eq!(name.as_deref(), Some("Ada L"));
        let born = client.hget::<_, _, i64>("h", "born").await.unwrap();
        assert_eq!(born, 1815);
        let none: Option<String> = client.hget("h", "nope").await.unwrap();
        assert_eq!(none, None);
        let got: Vec<Option<String>> = client.hmget("h", vec!["lang", "nope"]).await.unwrap();
        assert_eq!(got, [Some("en".to_string()), None]);
        let (lang, visits): (String, u32) = client.hmget("h", ["lang", "visits"]).await.unwrap();
        assert_eq!((lang.as_str(), visits), ("en", 3));
        let all: HashMap<String, String> = client.hgetall("h").await.unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all["lang"], "en");
        let sorted: BTreeMap<String, String> = client.hgetall("h").await.unwrap();
        assert_eq!(
            sorted.keys().collect::<Vec<_>>(),
            ["born", "lang", "name", "visits"]
        );
        assert_eq!(client.hincr_by("h", "visits", 4).await.unwrap(), 7);
        assert!(client.hexists("h", "visits").await.unwrap());
        let mut fields: Vec<String> = client.hkeys("h").await.unwrap();
        fields.sort();
        assert_eq!(fields, ["born", "lang", "name", "visits"]);
        let values: HashSet<String> = client.hvals("h").await.unwrap();
        assert!(values.contains("7") && values.contains("1815"));
        assert_eq!(client.hdel("h", ["born", "nope"]).await.unwrap(), 1);
        assert_eq!(client.hdel("h", "lang").await.unwrap(), 1);
        assert_eq!(client.hlen("h").await.unwrap(), 2);
        let empty: HashMap<String, String> = client.hgetall("h:absent").await.unwrap();
        assert!(empty.is_empty());

        // Lists.
        assert_eq!(client.rpush("l", vec!["b", "c", "d"]).await.unwrap(), 3);
        assert_eq!(client.lpush("l", &["a"]).await.unwrap(), 4);
        assert_eq!(client.rpush("l", "b").await.unwrap(), 5);
        let all: Vec<String> = client.lrange("l", 0, -1).await.unwrap();
        assert_eq!(all, ["a", "b", "c", "d", "b"]);
        assert_eq!(client.llen("l").await.unwrap(), 5);
        let last: Option<String> = client.lindex("l", -1).await.unwrap();
        assert_eq!(last.as_deref(), Some("b"));
        let out: Option<String> = client.lindex("l", 99).await.unwrap();
        assert_eq!(out, None);
        client.lset("l", 0, "A").await.unwrap();
        assert_eq!(client.lrem("l", 0, "b").await.unwrap(), 2);
        let all: Vec<String> = client.lrange("l", 0, -1).await.unwrap();
        assert_eq!(all, ["A", "c", "d"]);
        client.rpush("l", [1, 2, 3]).await.unwrap();
        client.ltrim("l", 1, -1).await.unwrap();
        let first: Option<String> = client.lpop("l", None).await.unwrap();
        assert_eq!(first.as_deref(), Some("c"));
        let two: Vec<String> = client.lpop("l", Some(2)).await.unwrap();
        assert_eq!(two, ["d", "1"]);
        let tail: Option<i64> = client.rpop("l", None).await.unwrap();
        assert_eq!(tail, Some(3));
        let rest: Option<Vec<i64>> = client.rpop("l", Some(5)).await.unwrap();
        assert_eq!(rest, Some(vec![2]));
        let nothing: Option<String> = client.lpop("l", None).await.unwrap();
        assert_eq!(nothing, None);
        let nothing: Option<Vec<String>> = client.lpop("l", Some(3)).await.unwrap();
        assert_eq!(nothing, None);

        // Sets.
        assert_eq!(client.sadd("s", vec![1, 2, 3]).await.unwrap(), 3);
        assert_eq!(client.sadd("s", [3, 4]).await.unwrap(), 1);
        assert_eq!(client.sadd("s", 5).await.unwrap(), 1);
        assert_eq!(client.srem("s", vec![5, 6]).await.unwrap(), 1);
        let members: HashSet<i64> = client.smembers("s").await.unwrap();
        assert_eq!(members, HashSet::from([1, 2, 3, 4]));
        assert!(client.sismember("s", 2).await.unwrap());
        assert!(!client.sismember("s", 9).await.unwrap());
        assert_eq!(client.scard("s").await.unwrap(), 4);
        let popped: Option<i64> = client.spop("s").await.unwrap();
        assert!(popped.is_some_and(|m| members.contains(&m)));
        assert_eq!(client.scard("s").await.unwrap(), 3);
        let none: Option<String> = client.spop("s:absent").await.unwrap();
        assert_eq!(none, None);

        client.sadd("{t}a", ["x", "y", "z"]).await.unwrap();
        client.sadd("{t}b", ["y", "z", "w"]).await.unwrap();
        let inter: HashSet<String> = client.sinter(["{t}a", "{t}b"]).await.unwrap();
        assert_eq!(inter, HashSet::from(["y".into(), "z".into()]));
        let union: HashSet<String> = client.sunion(["{t}a", "{t}b"]).await.unwrap();
        assert_eq!(union.len(), 4);
        let diff: Vec<String> = client.sdiff(vec!["{t}a", "{t}b"]).await.unwrap();
        assert_eq!(diff, ["x"]);
        let e = client
            .sinter::<_, HashSet<String>>(["{t}a", "{u}b"])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CrossSlot);

        // A server error for the wrong type is a typed error, not a conversion panic.
        let e = client.llen("s").await.unwrap_err();
        assert_eq!(e.code(), Some("WRONGTYPE"));
    });
}

#[test]
fn sorted_sets_on_both_protocols() {
    let cluster = cluster(3, 0);
    run(async {
        for protocol in [Protocol::Resp3, Protocol::Resp2] {
            let client = client_with(&cluster, Config::default().protocol(protocol)).await;
            let z = format!("z:{protocol:?}");
            assert_eq!(client.zadd(&z, "a", 1).await.unwrap(), 1);
            assert_eq!(
                client
                    .zadd_multiple(&z, &[(2.5, "b"), (4.0, "c"), (-1.0, "d")])
                    .await
                    .unwrap(),
                3
            );
            assert_eq!(client.zadd(&z, "a", 1.5).await.unwrap(), 0, "score update");
            assert_eq!(client.zscore(&z, "a").await.unwrap(), Some(1.5));
            assert_eq!(client.zscore(&z, "nope").await.unwrap(), None);
            assert_eq!(client.zincr_by(&z, "c", 0.25).await.unwrap(), 4.25);

            let ranked: Vec<String> = client.zrange(&z, 0, -1).await.unwrap();
            assert_eq!(ranked, ["d", "a", "b", "c"]);
            let scored: Vec<(String, f64)> = client.zrange_withscores(&z, 0, 1).await.unwrap();
            assert_eq!(scored, [("d".to_string(), -1.0), ("a".to_string(), 1.5)]);
            let top: Vec<String> = client.zrevrange(&z, 0, 0).await.unwrap();
            assert_eq!(top, ["c"]);
            let top: Vec<(String, f64)> = client.zrevrange_withscores(&z, 0, 1).await.unwrap();
            assert_eq!(top, [("c".to_string(), 4.25), ("b".to_string(), 2.5)]);
            let by_score: Vec<String> = client.zrangebyscore(&z, "(1.5", "+inf").await.unwrap();
            assert_eq!(by_score, ["b", "c"]);
            let by_score: Vec<(String, f64)> =
                client.zrangebyscore_withscores(&z, 0, 3).await.unwrap();
            assert_eq!(by_score, [("a".to_string(), 1.5), ("b".to_string(), 2.5)]);
            // The raw replies really differ: pairs on RESP3, a flat array on RESP2.
            let raw: Vec<Value> = client
                .query(commands::zrange_withscores(&z, 0, -1))
                .await
                .unwrap();
            assert_eq!(
                raw.iter().all(|v| matches!(v, Value::Array(_))),
                protocol == Protocol::Resp3,
                "{raw:?}"
            );
            let empty: Vec<(String, f64)> =
                client.zrange_withscores("z:absent", 0, -1).await.unwrap();
            assert!(empty.is_empty());

            assert_eq!(client.zcard(&z).await.unwrap(), 4);
            assert_eq!(client.zrank(&z, "a").await.unwrap(), Some(1));
            assert_eq!(client.zrevrank(&z, "a").await.unwrap(), Some(2));
            assert_eq!(client.zrank(&z, "nope").await.unwrap(), None);
            assert_eq!(client.zcount(&z, "-inf", 2).await.unwrap(), 2);
            assert_eq!(client.zrem(&z, ["a", "nope"]).await.unwrap(), 1);
            assert_eq!(client.zrem(&z, "d").await.unwrap(), 1);
            assert_eq!(client.zcard(&z).await.unwrap(), 2);

            // Maps convert the same on both protocols too.
            client
                .hset_multiple(format!("h:{protocol:?}"), &[("f", 1), ("g", 2)])
                .await
                .unwrap();
            let h: HashMap<String, i64> = client.hgetall(format!("h:{protocol:?}")).await.unwrap();
            assert_eq!(h, HashMap::from([("f".into(), 1), ("g".into(), 2)]));
        }
    });
}

#[test]
fn scripts_and_publishing() {
    let cluster = cluster(3, 0);
    run(async {
        let client = client(&cluster).await;

        let n: i64 = client.eval("return 7", (), ()).await.unwrap();
        assert_eq!(n, 7);
        let (key, arg): (String, i64) = client
            .eval("return {KEYS[1], tonumber(ARGV[1]) + 1}", "k", 41)
            .await
            .unwrap();
        assert_eq!((key.as_str(), arg), ("k", 42));
        let both: Vec<String> = client
            .eval(
                "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[2]); \
                 return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}",
                ["{sc}a", "{sc}b"],
                vec!["1", "2"],
            )
            .await
            .unwrap();
        assert_eq!(both, ["1", "2"]);
        let e = client
            .eval::<_, _, _, Value>("return 1", ["{sc}a", "{other}b"], ())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CrossSlot);

        // A script the nodes do not know: EVALSHA fails with NOSCRIPT, invoke_script falls
        // back to EVAL, which loads it on the key's node, so EVALSHA works there after.
        let add = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
        let e = client
            .evalsha::<_, _, _, i64>(add.sha1(), "sc:counter", 1)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("NOSCRIPT"));
        let n: i64 = client.invoke_script(&add, "sc:counter", 5).await.unwrap();
        assert_eq!(n, 5);
        let n: i64 = client.evalsha(add.sha1(), "sc:counter", 1).await.unwrap();
        assert_eq!(n, 6);
        let n: i64 = client
            .invoke_script(&add, ["sc:counter"], [4])
            .await
            .unwrap();
        assert_eq!(n, 10);
        // Our SHA1 is the server's.
        let script = Script::new("return 'loaded'");
        assert_eq!(
            client.script_load(script.source()).await.unwrap(),
            script.sha1()
        );
        let loaded: String = client.invoke_script(&script, (), ()).await.unwrap();
        assert_eq!(loaded, "loaded");
        // An error inside the script is the caller's error, not a retry.
        let bad = Script::new("return redis.call('NOSUCHCOMMAND')");
        assert!(client
            .invoke_script::<_, _, Value>(&bad, (), ())
            .await
            .is_err());

        // Nobody listens: zero receivers, on any node and on the channel's shard.
        assert_eq!(client.publish("news", "hello").await.unwrap(), 0);
        assert_eq!(client.spublish("shard-news", b"bytes").await.unwrap(), 0);
    });
}

#[test]
fn a_pipeline_built_from_the_helpers() {
    let cluster = cluster(3, 0);
    run(async {
        let client = client(&cluster).await;
        let keys = spread("p", 20);
        let mut pipe = Pipeline::new();
        pipe.set("p:s", "v")
            .incr("p:n", 3)
            .mset(&[("p:a", 1), ("p:b", 2)])
            .mget(["p:a", "p:b", "p:none"])
            .hset_multiple("p:h", &[("f", "1"), ("g", "2")])
            .hgetall("p:h")
            .sadd("p:set", vec!["x", "y"])
            .smembers("p:set")
            .zadd_multiple("p:z", &[(1, "one"), (2, "two")])
            .zrange_withscores("p:z", 0, -1)
            .rpush("p:l", &keys)
            .lrange("p:l", 0, 1)
            .set_options("p:s", "w", SetOptions::new().get())
            .expire("p:s", 100)
            .del(&keys)
            .del(["p:a", "p:b"]);
        assert_eq!(pipe.len(), 16);
        let replies = client.execute(&pipe).await.unwrap();
        let reply = |i: usize| replies[i].clone().unwrap();

        <()>::from_reply(reply(0)).unwrap();
        assert_eq!(i64::from_reply(reply(1)).unwrap(), 3);
        <()>::from_reply(reply(2)).unwrap();
        let (a, b, none) = <(i64, i64, Option<i64>)>::from_reply(reply(3)).unwrap();
        assert_eq!((a, b, none), (1, 2, None));
        assert_eq!(u64::from_reply(reply(4)).unwrap(), 2);
        let h = HashMap::<String, i64>::from_reply(reply(5)).unwrap();
        assert_eq!(h["g"], 2);
        assert_eq!(u64::from_reply(reply(6)).unwrap(), 2);
        let set = HashSet::<String>::from_reply(reply(7)).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(u64::from_reply(reply(8)).unwrap(), 2);
        // RESP3 (the default): WITHSCORES pairs.
        let scored = Vec::<(String, f64)>::from_reply(reply(9)).unwrap();
        assert_eq!(scored, [("one".to_string(), 1.0), ("two".to_string(), 2.0)]);
        assert_eq!(u64::from_reply(reply(10)).unwrap(), 20);
        assert_eq!(Vec::<String>::from_reply(reply(11)).unwrap(), keys[..2]);
        assert_eq!(
            Option::<String>::from_reply(reply(12)).unwrap().as_deref(),
            Some("v")
        );
        assert!(bool::from_reply(reply(13)).unwrap());
        assert_eq!(u64::from_reply(reply(14)).unwrap(), 0, "no such keys");
        assert_eq!(
            u64::from_reply(reply(15)).unwrap(),
            2,
            "split by slot, summed"
        );

        // An all-integer pipeline converts in one go.
        let mut counts = Pipeline::new();
        counts
            .incr("p:n", 1)
            .hlen("p:h")
            .scard("p:set")
            .zcard("p:z")
            .llen("p:l")
            .exists_count(["p:n", "p:h", "p:gone"]);
        let got: Vec<i64> = client.query_pipeline(&counts).await.unwrap();
        assert_eq!(got, [4, 2, 2, 2, 20, 2]);
    });
}
