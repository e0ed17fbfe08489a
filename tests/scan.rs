//! Cluster SCAN against real clusters, on both clients: every key of every primary, MATCH
//! and TYPE, and every key that existed for the whole scan still returned while slots
//! migrate under it.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::Scope;
use std::time::Duration;

use redis_cluster_uring::scan::ScanOptions;
use redis_cluster_uring::{cmd, slot_for_key, Config, Pipeline};
use support::clients::{on_both_clients, AnyClient};
use support::Cluster;

on_both_clients! {
    scan_returns_every_key_with_match_and_type(3, 0);
    a_scan_survives_live_slot_migrations(3, 0);
}

fn as_strings(keys: Vec<bytes::Bytes>) -> HashSet<String> {
    keys.into_iter()
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .collect()
}

async fn scan_returns_every_key_with_match_and_type<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let client = C::connect(cluster, Config::default()).await;
    let mut pipe = Pipeline::new();
    for i in 0..3000 {
        pipe.set(format!("user:{i}"), i);
    }
    for i in 0..300 {
        pipe.add(cmd("HSET").arg(format!("h:{i}")).arg("f").arg(i));
    }
    client.execute(&pipe).await.unwrap();

    let options = ScanOptions {
        count: Some(200),
        ..ScanOptions::default()
    };
    let scanned = client.scan(options, Duration::ZERO).await.unwrap();
    assert_eq!(scanned.slots_scanned, 16384);
    let all = as_strings(scanned.keys);
    assert_eq!(all.len(), 3300);
    assert!(all.contains("user:2999") && all.contains("h:0"));

    let options = ScanOptions {
        pattern: Some("user:1??".into()),
        ..ScanOptions::default()
    };
    let matched = as_strings(client.scan(options, Duration::ZERO).await.unwrap().keys);
    assert_eq!(matched.len(), 100, "user:100..user:199");

    let options = ScanOptions {
        key_type: Some("hash".into()),
        ..ScanOptions::default()
    };
    let hashes = as_strings(client.scan(options, Duration::ZERO).await.unwrap().keys);
    assert_eq!(hashes.len(), 300);
    assert!(hashes.iter().all(|k| k.starts_with("h:")));
}

async fn a_scan_survives_live_slot_migrations<'s, C: AnyClient>(
    cluster: &'s Cluster,
    helpers: &'s Scope<'s, '_>,
) {
    let tags: Vec<String> = (0..12).map(|i| format!("{{mv{i}}}")).collect();
    let loaded = Arc::new(AtomicBool::new(false));
    let (moving, loaded_there) = (tags.clone(), loaded.clone());
    helpers.spawn(move || {
        while !loaded_there.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        for tag in &moving {
            // In steps, with the scan running between them.
            let slot = slot_for_key(tag.as_bytes()).get();
            cluster
                .migrate_slot_in_steps(slot, Duration::from_millis(50))
                .unwrap();
        }
    });
    let client = C::connect(cluster, Config::default()).await;
    let mut pipe = Pipeline::new();
    let mut expected = HashSet::new();
    for tag in &tags {
        for i in 0..50 {
            let key = format!("{tag}:{i}");
            pipe.set(&key, i);
            expected.insert(key);
        }
    }
    for i in 0..2000 {
        let key = format!("plain:{i}");
        pipe.set(&key, i);
        expected.insert(key);
    }
    client.execute(&pipe).await.unwrap();
    loaded.store(true, Ordering::SeqCst);
    // Small batches, so the migrations happen while the scan is under way.
    let options = ScanOptions {
        count: Some(10),
        ..ScanOptions::default()
    };
    let scanned = client
        .scan(options, Duration::from_millis(1))
        .await
        .unwrap();
    let batches = scanned.batches;
    let seen = as_strings(scanned.keys);
    let missing: Vec<&String> = expected.difference(&seen).collect();
    eprintln!(
        "scan under migration: {batches} batches, {} keys seen, {} missing",
        seen.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "missed {missing:?}");
}
