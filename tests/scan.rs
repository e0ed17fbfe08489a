//! Cluster SCAN against real clusters: every key of every primary, MATCH and TYPE, and
//! every key that existed for the whole scan still returned while slots migrate under it.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis_cluster_uring::scan::ScanOptions;
use redis_cluster_uring::{cmd, slot_for_key, Pipeline};
use support::{client, cluster, run};

fn as_strings(keys: Vec<bytes::Bytes>) -> HashSet<String> {
    keys.into_iter()
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .collect()
}

#[test]
fn scan_returns_every_key_with_match_and_type() {
    let cluster = cluster(3, 0);
    run(async {
        let client = client(&cluster).await;
        let mut pipe = Pipeline::new();
        for i in 0..3000 {
            pipe.set(format!("user:{i}"), i);
        }
        for i in 0..300 {
            pipe.add(cmd("HSET").arg(format!("h:{i}")).arg("f").arg(i));
        }
        client.execute(&pipe).await.unwrap();

        let mut scan = client.scan(ScanOptions {
            count: Some(200),
            ..ScanOptions::default()
        });
        let all = as_strings(scan.collect_all().await.unwrap());
        assert_eq!(scan.slots_scanned(), 16384);
        assert_eq!(all.len(), 3300);
        assert!(all.contains("user:2999") && all.contains("h:0"));

        let matched = as_strings(
            client
                .scan(ScanOptions {
                    pattern: Some("user:1??".into()),
                    ..ScanOptions::default()
                })
                .collect_all()
                .await
                .unwrap(),
        );
        assert_eq!(matched.len(), 100, "user:100..user:199");

        let hashes = as_strings(
            client
                .scan(ScanOptions {
                    key_type: Some("hash".into()),
                    ..ScanOptions::default()
                })
                .collect_all()
                .await
                .unwrap(),
        );
        assert_eq!(hashes.len(), 300);
        assert!(hashes.iter().all(|k| k.starts_with("h:")));
    });
}

#[test]
fn a_scan_survives_live_slot_migrations() {
    let cluster = cluster(3, 0);
    let tags: Vec<String> = (0..12).map(|i| format!("{{mv{i}}}")).collect();
    let loaded = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (cluster_ref, loaded_ref, tags_ref) = (&cluster, &loaded, &tags);
        scope.spawn(move || {
            while !loaded_ref.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            for tag in tags_ref {
                let slot = slot_for_key(tag.as_bytes()).get();
                let from = cluster_ref.master_for_slot(slot);
                let to = cluster_ref.other_master(from);
                // In steps, with the scan running between them.
                cluster_ref.begin_migration(slot, from, to).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                cluster_ref.move_keys(slot, from, to).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                cluster_ref.finish_migration(slot, from, to).unwrap();
            }
        });
        run(async {
            let client = client(&cluster).await;
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
            let mut scan = client.scan(ScanOptions {
                count: Some(10),
                ..ScanOptions::default()
            });
            let mut seen = HashSet::new();
            let mut batches = 0;
            while let Some(keys) = scan.next_batch().await.unwrap() {
                batches += 1;
                seen.extend(as_strings(keys));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let missing: Vec<&String> = expected.difference(&seen).collect();
            eprintln!(
                "scan under migration: {batches} batches, {} keys seen, {} missing",
                seen.len(),
                missing.len()
            );
            assert!(missing.is_empty(), "missed {missing:?}");
        });
    });
}
