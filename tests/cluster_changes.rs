//! While the cluster changes: a redirect loop and a dead node on both clients; the async
//! client's concurrent callers behind a stalled node, a stopped primary replaced before
//! its requests time out, and its shutdown. Slot migration and
//! failover run on both clients in `tests/clients.rs`.
//!
//! Cluster operations are blocking calls of the harness, so they run on a helper thread
//! while the client keeps its event loop on the test thread.

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::thread::Scope;
use std::time::Duration;

use redis_cluster_uring::engine;
use redis_cluster_uring::AsyncCommands;
use redis_cluster_uring::{cmd, slot_for_key, Config, ErrorKind, NodeAddr, Pipeline, Value};
use support::clients::{on_both_clients, AnyClient};
use support::{client, client_with, cluster, run, Cluster};

on_both_clients! {
    redirect_loop_ends_in_a_typed_error_for_that_command_only(3, 0);
    a_dead_node_does_not_cost_the_others_their_replies(3, 0);
}

/// Yields to the event loop for a while (lets other tasks and I/O run).
async fn pause(ms: u64) {
    engine::sleep(Duration::from_millis(ms)).await;
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
            engine::spawn_local(async move {
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

async fn redirect_loop_ends_in_a_typed_error_for_that_command_only<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
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
    let client = C::connect(cluster, Config::default().max_redirects(4)).await;
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
    cluster
        .run(
            from,
            &["CLUSTER", "SETSLOT", &slot.get().to_string(), "STABLE"],
        )
        .unwrap();
}

async fn a_dead_node_does_not_cost_the_others_their_replies<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let dead_slot = slot_for_key(b"dead");
    let dead = cluster.master_for_slot(dead_slot.get());
    let config = Config::default()
        .request_timeout(Some(Duration::from_millis(800)))
        .periodic_refresh(None);
    let client = C::connect(cluster, config).await;
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
}

/// A primary stopped (SIGSTOP) with a request written to it is noticed as unresponsive
/// long before that request's timeout: the client polls the slot map, moves the slot to
/// the promoted replica while the written request still waits (it may have run, so it
/// is never resent), and a request sent then succeeds on the new primary.
#[test]
fn a_stopped_primary_is_replaced_before_its_requests_time_out() {
    let cluster = cluster(3, 1);
    let slot = slot_for_key(b"stop");
    let victim = cluster.master_for_slot(slot.get());
    std::thread::scope(|helpers| {
        run(async {
            // Far longer than a failover: whatever moves the slot is not a timeout.
            let config = Config::default().request_timeout(Some(Duration::from_secs(60)));
            let client = Rc::new(client_with(&cluster, config).await);
            client.set("{stop}k", 0).await.unwrap();
            let owner = NodeAddr::new("127.0.0.1", victim);
            let acked: i64 = client
                .query_node(&owner, cmd("WAIT").arg(1).arg(2000))
                .await
                .unwrap();
            assert_eq!(acked, 1, "the replica has the key before the primary stops");
            cluster.pause_node(victim).unwrap();
            let stuck = {
                let client = client.clone();
                engine::spawn_local(
                    async move { client.query::<i64>(cmd("INCR").arg("{stop}k")).await },
                )
            };
            let failover = helpers.spawn(|| cluster.wait_for_failover(slot.get(), victim));
            while !failover.is_finished() {
                pause(20).await;
            }
            let promoted = failover.join().unwrap().unwrap();
            // The client learns of the promotion by itself (nothing has failed or timed
            // out yet); the harness's own bound is far below the request timeout.
            let mut waited = 0;
            while client.slot_map().node_for(slot) != Some(&NodeAddr::new("127.0.0.1", promoted)) {
                assert!(
                    waited < 10_000,
                    "the slot map still names the stopped primary 10 s after the promotion"
                );
                pause(20).await;
                waited += 20;
            }
            assert!(!stuck.is_finished(), "the written INCR is still waiting");
            // The written INCR never ran (its node is stopped): the new primary has 0.
            let fresh: i64 = client.query(cmd("INCR").arg("{stop}k")).await.unwrap();
            assert_eq!(fresh, 1);
            assert!(!stuck.is_finished(), "answered while the first still waits");
            stuck.abort();
            cluster.resume_node(victim).unwrap();
        })
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
            engine::spawn_local(async move {
                let r = client.set("sd:key", "v").await;
                finished.set(true);
                r
            })
        };
        // Let the task queue its request before the shutdown begins.
        engine::yield_now().await;
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
