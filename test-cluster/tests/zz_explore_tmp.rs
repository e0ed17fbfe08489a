use test_cluster::{Cluster, ClusterSpec, Server};
#[test]
fn explore() {
    let c = Cluster::start(ClusterSpec {
        masters: 3,
        replicas_per_master: 1,
        server: Server::Valkey,
        ..ClusterSpec::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "version {} binary {}",
        c.server_version(),
        c.binary().display()
    );
    let p = c.nodes()[0].port;
    println!(
        "NODES:\n{}",
        c.run(p, &["CLUSTER", "NODES"]).unwrap().text().unwrap()
    );
    println!("SLOTS: {:?}", c.run(p, &["CLUSTER", "SLOTS"]).unwrap());
    println!(
        "REPL replica: {}",
        c.run(c.nodes()[3].port, &["INFO", "replication"])
            .unwrap()
            .text()
            .unwrap()
    );
    println!(
        "REPL master: {}",
        c.run(p, &["INFO", "replication"]).unwrap().text().unwrap()
    );
    // migrate with the source's replica killed
    let from = c.master_for_slot(0);
    let to = c.other_master(from);
    for i in 0..10 {
        c.run(from, &["SET", &format!("{{06S}}{i}"), "v"]).unwrap();
    }
    let slot = c
        .run(from, &["CLUSTER", "KEYSLOT", "{06S}"])
        .unwrap()
        .int()
        .unwrap() as u16;
    c.pause_node(c.nodes()[3].port).unwrap();
    let t = std::time::Instant::now();
    let r = c.migrate_slot(slot, from, to);
    println!("migrate with dead replica: {:?} in {:?}", r, t.elapsed());
    println!(
        "SETSLOT reply on replica: {:?}",
        c.run(
            c.nodes()[4].port,
            &["CLUSTER", "SETSLOT", "5", "NODE", &c.nodes()[0].id]
        )
    );
}
