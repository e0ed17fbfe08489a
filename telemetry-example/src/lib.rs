//! The client's telemetry exported for real: its spans through `tracing-opentelemetry`
//! into an OpenTelemetry SDK tracer provider, its metrics through
//! `metrics-exporter-prometheus`.
//!
//! `redis-cluster-uring` only *emits*: `tracing` spans (`Config::telemetry`) and, with its
//! `metrics` feature, values through the `metrics` facade. Which exporter receives them
//! is the application's choice, made once at start-up; this crate shows that choice
//! with the two most common exporters and checks (in `tests/`) that what comes out of
//! them is what the OpenTelemetry database conventions ask for.
//!
//! # Layout
//! - [`Telemetry::install`]: the exporters, installed process-wide (a `tracing`
//!   subscriber with the OpenTelemetry layer, a Prometheus recorder).
//! - [`workload`]: a client with `Config::telemetry(true)` and a few requests: single
//!   commands, fan-out pipelines, one command the server refuses.
//! - [`run`]: the two together, on the client's engine; returns the Prometheus text.
//! - `src/main.rs`: the runnable example (spans to stdout, Prometheus text printed).
//! - `tests/export.rs`: a real cluster, an in-memory span exporter, and the checks.

#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use opentelemetry_sdk::Resource;
use redis_cluster_uring::telemetry::{names, TARGET};
use redis_cluster_uring::{cmd, engine, AsyncCommands, Client, Config, Pipeline};
use tracing::Instrument as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::Layer as _;

/// Any error of setting up or flushing the exporters, or of the client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `service.name` of the exported spans, and the name of the tracer.
pub const SERVICE_NAME: &str = "telemetry-example";

/// The span [`run`] wraps the workload in: the request spans are its children, as an
/// application's request spans would be children of its own.
pub const WORKLOAD_SPAN: &str = "telemetry-example.workload";

/// Bucket bounds (seconds) of `db.client.operation.duration`: the ones the OpenTelemetry
/// database conventions advise. Without them the Prometheus exporter renders a histogram
/// as a summary (quantiles), which cannot be aggregated across instances.
pub const DURATION_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// The key the single commands use.
pub const GREETING: &str = "telemetry-example:greeting";

/// How many keys the fan-out pipelines touch: enough to land on every node of a small
/// cluster.
pub const USERS: usize = 30;

/// The `i`th key of the fan-out pipelines.
pub fn user_key(i: usize) -> String {
    format!("telemetry-example:user:{i}")
}

/// The exporters, installed for the whole process.
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    prometheus: PrometheusHandle,
}

impl Telemetry {
    /// Installs the process-wide `tracing` subscriber (the OpenTelemetry layer over a
    /// tracer provider that hands each finished span to `spans`) and the process-wide
    /// Prometheus recorder. Once per process: a second call fails, as both are global.
    ///
    /// Spans are exported one at a time as they close (the simple processor), which
    /// suits an example and a test; a service would use the batch processor.
    pub fn install<E: SpanExporter + 'static>(spans: E) -> Result<Telemetry, BoxError> {
        let tracer_provider = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
            .with_simple_exporter(spans)
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer_provider.tracer(SERVICE_NAME))
            // The client opens and closes its spans around I/O without entering them,
            // so busy and idle times would be zeros.
            .with_tracked_inactivity(false)
            // The client's spans and ours; not its log events (engine choice, warnings).
            .with_filter(
                Targets::new()
                    .with_target(TARGET, tracing::Level::INFO)
                    .with_target(module_path!(), tracing::Level::INFO),
            );
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;

        let prometheus = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(names::OPERATION_DURATION.to_string()),
                &DURATION_BUCKETS,
            )?
            .install_recorder()?;
        Ok(Telemetry {
            tracer_provider,
            prometheus,
        })
    }

    /// Hands every finished span to the exporter and renders the metrics in the
    /// Prometheus text format (what a `/metrics` endpoint would serve).
    pub fn finish(&self) -> Result<String, BoxError> {
        self.tracer_provider.force_flush()?;
        Ok(self.prometheus.render())
    }
}

/// Connects a client with `Config::telemetry(true)` and runs: `SET` and `GET` of
/// [`GREETING`]; a pipeline of [`USERS`] `SET`s and one of as many `GET`s (keys on every
/// node: one batch span per node); a pipeline of two different commands; an `INCR` of
/// the greeting, which the server refuses (`ERR`). Needs the client's engine
/// (`engine::start`).
pub async fn workload<S: AsRef<str>>(seeds: &[S]) -> redis_cluster_uring::Result<()> {
    let client = Client::connect(seeds, Config::default().telemetry(true)).await?;
    client.set(GREETING, "hello").await?;
    let _: Option<String> = client.get(GREETING).await?;

    let mut sets = Pipeline::new();
    let mut gets = Pipeline::new();
    for i in 0..USERS {
        sets.set(user_key(i), i);
        gets.get(user_key(i));
    }
    for reply in client.execute(&sets).await? {
        reply?;
    }
    for reply in client.execute(&gets).await? {
        reply?;
    }

    let mut mixed = Pipeline::new();
    mixed.get(GREETING).add(cmd("EXISTS").arg(GREETING));
    for reply in client.execute(&mixed).await? {
        reply?;
    }

    // Not a number: the server's error is this command's result, and its span's
    // `error.type`.
    let _refused = client.query::<i64>(cmd("INCR").arg(GREETING)).await;
    Ok(())
}

/// Installs the exporters ([`Telemetry::install`], so once per process), runs the
/// [`workload`] on the client's engine inside a span of its own ([`WORKLOAD_SPAN`]),
/// and returns the Prometheus text once every span has been exported.
pub fn run<S: AsRef<str>, E: SpanExporter + 'static>(
    seeds: &[S],
    spans: E,
) -> Result<String, BoxError> {
    let telemetry = Telemetry::install(spans)?;
    let workload_span = tracing::info_span!(WORKLOAD_SPAN);
    engine::start(workload(seeds).instrument(workload_span))?;
    telemetry.finish()
}
