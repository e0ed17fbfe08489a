//! The harness against real servers: start, coverage, migration, failover, teardown.

use std::time::Duration;

use test_cluster::{Cluster, ClusterSpec, Reply, Role};

#[test]
fn three_masters_cover_every_slot_and_a_slot_migrates() {
    let cluster = Cluster::start(ClusterSpec::default()).unwrap();
    assert_eq!(cluster.nodes().len(), 3);
    assert_eq!(cluster.seed_addrs().len(), 3);
    let port = cluster.nodes()[0].port;
    let slot = cluster
        .run(port, &["CLUSTER", "KEYSLOT", "{h}"])
        .unwrap()
        .int()
        .unwrap() as u16;
    let from = cluster.master_for_slot(slot);
    let to = cluster.other_master(from);
    for i in 0..250 {
        cluster
            .run(from, &["SET", &format!("{{h}}{i}"), "v"])
            .unwrap();
    }
    cluster.migrate_slot(slot, from, to).unwrap();
    assert_eq!(cluster.master_for_slot(slot), to);
    let count = cluster
        .run(to, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()])
        .unwrap();
    assert_eq!(count, Reply::Int(250));
    cluster.wait_cluster_ok(Duration::from_secs(10)).unwrap();
}

#[test]
fn killed_master_is_replaced_by_its_replica_and_drop_cleans_up() {
    let cluster = Cluster::start(ClusterSpec {
        masters: 3,
        replicas_per_master: 1,
        ..ClusterSpec::default()
    })
    .unwrap();
    assert_eq!(
        cluster
            .nodes()
            .iter()
            .filter(|n| n.role == Role::Replica)
            .count(),
        3
    );
    let victim = cluster.master_for_slot(0);
    cluster.kill_node(victim).unwrap();
    let new_master = cluster.wait_for_failover(0, victim).unwrap();
    assert_ne!(new_master, victim);
    cluster.wait_cluster_ok(Duration::from_secs(30)).unwrap();
    assert!(!cluster
        .seed_addrs()
        .contains(&format!("127.0.0.1:{victim}")));

    let dir = cluster.dir().to_path_buf();
    let pids: Vec<u32> = cluster.nodes().iter().map(|n| n.pid).collect();
    drop(cluster);
    assert!(!dir.exists());
    for pid in pids {
        // A reaped child leaves no /proc entry.
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived"
        );
    }
}

#[test]
fn missing_servers_are_a_clear_error_saying_how_to_install() {
    let e = test_cluster::check_installed_on(Some("/nonexistent")).unwrap_err();
    assert!(matches!(e, test_cluster::HarnessError::MissingServer));
    let text = e.to_string();
    assert!(
        text.contains("apt-get install -y redis-server redis-tools"),
        "{text}"
    );
    assert!(text.contains("scripts/install-redis.sh"), "{text}");
    test_cluster::check_installed_on(None).unwrap();
}
