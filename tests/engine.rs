//! Engine selection: the epoll fallback works end to end where io_uring is refused, and
//! asking for io_uring where it cannot run is a typed error, not a panic.

mod support;

use redis_cluster_uring::engine::{self, Engine};
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
fn auto_picks_io_uring_when_the_kernel_allows_it() {
    let cluster = cluster(3, 0);
    let seeds = cluster.seed_addrs();
    let probe = engine::probe_io_uring();
    let want = if probe.is_ok() {
        Engine::IoUring
    } else {
        Engine::Epoll
    };
    if let Err(e) = &probe {
        // The reason is spelled out for the log, with its kind.
        assert_eq!(e.kind(), ErrorKind::IoUringUnavailable);
        assert!(!e.detail().is_empty());
    }
    let forced = Engine::from_env().unwrap();
    engine::start_with(Engine::Auto, async {
        let client = Client::connect(&seeds, Config::default()).await.unwrap();
        match forced {
            Some(Engine::Epoll) => assert_eq!(client.engine(), Engine::Epoll),
            _ => assert_eq!(client.engine(), want),
        }
        client.ping().await.unwrap();
    })
    .unwrap();
}

#[test]
fn engine_names_parse() {
    assert_eq!(Engine::parse("io_uring"), Some(Engine::IoUring));
    assert_eq!(Engine::parse("URING"), Some(Engine::IoUring));
    assert_eq!(Engine::parse("epoll"), Some(Engine::Epoll));
    assert_eq!(Engine::parse(""), Some(Engine::Auto));
    assert_eq!(Engine::parse("kqueue"), None);
}
