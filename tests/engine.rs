//! Engine selection: the epoll fallback works end to end where io_uring is refused,
//! asking for io_uring where it cannot run is a typed error, not a panic, and a client
//! inside a compio runtime runs on compio.

mod support;

use redis_cluster_uring::engine::{self, Engine, RingWait};
use redis_cluster_uring::{Client, Config, ErrorKind, Pipeline, Value};
use support::cluster;

#[test]
fn forced_epoll_runs_the_same_client_end_to_end() {
    let cluster = cluster(3, 0);
    let seeds = cluster.seed_addrs();
    // What a kernel without io_uring gets: the runtime and the client on epoll.
    let out = engine::start_with(Engine::Epoll, async {
        assert_eq!(engine::current(), Some(Engine::Epoll));
        let client = Client::connect(&seeds, Config::default()).await.unwrap();
        assert_eq!(client.engine(), Engine::Epoll);
        let mut pipe = Pipeline::new();
        for i in 0..300 {
            pipe.set(format!("e:{i}"), i).get(format!("e:{i}"));
        }
        let replies = client.execute(&pipe).await.unwrap();
        for i in 0..300 {
            assert_eq!(
                replies[2 * i + 1].as_ref().unwrap(),
                &Value::Bulk(i.to_string().into())
            );
        }
        // Asking for io_uring inside a runtime without it: a typed error.
        let e = Client::connect(&seeds, Config::default().engine(Engine::IoUring))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::IoUringUnavailable);
        client.connection_count()
    })
    .unwrap();
    assert_eq!(out, 3);
}

#[test]
fn auto_picks_the_fastest_engine_the_kernel_allows() {
    let cluster = cluster(3, 0);
    let seeds = cluster.seed_addrs();
    // Fastest first: the owned ring, then tokio-uring, then epoll.
    let ring = engine::probe_ring();
    let uring = engine::probe_io_uring();
    let want = if ring.is_ok() {
        Engine::Ring
    } else if uring.is_ok() {
        Engine::IoUring
    } else {
        Engine::Epoll
    };
    for probe in [&ring, &uring] {
        if let Err(e) = probe {
            // The reason is spelled out for the log, with its kind.
            assert_eq!(e.kind(), ErrorKind::IoUringUnavailable);
            assert!(!e.detail().is_empty());
        }
    }
    let forced = Engine::from_env().unwrap();
    engine::start_with(Engine::Auto, async {
        let client = Client::connect(&seeds, Config::default()).await.unwrap();
        match forced {
            Some(f) if f != Engine::Auto => assert_eq!(client.engine(), f),
            _ => assert_eq!(client.engine(), want),
        }
        client.ping().await.unwrap();
    })
    .unwrap();
}

/// What user code may use inside every engine's runtime: `engine::spawn_local`,
/// `engine::sleep`/`timeout`, tokio's channels and `Notify` (wakes from another thread
/// included), and a task that panics ends alone.
#[test]
fn user_code_runs_the_same_on_every_engine() {
    use std::rc::Rc;
    use std::time::{Duration, Instant};
    for chosen in [Engine::Ring, Engine::IoUring, Engine::Epoll, Engine::Compio] {
        let available = match chosen {
            Engine::Ring => engine::probe_ring().is_ok(),
            Engine::IoUring | Engine::Compio => engine::probe_io_uring().is_ok(),
            _ => true,
        };
        if !available {
            eprintln!("{chosen}: refused by this kernel");
            continue;
        }
        engine::start_with(chosen, async move {
            assert_eq!(engine::current(), Some(chosen));
            // Local tasks and their outputs.
            let task = engine::spawn_local(async { 6 * 7 });
            assert_eq!(task.await.unwrap(), 42, "{chosen}");
            // Timers: a sleep lasts at least its time; a timeout ends a stuck future.
            let start = Instant::now();
            engine::sleep(Duration::from_millis(20)).await;
            assert!(start.elapsed() >= Duration::from_millis(20), "{chosen}");
            let e = engine::timeout(Duration::from_millis(10), std::future::pending::<()>())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout, "{chosen}");
            // Notify between local tasks.
            let notify = Rc::new(tokio::sync::Notify::new());
            let waiter = engine::spawn_local({
                let notify = notify.clone();
                async move { notify.notified().await }
            });
            engine::yield_now().await;
            notify.notify_one();
            waiter.await.unwrap();
            // A channel fed from another thread wakes the loop.
            let (tx, mut rx) = tokio::sync::mpsc::channel(4);
            let feeder = std::thread::spawn(move || {
                for i in 0..3 {
                    std::thread::sleep(Duration::from_millis(5));
                    tx.blocking_send(i).unwrap();
                }
            });
            let mut got = Vec::new();
            while let Some(i) = rx.recv().await {
                got.push(i);
            }
            feeder.join().unwrap();
            assert_eq!(got, [0, 1, 2], "{chosen}");
            // An aborted task ends; its handle says so.
            let stuck = engine::spawn_local(std::future::pending::<()>());
            stuck.abort();
            let e = stuck.await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Shutdown, "{chosen}");
        })
        .unwrap();
    }
}

/// A compio application that builds its own runtime: a client made there picks the
/// compio engine by itself, and asking for another engine there is a typed error.
#[test]
fn a_client_inside_a_compio_runtime_of_ones_own_runs_on_compio() {
    if engine::probe_io_uring().is_err() {
        eprintln!("skipped: io_uring is refused here");
        return;
    }
    let cluster = cluster(3, 0);
    let seeds = cluster.seed_addrs();
    let runtime = compio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        assert_eq!(engine::current(), Some(Engine::Compio));
        let client = Client::connect(&seeds, Config::default()).await.unwrap();
        assert_eq!(client.engine(), Engine::Compio);
        let mut pipe = Pipeline::new();
        for i in 0..300 {
            pipe.set(format!("c:{i}"), i).get(format!("c:{i}"));
        }
        let replies = client.execute(&pipe).await.unwrap();
        for i in 0..300 {
            assert_eq!(
                replies[2 * i + 1].as_ref().unwrap(),
                &Value::Bulk(i.to_string().into())
            );
        }
        // The public runtime services work there too.
        let task = engine::spawn_local(async { 6 * 7 });
        assert_eq!(task.await.unwrap(), 42);
        for other in [Engine::Ring, Engine::IoUring, Engine::Epoll] {
            let e = Client::connect(&seeds, Config::default().engine(other))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{other}: {e}");
        }
        let explicit = Client::connect(&seeds, Config::default().engine(Engine::Compio))
            .await
            .unwrap();
        explicit.ping().await.unwrap();
    });
    // Outside it, and outside engine::start, compio is a typed error too.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&tokio, async {
        let e = Client::connect(&seeds, Config::default().engine(Engine::Compio))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    });
}

/// The ring engine's loop: one `io_uring_enter` per turn at most, and a fan-out
/// pipeline over three nodes costs a few turns, not one per node and reply.
#[test]
fn the_ring_engine_enters_the_kernel_once_per_turn() {
    if engine::probe_ring().is_err() {
        eprintln!("skipped: the ring engine is refused here");
        return;
    }
    let cluster = cluster(3, 0);
    let seeds = cluster.seed_addrs();
    // Outside the ring engine there is no loop to set.
    assert_eq!(
        engine::set_ring_wait(RingWait::First).unwrap_err().kind(),
        ErrorKind::Config
    );
    assert_eq!(engine::ring_wait(), None);
    engine::start_with(Engine::Ring, async {
        let client = Client::connect(&seeds, Config::default()).await.unwrap();
        assert_eq!(client.engine(), Engine::Ring);
        let mut pipe = Pipeline::new();
        for i in 0..300 {
            pipe.set(format!("r:{i}"), i).get(format!("r:{i}"));
        }
        // Connections up first.
        client.execute(&pipe).await.unwrap();
        let features = engine::ring_features().unwrap();
        // Where the kernel cannot gather, the loop waits for the first completion.
        let default = match features.min_wait {
            true => RingWait::default(),
            false => RingWait::First,
        };
        assert_eq!(engine::ring_wait(), Some(default));
        let gather = RingWait::Gather(std::time::Duration::from_micros(50));
        for wait in [RingWait::First, gather, RingWait::default()] {
            engine::set_ring_wait(wait).unwrap();
            let expected = if features.min_wait {
                wait
            } else {
                RingWait::First
            };
            assert_eq!(engine::ring_wait(), Some(expected));
            let before = engine::ring_turns().unwrap();
            let rounds = 20;
            for _ in 0..rounds {
                let replies = client.execute(&pipe).await.unwrap();
                assert_eq!(replies.len(), 600);
            }
            let after = engine::ring_turns().unwrap();
            let (turns, enters) = (after.turns - before.turns, after.enters - before.enters);
            assert!(
                enters <= turns,
                "{wait:?}: {enters} enters in {turns} turns"
            );
            assert!(enters > 0);
            eprintln!(
                "{features:?}, {wait:?}: {enters} enters and {turns} turns for {rounds} pipelines"
            );
        }
        assert!(
            engine::set_ring_wait(RingWait::Gather(std::time::Duration::from_secs(2))).is_err()
        );
    })
    .unwrap();
}

#[test]
fn engine_names_parse() {
    assert_eq!(Engine::parse("io_uring"), Some(Engine::IoUring));
    assert_eq!(Engine::parse("URING"), Some(Engine::IoUring));
    assert_eq!(Engine::parse("epoll"), Some(Engine::Epoll));
    assert_eq!(Engine::parse("ring"), Some(Engine::Ring));
    assert_eq!(Engine::parse("compio"), Some(Engine::Compio));
    assert_eq!(Engine::Compio.to_string(), "compio");
    assert_eq!(Engine::parse(""), Some(Engine::Auto));
    assert_eq!(Engine::parse("kqueue"), None);
}
