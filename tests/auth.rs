//! Production connections: password and ACL-user clusters (right and wrong credentials,
//! from the configuration or a URL), a credentials provider that rotates, and the
//! protocol each connection speaks (RESP3 by default, RESP2 on request). Every scenario
//! runs on both clients.

mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::thread::Scope;
use std::time::Duration;

use redis_cluster_uring::handshake::{Credentials, Protocol};
use redis_cluster_uring::{cmd, commands, Config, ErrorKind, Value};
use support::clients::{on_both_clients, pause, works, AnyClient};
use support::{Cluster, ClusterSpec};

on_both_clients! {
    password_and_acl_user_right_and_wrong => protected_cluster();
    a_rotating_credentials_provider_is_asked_on_every_connect => protected_cluster();
    resp3_by_default_and_resp2_on_request(3, 0);
}

const PASSWORD: &str = "s3cret-pw";

fn protected_cluster() -> Cluster {
    Cluster::start(ClusterSpec {
        password: Some(PASSWORD.into()),
        extra_config: vec![("user".into(), "app on >app-pw ~* &* +@all".into())],
        ..support::spec(3, 0)
    })
    .unwrap_or_else(|e| panic!("could not start a test cluster: {e}"))
}

async fn password_and_acl_user_right_and_wrong<C: AnyClient>(cluster: &Cluster, _: &Scope<'_, '_>) {
    let seeds = cluster.seed_addrs();
    // The default user's password, from the configuration.
    let config = Config::default().credentials(Credentials::password(PASSWORD));
    works(&C::try_connect(&seeds, config).await.unwrap()).await;
    // An ACL user, from a URL.
    let url = format!("redis://app:app-pw@{}", seeds[0]);
    works(&C::try_connect(&[url], Config::default()).await.unwrap()).await;

    // Wrong password, wrong user password, no credentials: typed, naming the node and
    // the user, never the secret.
    for (config, says) in [
        (
            Config::default().credentials(Credentials::password("nope-pw")),
            "default",
        ),
        (
            Config::default().credentials(Credentials::user("app", "nope-pw")),
            "app",
        ),
        (Config::default(), "without credentials"),
    ] {
        let e = C::try_connect(&seeds, config).await.err().expect("refused");
        assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
        assert!(e.detail().contains(says), "{e}");
        assert!(e.detail().contains("127.0.0.1:"), "names the node: {e}");
        assert!(!e.to_string().contains("nope-pw"));
        assert!(!format!("{e:?}").contains("nope-pw"));
    }
}

async fn a_rotating_credentials_provider_is_asked_on_every_connect<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let seeds = cluster.seed_addrs();
    let current = Rc::new(RefCell::new(PASSWORD.to_string()));
    let asked = Rc::new(Cell::new(0));
    let config = Config::default()
        .request_timeout(Some(Duration::from_secs(2)))
        .credentials_provider({
            let (current, asked) = (current.clone(), asked.clone());
            move || {
                asked.set(asked.get() + 1);
                Ok(Credentials::password(current.borrow().clone()))
            }
        });
    let client = C::try_connect(&seeds, config).await.unwrap();
    works(&client).await;
    let before = asked.get();
    assert!(before >= 3, "asked for each connection: {before}");

    // Rotate: the servers take the new password, the provider hands it out, and the
    // old connections are dropped by the servers.
    let rotated = "rotated-pw";
    for node in cluster.nodes() {
        cluster
            .run(node.port, &["CONFIG", "SET", "requirepass", rotated])
            .unwrap();
    }
    *current.borrow_mut() = rotated.to_string();
    for node in cluster.nodes() {
        // The harness's own connection authenticates with the old password still
        // registered; use a connection that knows the new one.
        let mut c = std::net::TcpStream::connect(("127.0.0.1", node.port)).unwrap();
        use std::io::{Read, Write};
        let auth = format!(
            "*2\r\n$4\r\nAUTH\r\n${}\r\n{rotated}\r\n*4\r\n$6\r\nCLIENT\r\n$4\r\nKILL\r\n$4\r\nTYPE\r\n$6\r\nnormal\r\n",
            rotated.len()
        );
        c.write_all(auth.as_bytes()).unwrap();
        let mut buf = [0u8; 64];
        let _ = c.read(&mut buf).unwrap();
    }
    // The client reconnects with what the provider says now; a command in flight
    // when its connection was killed may fail (typed), later ones succeed.
    let mut ok = false;
    for _ in 0..50 {
        match client.query::<()>(commands::set("after-rotation", 1)).await {
            Ok(()) => {
                ok = true;
                break;
            }
            Err(e) => assert!(e.is_transient() || e.kind() == ErrorKind::Auth, "{e}"),
        }
        pause(Duration::from_millis(50)).await;
    }
    assert!(ok, "the client never reconnected with the rotated password");
    assert!(asked.get() > before, "the provider was asked again");
    works(&client).await;
}

async fn resp3_by_default_and_resp2_on_request<C: AnyClient>(cluster: &Cluster, _: &Scope<'_, '_>) {
    let seeds = cluster.seed_addrs();
    for (protocol, config) in [
        (Protocol::Resp3, Config::default()),
        (Protocol::Resp2, Config::default().protocol(Protocol::Resp2)),
    ] {
        let client = C::try_connect(&seeds, config).await.unwrap();
        let _: i64 = client
            .query(cmd("HSET").arg("h").arg("f").arg("v"))
            .await
            .unwrap();
        let all: Value = client.query(cmd("HGETALL").arg("h")).await.unwrap();
        match protocol {
            Protocol::Resp3 => assert!(matches!(all, Value::Map(_)), "{all:?}"),
            Protocol::Resp2 => assert!(matches!(all, Value::Array(_)), "{all:?}"),
        }
        // Either way it converts to the same map.
        let map: std::collections::HashMap<String, String> =
            client.query(cmd("HGETALL").arg("h")).await.unwrap();
        assert_eq!(map.get("f").map(String::as_str), Some("v"));
        let node = client
            .slot_map()
            .node_for(redis_cluster_uring::slot_for_key(b"h"))
            .cloned()
            .unwrap();
        let info = client.server_info(&node).expect("handshake info");
        assert_eq!(info.protocol, protocol);
        assert!(info.version.is_some());
    }
}
