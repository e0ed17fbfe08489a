//! The benchmark binary end to end: bad input fails clearly, a tiny run produces the
//! JSON records, and the verify load finds no mismatch.

use std::process::Command;

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
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("fan-out ÷ single-node"), "{stdout}");
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
    ] {
        assert!(text.contains(&format!("\"{field}\"")), "missing {field}");
    }
    // 2 clients x 2 workloads x 1 K x 2 delays.
    assert_eq!(text.matches("\"workload\"").count(), 8);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let _ = std::fs::remove_file(json);
    let _ = std::fs::remove_file(svg);
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
