//! What comes out of the real exporters when the example runs against a real cluster:
//! the spans as `tracing-opentelemetry` hands them to an OpenTelemetry exporter (an
//! in-memory one here), and the metrics as `metrics-exporter-prometheus` renders them.
//! Everything expected is computed from the harness (which node owns which slot), not
//! from the client under test.
//!
//! One test: the exporters are process-wide and are installed once.

use std::collections::BTreeMap;

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use redis_cluster_uring::slot_for_key;
use telemetry_example::{user_key, GREETING, USERS, WORKLOAD_SPAN};
use test_cluster::{Cluster, ClusterSpec, Server};

const MASTERS: usize = 3;

#[test]
fn spans_and_metrics_come_out_of_the_exporters_as_the_conventions_ask() {
    let cluster = match Cluster::start(ClusterSpec {
        masters: MASTERS,
        replicas_per_master: 0,
        server: Server::Redis,
        ..ClusterSpec::default()
    }) {
        Ok(c) => c,
        Err(e) => panic!("could not start a test cluster: {e}"),
    };
    let exporter = InMemorySpanExporter::default();
    let prometheus = telemetry_example::run(&cluster.seed_addrs(), exporter.clone())
        .expect("the example runs against the cluster");
    let spans = exporter.get_finished_spans().expect("the exported spans");

    // Where the harness says each key lives.
    let greeting_port = port_of(&cluster, GREETING);
    let mut users_per_port: BTreeMap<i64, i64> = BTreeMap::new();
    for i in 0..USERS {
        *users_per_port
            .entry(port_of(&cluster, &user_key(i)))
            .or_default() += 1;
    }
    assert_eq!(
        users_per_port.len(),
        MASTERS,
        "the pipeline's keys are meant to reach every node"
    );

    check_spans(&spans, greeting_port, &users_per_port);
    check_prometheus(&prometheus, greeting_port, &users_per_port);
}

fn check_spans(spans: &[SpanData], greeting_port: i64, users_per_port: &BTreeMap<i64, i64>) {
    let roots: Vec<&SpanData> = spans.iter().filter(|s| s.name == WORKLOAD_SPAN).collect();
    assert_eq!(roots.len(), 1, "one workload span in {:#?}", names(spans));
    let root = roots[0];
    assert_eq!(root.parent_span_id, SpanId::INVALID);

    // The request spans: children of the caller's span, in the caller's trace, named
    // after their operation (`otel.name`).
    let requests: Vec<&SpanData> = children(spans, root);
    let mut request_names: Vec<&str> = requests.iter().map(|s| s.name.as_ref()).collect();
    request_names.sort_unstable();
    assert_eq!(
        request_names,
        ["BATCH", "BATCH GET", "BATCH SET", "GET", "INCR", "SET"],
        "the request spans under the workload span"
    );
    let request = |name: &str| *requests.iter().find(|s| s.name == name).unwrap();

    for span in &requests {
        let name = span.name.as_ref();
        assert_eq!(span.span_kind, SpanKind::Client, "{name}: kind");
        assert_eq!(
            span.span_context.trace_id(),
            root.span_context.trace_id(),
            "{name}: in the caller's trace"
        );
        assert_eq!(attr(span, "db.system.name"), Some(s("redis")), "{name}");
        assert_eq!(attr(span, "db.operation.name"), Some(s(name)), "{name}");
        assert_eq!(attr(span, "db.namespace"), Some(s("0")), "{name}");
        // Success leaves the status unset; the refused INCR is checked below.
        if name != "INCR" {
            assert_eq!(span.status, Status::Unset, "{name}: status");
            assert_eq!(attr(span, "error.type"), None, "{name}: error.type");
        }
    }

    // A single command: the node that served it, one batch of one command.
    for name in ["SET", "GET", "INCR"] {
        let span = request(name);
        assert_eq!(attr(span, "server.address"), Some(s("127.0.0.1")), "{name}");
        assert_eq!(int(span, "server.port"), Some(greeting_port), "{name}");
        assert_eq!(int(span, "db.operation.batch.size"), None, "{name}");
        let batches = children(spans, span);
        assert_eq!(batches.len(), 1, "{name}: one batch span");
        // A batch of one command has no batch size: the conventions say a batch is
        // never 1.
        check_batch(batches[0], span, greeting_port, None);
    }
    let refused = request("INCR");
    assert_eq!(
        attr(refused, "error.type"),
        Some(s("ERR")),
        "the refused INCR's error.type"
    );
    // The conventions also ask for an `Error` status on a failed operation.
    assert!(
        matches!(refused.status, Status::Error { .. }),
        "INCR: status {:?}",
        refused.status
    );

    // The fan-out pipelines: their size, no single server, one batch span per node
    // with that node's share of the commands.
    for name in ["BATCH SET", "BATCH GET"] {
        let span = request(name);
        assert_eq!(
            int(span, "db.operation.batch.size"),
            Some(USERS as i64),
            "{name}"
        );
        assert_eq!(attr(span, "server.address"), None, "{name}: several nodes");
        assert_eq!(int(span, "server.port"), None, "{name}: several nodes");
        let mut batches = children(spans, span);
        batches.sort_by_key(|b| port(b));
        let ports: Vec<i64> = batches.iter().map(|b| port(b)).collect();
        assert_eq!(
            ports,
            users_per_port.keys().copied().collect::<Vec<_>>(),
            "{name}: one batch span per node"
        );
        for batch in batches {
            check_batch(batch, span, port(batch), Some(users_per_port[&port(batch)]));
        }
    }

    // Two different commands on the greeting's node: `BATCH`, one batch of two.
    let mixed = request("BATCH");
    assert_eq!(int(mixed, "db.operation.batch.size"), Some(2));
    assert_eq!(int(mixed, "server.port"), Some(greeting_port));
    let batches = children(spans, mixed);
    assert_eq!(batches.len(), 1, "BATCH: one batch span");
    check_batch(batches[0], mixed, greeting_port, Some(2));

    // Nothing else was exported: the workload span, its requests, their batches.
    let batch_count: usize = requests.iter().map(|r| children(spans, r).len()).sum();
    assert_eq!(
        spans.len(),
        1 + requests.len() + batch_count,
        "unexpected spans in {:#?}",
        names(spans)
    );
}

/// A node batch span: a client span `redis.batch` under its request, in its trace, with
/// the request's operation, the node and its share of the commands (none for one).
fn check_batch(batch: &SpanData, request: &SpanData, port: i64, commands: Option<i64>) {
    let name = request.name.as_ref();
    assert_eq!(batch.parent_span_id, request.span_context.span_id());
    assert_eq!(
        batch.span_context.trace_id(),
        request.span_context.trace_id()
    );
    assert_eq!(batch.name, "redis.batch", "{name}: batch span name");
    assert_eq!(batch.span_kind, SpanKind::Client, "{name}: batch kind");
    assert_eq!(attr(batch, "db.system.name"), Some(s("redis")), "{name}");
    assert_eq!(attr(batch, "db.operation.name"), Some(s(name)), "{name}");
    assert_eq!(
        attr(batch, "server.address"),
        Some(s("127.0.0.1")),
        "{name}"
    );
    assert_eq!(int(batch, "server.port"), Some(port), "{name}");
    assert_eq!(
        int(batch, "db.operation.batch.size"),
        commands,
        "{name} on {port}"
    );
    assert!(
        int(batch, "redis.round_trip_us").is_some(),
        "{name}: redis.round_trip_us recorded"
    );
}

fn check_prometheus(text: &str, greeting_port: i64, users_per_port: &BTreeMap<i64, i64>) {
    // Dots become underscores in metric names and label names alike.
    assert!(
        text.contains("# TYPE db_client_operation_duration histogram\n"),
        "a histogram, not a summary:\n{text}"
    );
    let counts = series(text, "db_client_operation_duration_count");
    let count = |op: &str, port: i64| -> Option<f64> {
        let mut labels: BTreeMap<String, String> = [
            ("db_system_name", "redis".to_string()),
            ("db_operation_name", op.to_string()),
            ("server_address", "127.0.0.1".to_string()),
            ("server_port", port.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // The refused INCR's sample carries its `error.type`, as the conventions ask.
        if op == "INCR" {
            labels.insert("error_type".to_string(), "ERR".to_string());
        }
        counts
            .iter()
            .find(|(l, _)| *l == labels)
            .map(|(_, value)| *value)
    };
    // One observation per node batch.
    for op in ["SET", "GET", "INCR", "BATCH"] {
        assert_eq!(count(op, greeting_port), Some(1.0), "{op}:\n{text}");
    }
    for op in ["BATCH SET", "BATCH GET"] {
        for &port in users_per_port.keys() {
            assert_eq!(count(op, port), Some(1.0), "{op} on {port}:\n{text}");
        }
    }
    assert_eq!(
        counts.len(),
        4 + 2 * users_per_port.len(),
        "no other series:\n{text}"
    );
    // Every series has its buckets, the advised bounds included.
    let buckets = series(text, "db_client_operation_duration_bucket");
    for (labels, _) in &counts {
        for le in ["0.001", "10", "+Inf"] {
            let mut with_le = labels.clone();
            with_le.insert("le".to_string(), le.to_string());
            assert!(
                buckets.iter().any(|(l, _)| *l == with_le),
                "bucket le={le} of {labels:?}:\n{text}"
            );
        }
    }

    assert!(text.contains("# TYPE redis_client_connections_opened counter\n"));
    let opened = series(text, "redis_client_connections_opened");
    assert_eq!(opened.len(), 1, "{text}");
    assert!(
        opened[0].1 >= users_per_port.len() as f64,
        "a connection to every node at least:\n{text}"
    );
    // Every request is over.
    assert_eq!(
        series(text, "redis_client_requests_in_flight"),
        [(BTreeMap::new(), 0.0)],
        "{text}"
    );
}

/// The samples of metric `name` in Prometheus text: their labels and values.
fn series(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(rest) => {
                    let (labels, value) = rest.split_once("} ")?;
                    (parse_labels(labels), value)
                }
                None => (BTreeMap::new(), rest.strip_prefix(' ')?),
            };
            Some((labels, value.parse().expect("a sample value")))
        })
        .collect()
}

/// `a="x",b="y"` (our values hold no quotes or commas).
fn parse_labels(labels: &str) -> BTreeMap<String, String> {
    labels
        .split(',')
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("label=value");
            (key.to_string(), value.trim_matches('"').to_string())
        })
        .collect()
}

fn port_of(cluster: &Cluster, key: &str) -> i64 {
    i64::from(cluster.master_for_slot(slot_for_key(key.as_bytes()).get()))
}

fn children<'a>(spans: &'a [SpanData], parent: &SpanData) -> Vec<&'a SpanData> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_context.span_id())
        .collect()
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn port(span: &SpanData) -> i64 {
    int(span, "server.port").unwrap_or_else(|| panic!("{}: no server.port", span.name))
}

/// An integer attribute: the conventions type `server.port` and
/// `db.operation.batch.size` as ints, and the client records them as `i64` so that
/// tracing-opentelemetry keeps them so (a `u64` would arrive as a string of digits).
fn int(span: &SpanData, key: &str) -> Option<i64> {
    match attr(span, key)? {
        Value::I64(n) => Some(n),
        other => panic!("{}: {key} = {other:?}, not an integer", span.name),
    }
}

fn s(value: &str) -> Value {
    Value::from(value.to_string())
}

fn names(spans: &[SpanData]) -> Vec<(&str, SpanId, SpanId)> {
    spans
        .iter()
        .map(|s| (s.name.as_ref(), s.span_context.span_id(), s.parent_span_id))
        .collect()
}
