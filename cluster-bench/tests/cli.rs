//! The benchmark binary end to end: bad input fails clearly, a tiny run produces the
//! JSON records, the verify load finds no mismatch, and seeds given as URLs carry their
//! credentials (refused ones are a clear failure naming the node).

use std::process::Command;

use test_cluster::{Cluster, ClusterSpec};

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cluster-bench"))
}

#[test]
fn bad_arguments_fail_with_a_message_not_a_panic() {
    for args in [
        &["--k", "0"][..],
        &["--clients", "nosuch"],
        &["--workloads", "sideways"],
        &["--duration", "-1"],
        &["--nodes", "127.0.0.1:1", "--delay-ms", "1"],
        &["--nodes", "http://127.0.0.1:1"],
        &["--nodes", "rediss://127.0.0.1:1"],
        &[
            "--nodes",
            "rediss://127.0.0.1:1,127.0.0.1:2",
            "--tls-insecure",
        ],
        &["--nodes", "127.0.0.1:1", "--tls-insecure"],
        &["--nodes", "127.0.0.1:1", "--tls"],
        &["--tls", "--delay-ms", "1"],
        &["--pin", "--threads", "2"],
        &["--workloads", "zipf", "--zipf-keys", "3"],
        &["--workloads", "zipf", "--zipf-cache-entries", "0"],
    ] {
        let out = bench().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cluster-bench:") || err.contains("error:"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn unreachable_cluster_is_a_clear_error() {
    let out = bench()
        .args([
            "--nodes",
            "127.0.0.1:1",
            "--clients",
            "uring",
            "--duration",
            "0.1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn tiny_run_writes_json_records_with_every_field() {
    let json = std::env::temp_dir().join(format!("cluster-bench-{}.json", std::process::id()));
    let svg = json.with_extension("svg");
    let svg_cpu = json.with_extension("cpu.svg");
    let out = bench()
        .args(["--duration", "0.1", "--k", "16", "--delay-ms", "0,1"])
        .args([
            "--clients",
            "uring,serial",
            "--workloads",
            "fanout,single-node",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .arg("--svg-cpu")
        .arg(&svg_cpu)
        .arg("--pin")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("fan-out ÷ single-node"), "{stdout}");
    // The pinning used, or why there was none.
    assert!(
        stdout.contains("pinned (--pin): the client on CPU") || stdout.contains("only one CPU"),
        "{stdout}"
    );
    assert!(stdout.contains("user ns/cmd | sys ns/cmd"), "{stdout}");
    let text = std::fs::read_to_string(&json).unwrap();
    for field in [
        "workload",
        "client",
        "k",
        "delay_ms",
        "p50_us",
        "p99_us",
        "p999_us",
        "cmds_per_s",
        "cpu_ns_per_cmd",
        "user_ns_per_cmd",
        "sys_ns_per_cmd",
        "cpu_ms",
    ] {
        assert!(text.contains(&format!("\"{field}\"")), "missing {field}");
    }
    // Every record has its system-call count or the reason it has none.
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    for r in &records {
        assert!(
            r.get("syscalls_per_op").is_some() != r.get("syscalls_note").is_some(),
            "{r}"
        );
        let (cpu, user, sys) = (
            r["cpu_ns_per_cmd"].as_f64().unwrap(),
            r["user_ns_per_cmd"].as_f64().unwrap(),
            r["sys_ns_per_cmd"].as_f64().unwrap(),
        );
        assert!((user + sys - cpu).abs() < 1e-6 * cpu.max(1.0), "{r}");
    }
    // 2 clients x 2 workloads x 1 K x 2 delays.
    assert_eq!(text.matches("\"workload\"").count(), 8);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let cpu_figure = std::fs::read_to_string(&svg_cpu).unwrap();
    assert!(cpu_figure.contains("CPU per command"), "{cpu_figure}");
    let _ = std::fs::remove_file(json);
    let _ = std::fs::remove_file(svg);
    let _ = std::fs::remove_file(svg_cpu);
}

#[test]
fn tiny_zipf_run_reports_hit_rates_targets_and_pure_hits() {
    let json = std::env::temp_dir().join(format!("cluster-bench-zipf-{}.json", std::process::id()));
    let out = bench()
        .args([
            "--workloads",
            "zipf",
            "--zipf-keys",
            "2000",
            "--delay-ms",
            "0",
        ])
        .args(["--duration", "0.2", "--concurrency", "4"])
        .args(["--clients", "ring,blocking,redis-rs"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for text in [
        "## zipf, injected delay 0 ms",
        "| ring+cache | 4 |",
        "| blocking+cache | 1 |",
        "| redis-rs | 4 |",
        "## zipf: pure cache hits",
        "## zipf targets",
        "Verdict (zipf",
    ] {
        assert!(stdout.contains(text), "missing {text:?}: {stdout}");
    }
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["workload"] == "zipf").collect();
    assert_eq!(rows.len(), 5, "{records:?}");
    for r in &rows {
        let cached = r["cache"].as_bool().unwrap();
        // A hit rate on the cached rows only, and the ratio to their uncached row.
        assert_eq!(r.get("hit_rate").is_some(), cached, "{r}");
        assert_eq!(r.get("reads_div_uncached").is_some(), cached, "{r}");
        assert!(r["reads"].as_u64().unwrap() > 0, "{r}");
    }
    // Pure hits: ring and blocking, on the hot keys and on the whole key set.
    let hits: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["workload"] == "zipf-hit")
        .collect();
    assert_eq!(hits.len(), 4, "{records:?}");
    for h in &hits {
        assert_eq!(h["gets"], h["hits"], "every GET a hit: {h}");
        assert_eq!(h["socket_writes"], 0, "{h}");
    }
    for set in ["hot", "zipf"] {
        assert_eq!(
            hits.iter().filter(|h| h["key_set"] == set).count(),
            2,
            "{set}"
        );
    }
    assert_eq!(
        records
            .iter()
            .filter(|r| r["workload"] == "zipf-harness")
            .count(),
        1
    );
    let _ = std::fs::remove_file(json);
}

#[test]
fn verify_load_finds_no_mismatch() {
    let out = bench()
        .args(["--verify", "--duration", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("mismatches=0"), "{stdout}");
}

#[test]
fn password_urls_wrong_is_a_clear_failure_right_runs() {
    const PASSWORD: &str = "bench-pw";
    let cluster = Cluster::start(ClusterSpec {
        password: Some(PASSWORD.into()),
        ..ClusterSpec::default()
    })
    .unwrap_or_else(|e| panic!("could not start a password cluster: {e}"));
    let seeds = cluster.seed_addrs();
    let tiny = [
        "--clients",
        "uring,floor",
        "--workloads",
        "fanout",
        "--k",
        "16",
        "--duration",
        "0.1",
    ];

    let wrong = format!("redis://:wrong-pw@{}", seeds[0]);
    let out = bench()
        .args(["--nodes", &wrong])
        .args(tiny)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("authentication"), "{err}");
    assert!(err.contains(&seeds[0]), "names the node: {err}");
    assert!(!err.contains("wrong-pw"), "shows the password: {err}");
    assert!(!err.contains("panicked"), "{err}");

    let right: Vec<String> = seeds
        .iter()
        .map(|s| format!("redis://:{PASSWORD}@{s}"))
        .collect();
    let out = bench()
        .args(["--nodes", &right.join(",")])
        .args(tiny)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("| uring | 16 |"), "{stdout}");
    // The floor authenticates its sockets at setup with the seed's credentials.
    assert!(stdout.contains("| floor | 16 |"), "{stdout}");
    assert!(!stdout.contains(PASSWORD), "{stdout}");
}

#[test]
fn the_floor_runs_beside_the_clients_and_every_row_is_compared_with_it() {
    let json =
        std::env::temp_dir().join(format!("cluster-bench-floor-{}.json", std::process::id()));
    let out = bench()
        .args(["--duration", "0.1", "--k", "16,128", "--delay-ms", "0"])
        .args([
            "--clients",
            "floor,uring",
            "--workloads",
            "fanout,single-node,concurrent",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("| p50 ÷ floor | CPU ÷ floor |"), "{stdout}");
    assert!(stdout.contains("| floor | 128 |"), "{stdout}");
    // Skipped with its reason, not silently.
    assert!(
        stdout.contains("note: floor skipped for concurrent:"),
        "{stdout}"
    );
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    // floor and uring at 2 K x 2 workloads, and uring's concurrent row.
    assert_eq!(records.len(), 9, "{records:?}");
    for r in &records {
        let has_floor = r["workload"] != "concurrent";
        assert_eq!(r.get("p50_div_floor").is_some(), has_floor, "{r}");
        assert_eq!(r.get("cpu_div_floor").is_some(), has_floor, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        if r["client"] == "floor" {
            assert_eq!(r["p50_div_floor"], 1.0, "{r}");
            // None per pipeline (the measuring loop's own are a few per case).
            let allocs = r["allocs_per_cmd"].as_f64().unwrap();
            assert!(allocs < 0.01, "the floor allocates per pipeline: {r}");
            // One send per node: three for fan-out, one for single-node.
            let sends = if r["workload"] == "fanout" { 3.0 } else { 1.0 };
            assert_eq!(r["writes_per_op"], sends, "{r}");
        }
    }
}
