//! The client while the cluster changes under it: slot migration (ASK and MOVED), a master
//! killed and its replica promoted, a stalled node, redirect loops, shutdown.
//!
//! Cluster operations are blocking calls of the harness, so they run on a helper thread
//! while the client keeps its event loop on the test thread.

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis_cluster_uring::{cmd, slot_for_key, Config, ErrorKind, NodeAddr, Pipeline, Value};
use support::{client, client_with, cluster, run};

/// Yields to the event loop for a while (lets other tasks and I/O run).
async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[test]
fn slot_migration_under_load_uses_ask_then_moved_and_loses_nothing() {
    let cluster = cluster(3, 0);
    let slot = slot_for_key(b"mig");
    let from = cluster.master_for_slot(slot.get());
    let to = cluster.other_master(from);
    let done = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::scope(|scope| {
        let (done2, phase2, cluster_ref) = (done.clone(), phase.clone(), &cluster);
        // Wait until the client has written the keys, then migrate in three steps with
        // traffic in between each.
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
        run(async {
            let client = client(&cluster).await;
            let mut setup = Pipeline::new();
            for i in 0..50 {
                setup.set(format!("{{mig}}:{i}"), i);
                setup.set(format!("other:{i}"), i);
            }
            client.execute(&setup).await.unwrap();
            phase.store(1, Ordering::SeqCst);
            let mut rounds = 0;
            while !done.load(Ordering::SeqCst) {
                let mut pipe = Pipeline::new();
                for i in 0..50 {
                    pipe.get(format!("{{mig}}:{i}"));
                    pipe.get(format!("other:{i}"));
                }
                // A fresh key written during the migration must be readable right after.
                pipe.set(format!("{{mig}}:new:{rounds}"), rounds);
                pipe.get(format!("{{mig}}:new:{rounds}"));
                let replies = client.execute(&pipe).await.unwrap();
                for i in 0..50 {
                    let want = Value::Bulk(i.to_string().into());
                    assert_eq!(
                        replies[2 * i].as_ref().unwrap(),
                        &want,
                        "round {rounds} key {i}"
                    );
                    assert_eq!(replies[2 * i + 1].as_ref().unwrap(), &want);
                }
                let fresh = replies[101].as_ref().unwrap();
                assert_eq!(fresh, &Value::Bulk(rounds.to_string().into()));
                rounds += 1;
                pause(2).await;
            }
            let stats = client.stats();
            assert!(stats.redirects > 0, "no redirect seen: {stats:?}");
            // After the migration the map points at the new owner without a refresh call.
            assert_eq!(client.slot_map().node_for(slot).map(|n| n.port), Some(to));
        });
    });
}

#[test]
fn killed_master_is_replaced_by_its_replica_and_the_client_recovers() {
    let cluster = cluster(3, 1);
    let slot = slot_for_key(b"fo");
    let victim = cluster.master_for_slot(slot.get());
    let killed = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        let (killed2, cluster_ref) = (killed.clone(), &cluster);
        scope.spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            cluster_ref.kill_node(victim).unwrap();
            killed2.store(true, Ordering::SeqCst);
        });
        run(async {
            let config = Config::default().request_timeout(Some(Duration::from_millis(500)));
            let client = client_with(&cluster, config).await;
            let mut pipe = Pipeline::new();
            for i in 0..30 {
                pipe.set(format!("{{fo}}:{i}"), i);
                pipe.set(format!("k:{i}"), i);
            }
            client.execute(&pipe).await.unwrap();
            // Replication is asynchronous: make sure the replica has the keys before the kill.
            // WAIT runs on the connection that did the writes (one per node).
            let owner = NodeAddr::new("127.0.0.1", victim);
            let acked: i64 = client
                .query_node(&owner, cmd("WAIT").arg(1).arg(2000))
                .await
                .unwrap();
            assert_eq!(acked, 1);
            let mut recovered_after_kill = 0;
            let mut errors = 0;
            // Liveness bound for failover detection (node timeout is short in the harness),
            // not a performance assertion.
            for _ in 0..600 {
                let mut pipe = Pipeline::new();
                for i in 0..30 {
                    pipe.get(format!("{{fo}}:{i}"));
                    pipe.get(format!("k:{i}"));
                }
                let replies = client.execute(&pipe).await.unwrap();
                let mut all_ok = true;
                for (n, r) in replies.iter().enumerate() {
                    match r {
                        // Never a wrong value: either the right reply or a typed error.
                        Ok(v) => assert_eq!(v, &Value::Bulk((n / 2).to_string().into())),
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
                    recovered_after_kill += 1;
                    if recovered_after_kill > 5 {
                        break;
                    }
                }
                pause(50).await;
            }
            assert!(
                recovered_after_kill > 5,
                "client did not recover after the failover"
            );
            eprintln!("failover: {errors} commands failed with typed errors meanwhile");
            let owner = client.slot_map().node_for(slot).cloned().unwrap();
            assert_ne!(owner.port, victim, "slot map still names the dead master");
        });
    });
}

#[test]
fn timed_out_requests_never_shift_later_replies() {
    let cluster = cluster(3, 0);
    run(async {
        let config = Config::default().request_timeout(Some(Duration::from_millis(200)));
        let client = Rc::new(client_with(&cluster, config).await);
        client.set("{slow}a", "first").await.unwrap();
        client.set("{slow}b", "second").await.unwrap();
        let port = cluster.master_for_slot(slot_for_key(b"slow").get());
        let node = NodeAddr::new("127.0.0.1", port);
        // The GET and the DEBUG SLEEP leave in one write on the node's one connection; the
        // server runs both, then sleeps before flushing either reply, so both requests
        // time out and their replies arrive late, behind whatever is queued next.
        let sleeper = {
            let (client, node) = (client.clone(), node.clone());
            tokio::task::spawn_local(async move {
                client
                    .query_node::<Value>(&node, cmd("DEBUG").arg("SLEEP").arg("0.6"))
                    .await
            })
        };
        let stalled = client.get::<_, String>("{slow}a").await;
        assert_eq!(stalled.unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(
            sleeper.await.unwrap().unwrap_err().kind(),
            ErrorKind::Timeout
        );
        // Still inside the sleep: this GET also waits behind the stale replies.
        let mut ok = None;
        for _ in 0..20 {
            match client.get::<_, String>("{slow}b").await {
                Ok(v) => {
                    ok = Some(v);
                    break;
                }
                Err(e) => assert_eq!(e.kind(), ErrorKind::Timeout),
            }
        }
        assert_eq!(ok.as_deref(), Some("second"));
        let a: String = client.get("{slow}a").await.unwrap();
        assert_eq!(a, "first");
    });
}

#[test]
fn redirect_loop_ends_in_a_typed_error_for_that_command_only() {
    let cluster = cluster(3, 0);
    let slot = slot_for_key(b"loop");
    let from = cluster.master_for_slot(slot.get());
    let to = cluster.other_master(from);
    // Source says ASK (key absent, slot MIGRATING); the target is not importing and says
    // MOVED back to the source: an endless loop unless the client counts hops.
    let to_id = cluster.node_id(to);
    cluster
        .run(
            from,
            &[
                "CLUSTER",
                "SETSLOT",
                &slot.get().to_string(),
                "MIGRATING",
                &to_id,
            ],
        )
        .unwrap();
    run(async {
        let client = client_with(&cluster, Config::default().max_redirects(4)).await;
        let mut pipe = Pipeline::new();
        pipe.get("{loop}missing")
            .set("elsewhere", "fine")
            .get("elsewhere");
        let replies = client.execute(&pipe).await.unwrap();
        let e = replies[0].as_ref().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RedirectLimit, "{e}");
        assert!(e.redirect_target().is_some());
        assert!(replies[1].is_ok());
        assert_eq!(replies[2].as_ref().unwrap(), &Value::Bulk("fine".into()));
    });
    cluster
        .run(
            from,
            &["CLUSTER", "SETSLOT", &slot.get().to_string(), "STABLE"],
        )
        .unwrap();
}

#[test]
fn a_dead_node_does_not_cost_the_others_their_replies() {
    let cluster = cluster(3, 0);
    let dead_slot = slot_for_key(b"dead");
    let dead = cluster.master_for_slot(dead_slot.get());
    run(async {
        let config = Config::default()
            .request_timeout(Some(Duration::from_millis(800)))
            .periodic_refresh(None);
        let client = client_with(&cluster, config).await;
        let mut keys = Vec::new();
        for i in 0..60 {
            keys.push(format!("live:{i}"));
        }
        let mut setup = Pipeline::new();
        for k in &keys {
            setup.set(k, k);
        }
        client.execute(&setup).await.unwrap();
        cluster.kill_node(dead).unwrap();
        let mut pipe = Pipeline::new();
        pipe.get("{dead}x");
        for k in &keys {
            pipe.get(k);
        }
        let replies = client.execute(&pipe).await.unwrap();
        assert!(replies[0].is_err());
        let map = client.slot_map();
        for (k, r) in keys.iter().zip(&replies[1..]) {
            let owner = map.node_for(slot_for_key(k.as_bytes())).unwrap().port;
            if owner == dead {
                assert!(r.is_err());
            } else {
                assert_eq!(r.as_ref().unwrap(), &Value::Bulk(k.clone().into()));
            }
        }
    });
}

#[test]
fn shutdown_fails_new_requests_and_closes_connections() {
    let cluster = cluster(3, 0);
    run(async {
        let client = client(&cluster).await;
        let finished = Rc::new(Cell::new(false));
        let pending = {
            let (client, finished) = (client.clone(), finished.clone());
            tokio::task::spawn_local(async move {
                let r = client.set("sd:key", "v").await;
                finished.set(true);
                r
            })
        };
        // Let the task queue its request before the shutdown begins.
        tokio::task::yield_now().await;
        client.shutdown(Duration::from_secs(2)).await;
        // The request issued before shutdown was flushed, not dropped.
        assert!(pending.await.unwrap().is_ok());
        assert!(finished.get());
        let e = client.get::<_, String>("sd:key").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Shutdown);
        pause(50).await;
        assert_eq!(client.connection_count(), 0);
    });
}
