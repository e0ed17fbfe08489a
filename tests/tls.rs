//! TLS against real servers: Debian's `redis-server` with `tls-port`, `tls-cluster yes`
//! and `tls-replication yes`, certificates made at test time with `rcgen`. A trusted CA
//! works end to end (the cluster names its TLS ports), a wrong CA is a typed error,
//! mutual TLS needs the client certificate. Both clients, through the one TLS layer.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::Scope;

use redis_cluster_uring::tls::TlsConfig;
use redis_cluster_uring::{cmd, Config, ErrorKind};
use support::clients::{on_both_clients, works, AnyClient};
use support::{Cluster, ClusterSpec};
use test_cluster::{TlsFiles, TLS_PORT_OFFSET};

on_both_clients! {
    tls_cluster_with_the_right_ca_and_not_with_a_wrong_one => TlsFixture::new(false);
    mutual_tls_needs_the_client_certificate => TlsFixture::new(true);
}

/// A TLS cluster with its certificates in a directory of its own (removed on drop).
struct TlsFixture {
    pki: Pki,
    dir: PathBuf,
    cluster: Cluster,
}

impl TlsFixture {
    fn new(require_client_cert: bool) -> TlsFixture {
        let dir = temp_dir();
        let pki = make_pki(&dir, require_client_cert);
        let cluster = tls_cluster(&pki);
        TlsFixture { pki, dir, cluster }
    }
}

impl Drop for TlsFixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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

/// A directory no other test of this process uses.
fn temp_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("rcu-tls-{}-{n}", std::process::id()))
}

async fn tls_cluster_with_the_right_ca_and_not_with_a_wrong_one<C: AnyClient>(
    TlsFixture { pki, cluster, .. }: &TlsFixture,
    _: &Scope<'_, '_>,
) {
    let seeds = cluster.tls_seed_addrs();
    let tls = TlsConfig::new()
        .add_root_pem(pki.ca_pem.as_bytes())
        .unwrap();
    let client = C::try_connect(&seeds, Config::default().tls(tls.clone()))
        .await
        .unwrap();
    works(&client).await;
    // A large value crosses many TLS records, both ways.
    let big = "t".repeat(1024 * 1024);
    client
        .query::<()>(cmd("SET").arg("tls:big").arg(big.as_str()))
        .await
        .unwrap();
    let got: String = client.query(cmd("GET").arg("tls:big")).await.unwrap();
    assert!(got == big, "the 1 MiB value came back changed");
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
        &C::try_connect(&[url], Config::default().tls(tls))
            .await
            .unwrap(),
    )
    .await;

    // Another CA: a typed TLS error naming the node.
    let other_dir = temp_dir();
    let other = make_pki(&other_dir, false);
    let _ = std::fs::remove_dir_all(other_dir);
    let wrong = TlsConfig::new()
        .add_root_pem(other.ca_pem.as_bytes())
        .unwrap();
    let e = C::try_connect(&seeds, Config::default().tls(wrong))
        .await
        .err()
        .expect("refused");
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(e.detail().contains("127.0.0.1:"), "{e}");
    // rediss:// without a TLS configuration is a configuration error.
    let e = C::try_connect(&[format!("rediss://{}", seeds[0])], Config::default())
        .await
        .err()
        .expect("refused");
    assert_eq!(e.kind(), ErrorKind::Config);
}

async fn mutual_tls_needs_the_client_certificate<C: AnyClient>(
    TlsFixture { pki, cluster, .. }: &TlsFixture,
    _: &Scope<'_, '_>,
) {
    let seeds = cluster.tls_seed_addrs();
    let roots = TlsConfig::new()
        .add_root_pem(pki.ca_pem.as_bytes())
        .unwrap();
    let e = C::try_connect(&seeds, Config::default().tls(roots.clone()))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(e.kind(), ErrorKind::Tls | ErrorKind::Io),
        "refused without a certificate: {e}"
    );
    let mutual = roots
        .client_cert_pem(pki.client.0.as_bytes(), pki.client.1.as_bytes())
        .unwrap();
    let client = C::try_connect(&seeds, Config::default().tls(mutual))
        .await
        .unwrap();
    works(&client).await;
}
