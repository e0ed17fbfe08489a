//! Pub/sub against real nodes: a subscriber with connections of its own, cluster-wide and
//! sharded subscriptions, and reconciliation after cut connections, a slot migration and
//! a failover, counting the messages that arrived in each phase.

mod support;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use redis_cluster_uring::client::Subscriber;
use redis_cluster_uring::engine;
use redis_cluster_uring::pubsub::{Message, SubKind};
use redis_cluster_uring::{cmd, slot_for_key, Client, Config};
use support::{client, client_with, cluster, run, Cluster};

/// Collects every message the subscriber yields, in the background.
fn collect(sub: Rc<Subscriber>) -> Rc<RefCell<Vec<Message>>> {
    let got = Rc::new(RefCell::new(Vec::new()));
    let sink = got.clone();
    engine::spawn_local(async move {
        while let Some(m) = sub.next_message().await {
            sink.borrow_mut().push(m);
        }
    });
    got
}

/// Waits (up to `limit`, a liveness bound, not a measurement) until `ready` holds.
async fn eventually(limit: Duration, what: &str, ready: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        engine::sleep(Duration::from_millis(10)).await;
    }
}

fn payloads(got: &RefCell<Vec<Message>>, channel: &str) -> BTreeSet<String> {
    got.borrow()
        .iter()
        .filter(|m| &m.channel[..] == channel.as_bytes())
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

async fn publish(client: &Client, sharded: bool, channel: &str, payload: &str) -> bool {
    let name = if sharded { "SPUBLISH" } else { "PUBLISH" };
    client
        .query::<i64>(cmd(name).arg(channel).arg(payload))
        .await
        .is_ok()
}

#[test]
fn channels_patterns_and_sharded_channels_deliver_and_unsubscribe() {
    let cluster = cluster(3, 0);
    run(async {
        let client = client(&cluster).await;
        let sub = Rc::new(client.subscriber());
        sub.subscribe(&["news", "sport"]).await.unwrap();
        sub.psubscribe(&["log.*"]).await.unwrap();
        // Sharded channels on every primary.
        let sharded: Vec<String> = (0..30).map(|i| format!("orders:{i}")).collect();
        sub.ssubscribe(&sharded).await.unwrap();
        assert_eq!(sub.out_of_sync(), 0);
        let owners: BTreeSet<_> = sharded
            .iter()
            .filter_map(|c| {
                client
                    .slot_map()
                    .node_for(slot_for_key(c.as_bytes()))
                    .cloned()
            })
            .collect();
        assert_eq!(owners.len(), 3, "the sharded channels span every primary");
        let got = collect(sub.clone());

        for i in 0..20 {
            assert!(publish(&client, false, "news", &i.to_string()).await);
            assert!(publish(&client, false, "log.web", &i.to_string()).await);
        }
        for c in &sharded {
            assert!(publish(&client, true, c, "x").await);
        }
        eventually(Duration::from_secs(10), "every message", || {
            got.borrow().len() == 20 + 20 + sharded.len()
        })
        .await;
        assert_eq!(payloads(&got, "news").len(), 20);
        let patterned = got
            .borrow()
            .iter()
            .filter(|m| m.kind == SubKind::Pattern && m.pattern.as_deref() == Some(&b"log.*"[..]))
            .count();
        assert_eq!(patterned, 20);

        // Unsubscribed: nothing more arrives for them.
        sub.unsubscribe(&["news"]).await.unwrap();
        sub.sunsubscribe(&sharded).await.unwrap();
        let before = got.borrow().len();
        assert!(publish(&client, false, "news", "late").await);
        assert!(publish(&client, true, &sharded[0], "late").await);
        assert!(publish(&client, false, "sport", "still").await);
        eventually(Duration::from_secs(10), "the sport message", || {
            payloads(&got, "sport").contains("still")
        })
        .await;
        assert_eq!(got.borrow().len(), before + 1, "only sport arrived");
        assert_eq!(sub.out_of_sync(), 0);
        assert_eq!(sub.dropped_messages(), 0);
    });
}

#[test]
fn a_subscription_survives_its_connections_being_killed() {
    let cluster = cluster(3, 0);
    run(async {
        let client = client(&cluster).await;
        let sub = Rc::new(client.subscriber());
        sub.subscribe(&["chat"]).await.unwrap();
        sub.ssubscribe(&["room:{a}", "room:{b}", "room:{c}"])
            .await
            .unwrap();
        let got = collect(sub.clone());
        // The server drops every pub/sub connection it has.
        for node in cluster.nodes() {
            let _ = cluster.run(node.port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
        }
        eventually(Duration::from_secs(20), "resubscription", || {
            sub.reconnects() >= 2 && sub.out_of_sync() == 0
        })
        .await;
        for c in ["chat", "room:{a}", "room:{b}", "room:{c}"] {
            assert!(publish(&client, c != "chat", c, "after").await);
        }
        eventually(Duration::from_secs(10), "the messages after", || {
            got.borrow().len() == 4
        })
        .await;
        eprintln!("connections killed: {} reconnects", sub.reconnects());
    });
}

/// Publishes `channel` messages numbered from `from` every 2 ms until `stop` says so;
/// returns how many were published.
async fn publish_until(
    client: &Client,
    sharded: bool,
    channel: &str,
    phase: &str,
    stop: impl Fn() -> bool,
) -> usize {
    let mut n = 0;
    while !stop() {
        if publish(client, sharded, channel, &format!("{phase}:{n}")).await {
            n += 1;
        }
        engine::sleep(Duration::from_millis(2)).await;
    }
    n
}

fn count_phase(got: &RefCell<Vec<Message>>, channel: &str, phase: &str) -> usize {
    payloads(got, channel)
        .iter()
        .filter(|p| p.starts_with(&format!("{phase}:")))
        .count()
}

/// A sharded channel whose slot migrates: the old owner unsubscribes the subscriber, which
/// subscribes again at the new owner. Every message published before and after arrives;
/// some published during the move may be lost (pub/sub is at most once).
#[test]
fn a_sharded_subscription_follows_its_slot_migration() {
    let cluster = cluster(3, 0);
    let channel = "ticker:{mig}";
    let slot = slot_for_key(channel.as_bytes()).get();
    // 0: before, 1: migrating, 2: done.
    let phase = AtomicU8::new(0);
    std::thread::scope(|scope| {
        let (cluster_ref, phase_ref) = (&cluster, &phase);
        scope.spawn(move || {
            while phase_ref.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            let from = cluster_ref.master_for_slot(slot);
            let to = cluster_ref.other_master(from);
            // In steps, publishing all along: while the slot is MIGRATING, SPUBLISH is
            // redirected (ASK) to the target, where nobody is subscribed yet.
            cluster_ref.begin_migration(slot, from, to).unwrap();
            std::thread::sleep(Duration::from_millis(150));
            cluster_ref.move_keys(slot, from, to).unwrap();
            cluster_ref.finish_migration(slot, from, to).unwrap();
            std::thread::sleep(Duration::from_millis(150));
            phase_ref.store(2, Ordering::SeqCst);
        });
        run(async {
            let client = client(&cluster).await;
            let sub = Rc::new(client.subscriber());
            sub.ssubscribe(&[channel]).await.unwrap();
            let got = collect(sub.clone());
            let before_owner = client
                .slot_map()
                .node_for(slot_for_key(channel.as_bytes()))
                .cloned();
            let mut before = 0;
            for n in 0..50 {
                if publish(&client, true, channel, &format!("before:{n}")).await {
                    before += 1;
                }
            }
            eventually(Duration::from_secs(10), "the messages before", || {
                count_phase(&got, channel, "before") == before
            })
            .await;
            phase.store(1, Ordering::SeqCst);
            let during = publish_until(&client, true, channel, "during", || {
                phase.load(Ordering::SeqCst) == 2
            })
            .await;
            eventually(
                Duration::from_secs(20),
                "the subscription at the new owner",
                || {
                    sub.out_of_sync() == 0
                        && client
                            .slot_map()
                            .node_for(slot_for_key(channel.as_bytes()))
                            .cloned()
                            != before_owner
                },
            )
            .await;
            let mut after = 0;
            for n in 0..50 {
                if publish(&client, true, channel, &format!("after:{n}")).await {
                    after += 1;
                }
            }
            eventually(Duration::from_secs(10), "the messages after", || {
                count_phase(&got, channel, "after") == after
            })
            .await;
            let (got_before, got_during) = (
                count_phase(&got, channel, "before"),
                count_phase(&got, channel, "during"),
            );
            eprintln!(
                "slot migration of a sharded channel: before {got_before}/{before}, during {got_during}/{during}, after {after}/{after}"
            );
            assert_eq!(got_before, before);
            assert_eq!(before, 50);
            assert_eq!(after, 50);
            assert!(got_during <= during);
        });
    });
}

/// The primary serving a sharded channel (and possibly the cluster-wide connection) is
/// killed; a replica takes over. The subscriber resubscribes there and messages flow
/// again: every message published before and after arrives.
#[test]
fn subscriptions_come_back_after_a_failover() {
    let cluster: Cluster = cluster(3, 1);
    let channel = "alerts:{fo}";
    let slot = slot_for_key(channel.as_bytes()).get();
    let victim = cluster.master_for_slot(slot);
    let phase = AtomicU8::new(0);
    std::thread::scope(|scope| {
        let (cluster_ref, phase_ref) = (&cluster, &phase);
        scope.spawn(move || {
            while phase_ref.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            cluster_ref.kill_node(victim).unwrap();
            cluster_ref.wait_for_failover(slot, victim).unwrap();
            phase_ref.store(2, Ordering::SeqCst);
        });
        run(async {
            let config = Config::default().request_timeout(Some(Duration::from_millis(500)));
            let client = client_with(&cluster, config).await;
            let sub = Rc::new(client.subscriber());
            sub.ssubscribe(&[channel]).await.unwrap();
            sub.subscribe(&["broadcast"]).await.unwrap();
            let got = collect(sub.clone());
            for n in 0..50 {
                assert!(publish(&client, true, channel, &format!("before:{n}")).await);
                assert!(publish(&client, false, "broadcast", &format!("before:{n}")).await);
            }
            // Published is not delivered: wait for them before the kill, which would
            // otherwise take undelivered ones with it (at most once).
            eventually(Duration::from_secs(10), "the messages before", || {
                count_phase(&got, channel, "before") == 50
                    && count_phase(&got, "broadcast", "before") == 50
            })
            .await;
            phase.store(1, Ordering::SeqCst);
            let during = publish_until(&client, true, channel, "during", || {
                phase.load(Ordering::SeqCst) == 2
            })
            .await;
            eventually(
                Duration::from_secs(30),
                "the subscriptions back in place",
                || sub.out_of_sync() == 0,
            )
            .await;
            // The map may still name the dead node for a moment; retry until a publish
            // lands, then count from there.
            let mut after = 0;
            for n in 0..50 {
                for _ in 0..200 {
                    if publish(&client, true, channel, &format!("after:{n}")).await {
                        after += 1;
                        break;
                    }
                    engine::sleep(Duration::from_millis(20)).await;
                }
                assert!(publish(&client, false, "broadcast", &format!("after:{n}")).await);
            }
            eventually(Duration::from_secs(10), "the messages after", || {
                count_phase(&got, channel, "after") == after
                    && count_phase(&got, "broadcast", "after") == 50
            })
            .await;
            eprintln!(
                "failover: sharded before {}/50, during {}/{during}, after {}/{after}; broadcast before {}/50, after {}/50; {} reconnects",
                count_phase(&got, channel, "before"),
                count_phase(&got, channel, "during"),
                count_phase(&got, channel, "after"),
                count_phase(&got, "broadcast", "before"),
                count_phase(&got, "broadcast", "after"),
                sub.reconnects()
            );
            assert_eq!(count_phase(&got, channel, "before"), 50);
            assert_eq!(count_phase(&got, "broadcast", "before"), 50);
            assert_eq!(after, 50);
            assert!(
                sub.reconnects() >= 1,
                "the killed node's connection was replaced"
            );
        });
    });
}

/// The buffer of unread messages is bounded: past `max_buffered_messages` the oldest are
/// dropped and counted, the newest kept; a pattern subscription ends with `punsubscribe`.
#[test]
fn a_caller_that_does_not_read_loses_the_oldest_messages_not_memory() {
    let cluster = cluster(3, 0);
    run(async {
        let config = Config {
            max_buffered_messages: 10,
            ..Config::default()
        };
        let client = client_with(&cluster, config).await;
        let sub = client.subscriber();
        sub.subscribe(&["flood"]).await.unwrap();
        sub.psubscribe(&["fl*"]).await.unwrap();
        sub.punsubscribe(&["fl*"]).await.unwrap();
        assert_eq!(sub.subscriptions().len(), 1);
        for i in 0..50 {
            assert!(publish(&client, false, "flood", &i.to_string()).await);
        }
        eventually(Duration::from_secs(10), "the drops", || {
            sub.dropped_messages() == 40
        })
        .await;
        let mut kept = Vec::new();
        while let Some(m) = sub.try_next_message() {
            kept.push(String::from_utf8_lossy(&m.payload).into_owned());
        }
        let newest: Vec<String> = (40..50).map(|i| i.to_string()).collect();
        assert_eq!(kept, newest);
        assert_eq!(sub.out_of_sync(), 0);
    });
}

// The blocking client's subscriber. Its reads happen when it is called (there is no
// background task), so these tests publish first and then drain; the reconciliation is
// the same pure `Subscriptions` as above.

mod on_the_blocking_client {
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    use redis_cluster_uring::blocking::Subscriber;
    use redis_cluster_uring::handshake::Protocol;
    use redis_cluster_uring::pubsub::{Message, SubKind};
    use redis_cluster_uring::{slot_for_key, Commands, Config};

    use super::support::clients::connect_blocking;
    use super::support::cluster;

    /// Every message that arrives within `quiet` of the previous one (or of the start).
    fn drain(sub: &mut Subscriber, quiet: Duration) -> Vec<Message> {
        let mut got = Vec::new();
        while let Some(m) = sub.next_message(Some(quiet)).unwrap() {
            got.push(m);
        }
        got
    }

    /// Waits (a liveness bound) until `want` messages came, reading as they arrive.
    fn collect(sub: &mut Subscriber, want: usize, limit: Duration) -> Vec<Message> {
        let start = Instant::now();
        let mut got = Vec::new();
        while got.len() < want {
            assert!(start.elapsed() < limit, "{} of {want} messages", got.len());
            if let Some(m) = sub.next_message(Some(Duration::from_millis(100))).unwrap() {
                got.push(m);
            }
        }
        got
    }

    fn payloads(got: &[Message], channel: &str) -> BTreeSet<String> {
        got.iter()
            .filter(|m| &m.channel[..] == channel.as_bytes())
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect()
    }

    #[test]
    fn channels_patterns_and_sharded_channels_deliver_and_unsubscribe() {
        // RESP2 too: there, messages and confirmations are plain arrays, not pushes.
        for protocol in [Protocol::Resp3, Protocol::Resp2] {
            let cluster = cluster(3, 0);
            let config = Config::default().protocol(protocol);
            let mut client = connect_blocking(&cluster, config);
            let mut sub = client.subscriber().unwrap();
            sub.subscribe(&["news", "sport"]).unwrap();
            sub.psubscribe(&["log.*"]).unwrap();
            let sharded: Vec<String> = (0..30).map(|i| format!("orders:{i}")).collect();
            sub.ssubscribe(&sharded).unwrap();
            assert_eq!(sub.out_of_sync(), 0);
            let map = client.slot_map();
            let owners: BTreeSet<u16> = sharded
                .iter()
                .filter_map(|c| map.node_for(slot_for_key(c.as_bytes())))
                .map(|n| n.port)
                .collect();
            assert_eq!(owners.len(), 3, "the sharded channels span every primary");
            for i in 0..20 {
                client.publish("news", i).unwrap();
                client.publish("log.web", i).unwrap();
            }
            for c in &sharded {
                assert_eq!(client.spublish(c, "x").unwrap(), 1);
            }
            let got = collect(&mut sub, 20 + 20 + sharded.len(), Duration::from_secs(10));
            assert_eq!(payloads(&got, "news").len(), 20, "{protocol:?}");
            let patterned = got
                .iter()
                .filter(|m| {
                    m.kind == SubKind::Pattern && m.pattern.as_deref() == Some(&b"log.*"[..])
                })
                .count();
            assert_eq!(patterned, 20);

            sub.unsubscribe(&["news"]).unwrap();
            sub.sunsubscribe(&sharded).unwrap();
            client.publish("news", "late").unwrap();
            assert_eq!(client.spublish(&sharded[0], "late").unwrap(), 0);
            client.publish("sport", "still").unwrap();
            let got = drain(&mut sub, Duration::from_millis(300));
            assert_eq!(
                payloads(&got, "sport"),
                BTreeSet::from(["still".to_string()])
            );
            assert_eq!(got.len(), 1, "only sport arrived: {got:?}");
            assert_eq!((sub.out_of_sync(), sub.dropped_messages()), (0, 0));
        }
    }

    #[test]
    fn a_subscription_survives_its_connections_being_killed() {
        let cluster = cluster(3, 0);
        let mut client = connect_blocking(&cluster, Config::default());
        let mut sub = client.subscriber().unwrap();
        sub.subscribe(&["chat"]).unwrap();
        sub.ssubscribe(&["room:{a}", "room:{b}", "room:{c}"])
            .unwrap();
        for node in cluster.nodes() {
            let _ = cluster.run(node.port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
        }
        let start = Instant::now();
        while sub.reconnects() < 2 || sub.out_of_sync() > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no resubscription"
            );
            assert!(sub
                .next_message(Some(Duration::from_millis(50)))
                .unwrap()
                .is_none());
        }
        client.publish("chat", "after").unwrap();
        for c in ["room:{a}", "room:{b}", "room:{c}"] {
            assert_eq!(client.spublish(c, "after").unwrap(), 1, "{c} resubscribed");
        }
        let got = collect(&mut sub, 4, Duration::from_secs(10));
        assert!(got.iter().all(|m| &m.payload[..] == b"after"));
        eprintln!(
            "blocking subscriber, connections killed: {} reconnects",
            sub.reconnects()
        );
    }

    /// Between two batches of messages the sharded channel's slot moves to another
    /// node: the old owner ends the subscription, the subscriber follows, and every
    /// message of both batches arrives.
    #[test]
    fn a_sharded_subscription_follows_its_slot_migration() {
        let cluster = cluster(3, 0);
        let channel = "ticker:{mig}";
        let slot = slot_for_key(channel.as_bytes()).get();
        let mut client = connect_blocking(&cluster, Config::default());
        let mut sub = client.subscriber().unwrap();
        sub.ssubscribe(&[channel]).unwrap();
        for i in 0..50 {
            assert_eq!(client.spublish(channel, format!("before:{i}")).unwrap(), 1);
        }
        let before = collect(&mut sub, 50, Duration::from_secs(10));
        let from = cluster.master_for_slot(slot);
        let to = cluster.other_master(from);
        cluster.migrate_slot(slot, from, to).unwrap();
        let start = Instant::now();
        loop {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "never followed the slot"
            );
            // The client learns the move from the MOVED its publish gets.
            if client.spublish(channel, "probe").is_ok_and(|n| n == 1) {
                let owner = client
                    .slot_map()
                    .node_for(slot_for_key(channel.as_bytes()))
                    .map(|n| n.port);
                if owner == Some(to) && sub.out_of_sync() == 0 {
                    break;
                }
            }
            let _ = drain(&mut sub, Duration::from_millis(50));
        }
        let _ = drain(&mut sub, Duration::from_millis(100));
        for i in 0..50 {
            assert_eq!(client.spublish(channel, format!("after:{i}")).unwrap(), 1);
        }
        let after = collect(&mut sub, 50, Duration::from_secs(10));
        assert_eq!(payloads(&before, channel).len(), 50);
        assert!(after.iter().all(|m| m.payload.starts_with(b"after:")));
        eprintln!(
            "blocking subscriber, slot moved: reconnects {}",
            sub.reconnects()
        );
    }

    #[test]
    fn a_caller_that_does_not_read_loses_the_oldest_messages_not_memory() {
        let cluster = cluster(3, 0);
        let config = Config {
            max_buffered_messages: 10,
            ..Config::default()
        };
        let mut client = connect_blocking(&cluster, config);
        let mut sub = client.subscriber().unwrap();
        sub.subscribe(&["flood"]).unwrap();
        sub.psubscribe(&["fl*"]).unwrap();
        sub.punsubscribe(&["fl*"]).unwrap();
        assert_eq!(sub.subscriptions().len(), 1);
        for i in 0..50 {
            client.publish("flood", i).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        // The server writes each message to the subscriber's socket around the time it
        // answers the PUBLISH; after a moment they are all there, one wait reads them
        // all, and only the newest ten are kept.
        let mut kept = Vec::new();
        while let Some(m) = sub.next_message(Some(Duration::from_millis(300))).unwrap() {
            kept.push(String::from_utf8_lossy(&m.payload).into_owned());
        }
        let newest: Vec<String> = (40..50).map(|i| i.to_string()).collect();
        assert_eq!(kept, newest);
        assert_eq!(sub.dropped_messages(), 40);
        assert_eq!(sub.out_of_sync(), 0);
    }
}

/// A user whose ACL allows the channel `news` only: a subscription the server refuses is
/// the error of the call that asked for it (and is no longer desired), on both
/// subscribers; the allowed one works.
#[test]
fn a_refused_subscription_is_the_callers_error_on_both_subscribers() {
    use redis_cluster_uring::handshake::Credentials;
    let cluster = support::Cluster::start(support::ClusterSpec {
        extra_config: vec![("user".into(), "limited on >lim-pw ~* &news +@all".into())],
        ..support::spec(3, 0)
    })
    .unwrap_or_else(|e| panic!("could not start a test cluster: {e}"));
    let config = Config::default().credentials(Credentials::user("limited", "lim-pw"));
    run(async {
        let client = client_with(&cluster, config.clone()).await;
        let sub = client.subscriber();
        let e = sub.subscribe(&["secret"]).await.unwrap_err();
        assert_eq!(e.code(), Some("NOPERM"), "{e}");
        assert_eq!((sub.out_of_sync(), sub.subscriptions().len()), (0, 0));
        sub.subscribe(&["news"]).await.unwrap();
        assert_eq!(sub.subscriptions().len(), 1);
    });
    let client = support::clients::connect_blocking(&cluster, config);
    let mut sub = client.subscriber().unwrap();
    let e = sub.subscribe(&["secret"]).unwrap_err();
    assert_eq!(e.code(), Some("NOPERM"), "{e}");
    assert_eq!((sub.out_of_sync(), sub.subscriptions().len()), (0, 0));
    sub.subscribe(&["news"]).unwrap();
    assert_eq!(sub.subscriptions().len(), 1);
}
