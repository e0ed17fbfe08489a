//! Spans and metrics after OpenTelemetry's database conventions (`Config::telemetry`),
//! captured from a real cluster on both clients: a span per request with a child per
//! node batch, their attributes, and (with the `metrics` feature) the histogram and
//! counters. Off, nothing is emitted.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::Scope;

use redis_cluster_uring::{cmd, slot_for_key, Config, ErrorKind, Pipeline};
use support::clients::{on_both_clients, AnyClient};
use support::Cluster;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

on_both_clients! {
    a_pipeline_a_command_and_an_error_have_their_spans(3, 0);
}

/// A `SharedClient` runs each request on a worker thread, inside its caller's span: the
/// request's span is that span's child, so a service's trace shows its Redis calls.
/// The one test of this binary with a global subscriber (the worker threads have no
/// default of their own); the others keep theirs on their own thread.
#[test]
fn a_shared_client_request_is_a_child_of_its_callers_span() {
    use tracing::Instrument;
    let cluster = support::cluster(3, 0);
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = redis_cluster_uring::SharedClient::connect_with_workers(
            &cluster.seed_addrs(),
            1,
            || Config::default().telemetry(true),
        )
        .await
        .unwrap();
        let caller = tracing::info_span!(target: "redis_cluster_uring::test", "caller");
        let caller_id = caller.id().unwrap().into_u64();
        client
            .query::<()>(cmd("SET").arg("otel:shared").arg(1))
            .instrument(caller.clone())
            .await
            .unwrap();
        let mut pipe = Pipeline::new();
        for i in 0..30 {
            pipe.get(format!("otel:shared:{i}"));
        }
        client
            .execute(&pipe)
            .instrument(caller.clone())
            .await
            .unwrap();
        client.shutdown(std::time::Duration::from_secs(1)).await;
        let spans = capture.take();
        let requests: Vec<_> = spans.iter().filter(|s| s.name == "redis.request").collect();
        assert_eq!(requests.len(), 2, "{spans:#?}");
        for request in requests {
            assert_eq!(request.parent, Some(caller_id), "{request:?}");
        }
        let names: Vec<_> = spans
            .iter()
            .filter(|s| s.parent == Some(caller_id))
            .filter_map(|s| field(s, "otel.name"))
            .collect();
        assert_eq!(names, ["SET", "BATCH GET"]);
    });
}

/// One span as the subscriber saw it.
#[derive(Debug, Clone)]
struct SpanRecord {
    id: u64,
    name: &'static str,
    metadata: &'static Metadata<'static>,
    parent: Option<u64>,
    fields: BTreeMap<String, String>,
    closed: bool,
}

/// A subscriber that keeps every span of this crate's target, with its fields (those
/// recorded later included), its parent (given, or the span the thread is in) and
/// whether it closed.
#[derive(Default, Clone)]
struct Capture {
    spans: Arc<Mutex<BTreeMap<u64, SpanRecord>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

thread_local! {
    /// The spans this thread is in, innermost last (the contextual parent).
    static ENTERED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("redis_cluster_uring")
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = match attrs.parent() {
            Some(p) => Some(p.into_u64()),
            None if attrs.is_contextual() => ENTERED.with(|e| e.borrow().last().copied()),
            None => None,
        };
        self.spans.lock().unwrap().insert(
            id,
            SpanRecord {
                id,
                name: attrs.metadata().name(),
                metadata: attrs.metadata(),
                parent,
                fields,
                closed: false,
            },
        );
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(s) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut s.fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    /// What `Span::current()` asks: the span this thread is in.
    fn current_span(&self) -> tracing_core::span::Current {
        let current = ENTERED.with(|e| e.borrow().last().copied());
        let spans = self.spans.lock().unwrap();
        match current.and_then(|id| spans.get(&id).map(|s| (id, s.metadata))) {
            Some((id, metadata)) => tracing_core::span::Current::new(Id::from_u64(id), metadata),
            None => tracing_core::span::Current::none(),
        }
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|e| e.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, _: &Id) {
        ENTERED.with(|e| e.borrow_mut().pop());
    }

    fn try_close(&self, id: Id) -> bool {
        if let Some(s) = self.spans.lock().unwrap().get_mut(&id.into_u64()) {
            s.closed = true;
        }
        true
    }
}

impl Capture {
    /// Every span kept so far, in the order they opened; forgotten here.
    fn take(&self) -> Vec<SpanRecord> {
        std::mem::take(&mut *self.spans.lock().unwrap())
            .into_values()
            .collect()
    }
}

fn field<'a>(span: &'a SpanRecord, name: &str) -> Option<&'a str> {
    span.fields.get(name).map(String::as_str)
}

async fn a_pipeline_a_command_and_an_error_have_their_spans<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    let capture = Capture::default();
    let _spans = tracing::subscriber::set_default(capture.clone());
    #[cfg(feature = "metrics")]
    let recorder = metrics_capture::Recorder::default();
    #[cfg(feature = "metrics")]
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let system = match cluster.server() {
        support::Server::Valkey => "valkey",
        support::Server::Redis => "redis",
    };
    let masters: Vec<u16> = cluster
        .nodes()
        .iter()
        .filter(|n| n.role == test_cluster::Role::Master)
        .map(|n| n.port)
        .collect();

    // Off by default: a client without telemetry opens no span.
    let quiet = C::connect(cluster, Config::default()).await;
    quiet
        .query::<()>(cmd("SET").arg("quiet").arg(1))
        .await
        .unwrap();
    assert!(capture.take().is_empty(), "telemetry is off by default");
    drop(quiet);

    let client = C::connect(cluster, Config::default().telemetry(true)).await;
    // Warm: every node connected, so the servers said what they are.
    let mut pipe = Pipeline::new();
    for i in 0..30 {
        pipe.set(format!("otel:{i}"), i);
    }
    client.execute(&pipe).await.unwrap();
    capture.take();

    // A pipeline over every node: one request span, one child per node batch.
    let mut pipe = Pipeline::new();
    for i in 0..30 {
        pipe.get(format!("otel:{i}"));
    }
    client.execute(&pipe).await.unwrap();
    let spans = capture.take();
    let requests: Vec<_> = spans.iter().filter(|s| s.name == "redis.request").collect();
    assert_eq!(requests.len(), 1, "{spans:#?}");
    let request = requests[0];
    assert!(request.closed);
    assert_eq!(field(request, "otel.name"), Some("BATCH GET"));
    assert_eq!(field(request, "otel.kind"), Some("client"));
    assert_eq!(field(request, "db.operation.name"), Some("BATCH GET"));
    assert_eq!(field(request, "db.operation.batch.size"), Some("30"));
    assert_eq!(field(request, "db.system.name"), Some(system));
    assert_eq!(field(request, "db.namespace"), Some("0"));
    // Several nodes served it: the nodes are on the batches, not on the request.
    assert_eq!(field(request, "server.address"), None);
    assert_eq!(field(request, "error.type"), None);
    assert_eq!(field(request, "otel.status_code"), None);
    let batches: Vec<_> = spans.iter().filter(|s| s.name == "redis.batch").collect();
    assert_eq!(batches.len(), 3, "one batch per primary: {spans:#?}");
    let mut ports = Vec::new();
    let mut commands = 0;
    for b in &batches {
        assert_eq!(b.parent, Some(request.id));
        assert!(b.closed);
        // Its own name in a trace, not its request's.
        assert_eq!(field(b, "otel.name"), None);
        assert_eq!(field(b, "otel.kind"), Some("client"));
        assert_eq!(field(b, "server.address"), Some("127.0.0.1"));
        assert_eq!(field(b, "db.system.name"), Some(system));
        assert_eq!(field(b, "db.operation.name"), Some("BATCH GET"));
        ports.push(field(b, "server.port").unwrap().parse::<u16>().unwrap());
        commands += field(b, "db.operation.batch.size")
            .unwrap()
            .parse::<u64>()
            .unwrap();
        assert!(field(b, "redis.round_trip_us").is_some(), "{b:?}");
    }
    ports.sort_unstable();
    let mut want = masters.clone();
    want.sort_unstable();
    assert_eq!(ports, want);
    assert_eq!(commands, 30);

    // One command: its node on the request span.
    let key = "otel:1";
    let owner = cluster.master_for_slot(slot_for_key(key.as_bytes()).get());
    client
        .query::<Option<String>>(cmd("GET").arg(key))
        .await
        .unwrap();
    let spans = capture.take();
    let request = spans.iter().find(|s| s.name == "redis.request").unwrap();
    assert_eq!(field(request, "otel.name"), Some("GET"));
    assert_eq!(field(request, "db.operation.batch.size"), None);
    assert_eq!(field(request, "server.address"), Some("127.0.0.1"));
    assert_eq!(
        field(request, "server.port"),
        Some(owner.to_string().as_str())
    );
    // A batch of one command has no batch size (the conventions never say 1).
    let batch = spans.iter().find(|s| s.name == "redis.batch").unwrap();
    assert_eq!(field(batch, "db.operation.batch.size"), None);
    assert_eq!(batch.parent, Some(request.id));

    // A command the server refuses: `error.type` is its error code.
    client
        .query::<()>(cmd("SET").arg("otel:text").arg("abc"))
        .await
        .unwrap();
    capture.take();
    let e = client
        .query::<i64>(cmd("LPUSH").arg("otel:text").arg("x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServerError);
    let spans = capture.take();
    let request = spans.iter().find(|s| s.name == "redis.request").unwrap();
    assert_eq!(field(request, "otel.name"), Some("LPUSH"));
    assert_eq!(
        field(request, "error.type"),
        Some("WRONGTYPE"),
        "{request:?}"
    );
    assert_eq!(field(request, "otel.status_code"), Some("ERROR"));

    #[cfg(feature = "metrics")]
    {
        use redis_cluster_uring::core::telemetry::names;
        // One sample per node batch: 3 + 3 for the two pipelines, 1 for each of the
        // three single commands (the quiet client's none).
        let samples = recorder.histogram(names::OPERATION_DURATION);
        assert_eq!(samples.len(), 6 + 3, "{samples:?}");
        let labels = recorder.histogram_labels(names::OPERATION_DURATION);
        assert!(labels
            .iter()
            .all(|l| l.get("db.system.name").map(String::as_str) == Some(system)));
        assert!(labels
            .iter()
            .any(|l| l.get("db.operation.name").map(String::as_str) == Some("BATCH GET")));
        assert!(labels.iter().all(|l| l
            .get("server.port")
            .is_some_and(|p| want.contains(&p.parse().unwrap()))));
        // The failed request's sample, and only it, has `error.type`.
        let failed: Vec<_> = labels
            .iter()
            .filter(|l| l.contains_key("error.type"))
            .collect();
        assert_eq!(failed.len(), 1, "{labels:?}");
        assert_eq!(failed[0]["error.type"], "WRONGTYPE");
        assert_eq!(failed[0]["db.operation.name"], "LPUSH");
        assert!(samples.iter().all(|s| *s >= 0.0 && *s < 5.0));
        // Every node was connected to, and nothing is in flight any more.
        assert!(recorder.counter(names::CONNECTIONS_OPENED) >= 3);
        assert_eq!(recorder.gauge(names::IN_FLIGHT), 0.0);

        // A slot moved behind the client's back: the MOVED is counted as a redirect.
        let before = recorder.counter(names::REDIRECTS);
        let slot = slot_for_key(b"otel:moved").get();
        let from = cluster.master_for_slot(slot);
        let to = cluster.other_master(from);
        cluster.migrate_slot(slot, from, to).unwrap();
        client
            .query::<()>(cmd("SET").arg("otel:moved").arg(1))
            .await
            .unwrap();
        assert_eq!(recorder.counter(names::REDIRECTS), before + 1);
    }
}

/// A `metrics` recorder that keeps what it is given, by name and labels.
#[cfg(feature = "metrics")]
mod metrics_capture {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
        SharedString, Unit,
    };

    type Labels = BTreeMap<String, String>;

    #[derive(Default)]
    struct Store {
        counters: BTreeMap<String, u64>,
        gauges: BTreeMap<String, f64>,
        histograms: Vec<(String, Labels, f64)>,
    }

    #[derive(Default, Clone)]
    pub struct Recorder {
        store: Arc<Mutex<Store>>,
    }

    struct Handle {
        store: Arc<Mutex<Store>>,
        name: String,
        labels: Labels,
    }

    impl CounterFn for Handle {
        fn increment(&self, value: u64) {
            *self
                .store
                .lock()
                .unwrap()
                .counters
                .entry(self.name.clone())
                .or_default() += value;
        }

        fn absolute(&self, value: u64) {
            self.store
                .lock()
                .unwrap()
                .counters
                .insert(self.name.clone(), value);
        }
    }

    impl GaugeFn for Handle {
        fn increment(&self, value: f64) {
            *self
                .store
                .lock()
                .unwrap()
                .gauges
                .entry(self.name.clone())
                .or_default() += value;
        }

        fn decrement(&self, value: f64) {
            GaugeFn::increment(self, -value);
        }

        fn set(&self, value: f64) {
            self.store
                .lock()
                .unwrap()
                .gauges
                .insert(self.name.clone(), value);
        }
    }

    impl HistogramFn for Handle {
        fn record(&self, value: f64) {
            self.store.lock().unwrap().histograms.push((
                self.name.clone(),
                self.labels.clone(),
                value,
            ));
        }
    }

    impl Recorder {
        fn handle(&self, key: &Key) -> Arc<Handle> {
            Arc::new(Handle {
                store: self.store.clone(),
                name: key.name().to_string(),
                labels: key
                    .labels()
                    .map(|l| (l.key().to_string(), l.value().to_string()))
                    .collect(),
            })
        }

        pub fn counter(&self, name: &str) -> u64 {
            let store = self.store.lock().unwrap();
            store.counters.get(name).copied().unwrap_or(0)
        }

        pub fn gauge(&self, name: &str) -> f64 {
            let store = self.store.lock().unwrap();
            store.gauges.get(name).copied().unwrap_or(0.0)
        }

        pub fn histogram(&self, name: &str) -> Vec<f64> {
            let store = self.store.lock().unwrap();
            let samples = store.histograms.iter().filter(|(n, _, _)| n == name);
            samples.map(|(_, _, v)| *v).collect()
        }

        pub fn histogram_labels(&self, name: &str) -> Vec<Labels> {
            let store = self.store.lock().unwrap();
            let samples = store.histograms.iter().filter(|(n, _, _)| n == name);
            samples.map(|(_, l, _)| l.clone()).collect()
        }
    }

    impl metrics::Recorder for Recorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.handle(key))
        }

        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.handle(key))
        }

        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.handle(key))
        }
    }
}
