//! TLS against real servers: Debian's `redis-server` with `tls-port`, `tls-cluster yes`
//! and `tls-replication yes`, certificates made at test time with `rcgen`. A trusted CA
//! works end to end (the cluster names its TLS ports), a wrong CA is a typed error,
//! mutual TLS needs the client certificate.

mod support;

use std::path::{Path, PathBuf};

use redis_cluster_uring::tls::TlsConfig;
use redis_cluster_uring::{Client, Config, ErrorKind, Pipeline, Value};
use support::{run, Cluster, ClusterSpec};
use test_cluster::{TlsFiles, TLS_PORT_OFFSET};

/// A CA, the nodes' certificate (127.0.0.1 and localhost) and a client certificate, as
/// PEM files in `dir`.
struct Pki {
    ca_pem: String,
    client: (String, String),
    files: TlsFiles,
}

fn make_pki(dir: &Path, require_client_cert: bool) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issue = |names: Vec<String>| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (node_cert, node_key) = issue(vec!["127.0.0.1".into(), "localhost".into()]);
    let client = issue(vec!["client.test".into()]);
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, body: &str| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    Pki {
        ca_pem: ca.pem(),
        client,
        files: TlsFiles {
            cert: write("node.pem", &node_cert),
            key: write("node.key", &node_key),
            ca: write("ca.pem", &ca.pem()),
            require_client_cert,
        },
    }
}

fn tls_cluster(pki: &Pki) -> Cluster {
    Cluster::start(ClusterSpec {
        tls: Some(pki.files.clone()),
        ..support::spec(3, 1)
    })
    .unwrap_or_else(|e| panic!("could not start a TLS cluster: {e}"))
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rcu-tls-{name}-{}", std::process::id()))
}

async fn works(client: &Client) {
    let mut pipe = Pipeline::new();
    for i in 0..200 {
        pipe.set(format!("tls:{i}"), i).get(format!("tls:{i}"));
    }
    let replies = client.execute(&pipe).await.expect("pipeline");
    for i in 0..200 {
        assert_eq!(
            replies[2 * i + 1].as_ref().unwrap(),
            &Value::Bulk(i.to_string().into())
        );
    }
}

#[test]
fn tls_cluster_with_the_right_ca_and_not_with_a_wrong_one() {
    let dir = temp_dir("server");
    let pki = make_pki(&dir, false);
    let cluster = tls_cluster(&pki);
    let seeds = cluster.tls_seed_addrs();
    run(async {
        let tls = TlsConfig::new()
            .add_root_pem(pki.ca_pem.as_bytes())
            .unwrap();
        let client = Client::connect(&seeds, Config::default().tls(tls.clone()))
            .await
            .unwrap();
        works(&client).await;
        // The cluster tells TLS clients its TLS ports.
        for primary in client.slot_map().primaries() {
            assert!(
                cluster
                    .nodes()
                    .iter()
                    .any(|n| n.port + TLS_PORT_OFFSET == primary.port),
                "{primary} is not a TLS port"
            );
        }
        // A rediss:// seed with the same configuration.
        let url = format!("rediss://{}", seeds[0]);
        works(
            &Client::connect(&[url], Config::default().tls(tls))
                .await
                .unwrap(),
        )
        .await;

        // Another CA: a typed TLS error naming the node.
        let other = make_pki(&temp_dir("other"), false);
        let wrong = TlsConfig::new()
            .add_root_pem(other.ca_pem.as_bytes())
            .unwrap();
        let e = Client::connect(&seeds, Config::default().tls(wrong))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
        assert!(e.detail().contains("127.0.0.1:"), "{e}");
        // rediss:// without a TLS configuration is a configuration error.
        let e = Client::connect(&[format!("rediss://{}", seeds[0])], Config::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    });
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(temp_dir("other"));
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let dir = temp_dir("mutual");
    let pki = make_pki(&dir, true);
    let cluster = tls_cluster(&pki);
    let seeds = cluster.tls_seed_addrs();
    run(async {
        let roots = TlsConfig::new()
            .add_root_pem(pki.ca_pem.as_bytes())
            .unwrap();
        let e = Client::connect(&seeds, Config::default().tls(roots.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Tls | ErrorKind::Io),
            "refused without a certificate: {e}"
        );
        let mutual = roots
            .client_cert_pem(pki.client.0.as_bytes(), pki.client.1.as_bytes())
            .unwrap();
        let client = Client::connect(&seeds, Config::default().tls(mutual))
            .await
            .unwrap();
        works(&client).await;
    });
    let _ = std::fs::remove_dir_all(dir);
}
