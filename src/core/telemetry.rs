//! Observability in the shapes OpenTelemetry expects, off unless `Config::telemetry` asks
//! for it: a span per request, a child span per node batch, and metrics, named and
//! attributed after the database semantic conventions.
//!
//! A `Trace` rides inside the core's `Request`, so both clients (and every path a
//! request takes: pipelines, single commands, blocking commands, node queries, atomic
//! pipelines; not yet a `WATCH` session's commands) are traced by the same code; the
//! drivers do nothing for it. A `SharedClient` runs each request inside its caller's
//! span, on the worker, so the request's span is a child of the caller's there too. Time comes from the driver's
//! instants, as everywhere in the core; spans are opened and closed where the request
//! writes a batch and judges a round, so their length is what the caller waited.
//!
//! - **Request span** `redis.request` (its name for OpenTelemetry in `otel.name`: the
//!   operation), with `db.system.name` (`redis` or `valkey`, from the nodes'
//!   handshakes), `db.operation.name` (the command, `BATCH <command>` for a pipeline of
//!   one command, `BATCH` otherwise), `db.operation.batch.size` (pipelines),
//!   `db.namespace` (the database index), `server.address` and `server.port` (when one
//!   node served it), `error.type` (the server's error code, or the error kind).
//!   A failed request's span also has `otel.status_code = ERROR`.
//! - **Node batch span** `redis.batch` (its OpenTelemetry name too, so a trace tells it
//!   from its request), a child: one per batch written to a node, from the write to the
//!   end of its round (the client judges a round when every node's replies are in, or at
//!   the deadline), with `db.operation.name`, `server.address`, `server.port`,
//!   `db.operation.batch.size` (its commands, when more than one) and
//!   `redis.round_trip_us`. Numbers are recorded as `i64`, which exporters keep as
//!   integers.
//! - **Metrics** (with the `metrics` feature, through the `metrics` facade):
//!   `db.client.operation.duration` (a histogram in seconds, per node batch, recorded
//!   when the request ends: labels `db.system.name`, `db.operation.name`,
//!   `server.address`, `server.port`, and `error.type` when the request failed),
//!   `redis.client.redirects`, `redis.client.retries`, `redis.client.refreshes`,
//!   `redis.client.connections.opened`, `redis.client.timeouts` (counters) and
//!   `redis.client.requests.in_flight` (a gauge).
//!
//! Off, a request pays one branch on an `Option` that is `None`.

use std::borrow::Cow;
use std::time::Instant;

use tracing::field::Empty;
use tracing::Span;

use crate::core::cmd::Cmd;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::node::NodeAddr;
use crate::core::value::Value;

/// The `tracing` target of every span this crate opens.
pub const TARGET: &str = "redis_cluster_uring";

/// The metric names, in one place.
pub mod names {
    /// Histogram, seconds, per node batch.
    pub const OPERATION_DURATION: &str = "db.client.operation.duration";
    /// Counter: `MOVED` and `ASK` redirects followed.
    pub const REDIRECTS: &str = "redis.client.redirects";
    /// Counter: commands retried.
    pub const RETRIES: &str = "redis.client.retries";
    /// Counter: slot-map refreshes completed.
    pub const REFRESHES: &str = "redis.client.refreshes";
    /// Counter: connections opened (reconnects included).
    pub const CONNECTIONS_OPENED: &str = "redis.client.connections.opened";
    /// Counter: requests that ended with a command timed out.
    pub const TIMEOUTS: &str = "redis.client.timeouts";
    /// Gauge: requests under way.
    pub const IN_FLIGHT: &str = "redis.client.requests.in_flight";
    /// Counter: reads answered by the client-side cache.
    pub const CACHE_HITS: &str = "redis.client.cache.hits";
    /// Counter: cacheable reads the cache did not have.
    pub const CACHE_MISSES: &str = "redis.client.cache.misses";
    /// Counter: keys invalidated by the servers.
    pub const CACHE_INVALIDATIONS: &str = "redis.client.cache.invalidations";
    /// Counter: whole-cache drops (a server's flush, `cache_clear`).
    pub const CACHE_FLUSHES: &str = "redis.client.cache.flushes";
    /// Gauge: keys cached.
    pub const CACHE_ENTRIES: &str = "redis.client.cache.entries";
}

/// The operation name of a request: the command's name, upper case; for a pipeline,
/// `BATCH` and the command when they are all the same one, `BATCH` otherwise.
pub fn operation_name(cmds: &[Cmd]) -> Cow<'static, str> {
    fn upper(name: &[u8]) -> String {
        String::from_utf8_lossy(name).to_ascii_uppercase()
    }
    match cmds {
        [] => Cow::Borrowed("BATCH"),
        [one] => Cow::Owned(upper(one.name())),
        [first, rest @ ..] => {
            let name = first.name();
            if rest.iter().all(|c| c.name().eq_ignore_ascii_case(name)) {
                Cow::Owned(format!("BATCH {}", upper(name)))
            } else {
                Cow::Borrowed("BATCH")
            }
        }
    }
}

/// `error.type` of an error: the server's error code (`WRONGTYPE`, `MOVED`...) where it
/// sent one, the kind's name (`Timeout`, `Io`...) otherwise. Few values, as the
/// convention asks.
pub fn error_type(e: &Error) -> Cow<'static, str> {
    match e.code() {
        Some(code) if !code.is_empty() => Cow::Owned(code.to_string()),
        _ => Cow::Owned(format!("{:?}", e.kind())),
    }
}

/// `db.system.name` from what a node's handshake said (`None`: not known yet).
pub fn system_name(server: Option<&str>) -> &'static str {
    match server {
        Some(s) if s.eq_ignore_ascii_case("valkey") => "valkey",
        _ => "redis",
    }
}

/// Describes the metrics (unit and help) to the recorder once per process.
pub(crate) fn describe() {
    #[cfg(feature = "metrics")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            use metrics::Unit;
            metrics::describe_histogram!(
                names::OPERATION_DURATION,
                Unit::Seconds,
                "Duration of database client operations, per node batch."
            );
            metrics::describe_counter!(names::REDIRECTS, "MOVED and ASK redirects followed.");
            metrics::describe_counter!(names::RETRIES, "Commands retried.");
            metrics::describe_counter!(names::REFRESHES, "Slot-map refreshes completed.");
            metrics::describe_counter!(
                names::CONNECTIONS_OPENED,
                "Connections opened, reconnects included."
            );
            metrics::describe_counter!(names::TIMEOUTS, "Requests with a command timed out.");
            metrics::describe_gauge!(names::IN_FLIGHT, "Requests under way.");
            metrics::describe_counter!(
                names::CACHE_HITS,
                "Reads answered by the client-side cache."
            );
            metrics::describe_counter!(
                names::CACHE_MISSES,
                "Cacheable reads the cache did not have."
            );
            metrics::describe_counter!(
                names::CACHE_INVALIDATIONS,
                "Keys invalidated by the servers."
            );
            metrics::describe_counter!(
                names::CACHE_FLUSHES,
                "Whole-cache drops: a server's flush or cache_clear."
            );
            metrics::describe_gauge!(names::CACHE_ENTRIES, "Keys in the client-side cache.");
        });
    }
}

/// One batch written and not yet judged.
struct Batch {
    node: NodeAddr,
    span: Span,
    written: Instant,
}

/// A request's spans and metrics (see the [module](self)).
pub(crate) struct Trace {
    span: Span,
    operation: Cow<'static, str>,
    system: &'static str,
    metrics: bool,
    /// This round's batches.
    batches: Vec<Batch>,
    /// The one node that served the request so far, or `None` once several did.
    node: Option<Option<NodeAddr>>,
    /// A round ended and its batches are still open: closed at the next instant given.
    round_over: bool,
    /// The last instant the request saw (its end, once it is done).
    last: Option<Instant>,
    /// Each node batch's duration, recorded once the request's outcome is known.
    samples: Vec<(NodeAddr, f64)>,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("operation", &self.operation)
            .field("batches", &self.batches.len())
            .finish()
    }
}

impl Trace {
    /// Opens the request's span (a child of the caller's current span).
    pub(crate) fn start(cmds: &[Cmd], system: &'static str, database: u32, metrics: bool) -> Trace {
        let operation = operation_name(cmds);
        let batch_size = (cmds.len() > 1).then_some(cmds.len() as i64);
        let span = tracing::info_span!(
            target: TARGET,
            "redis.request",
            otel.name = %operation,
            otel.kind = "client",
            db.system.name = system,
            db.operation.name = %operation,
            db.operation.batch.size = batch_size,
            db.namespace = %database,
            server.address = Empty,
            server.port = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        );
        if metrics {
            describe();
            gauge(names::IN_FLIGHT, 1.0);
        }
        Trace {
            span,
            operation,
            system,
            metrics,
            batches: Vec::new(),
            node: None,
            round_over: false,
            last: None,
            samples: Vec::new(),
        }
    }

    /// A batch of `commands` went to `node` at `now`.
    pub(crate) fn written(&mut self, node: &NodeAddr, commands: usize, now: Instant) {
        self.close_round(now);
        let span = tracing::info_span!(
            target: TARGET,
            parent: &self.span,
            "redis.batch",
            otel.kind = "client",
            db.system.name = self.system,
            db.operation.name = %self.operation,
            db.operation.batch.size = (commands > 1).then_some(commands as i64),
            server.address = %node.host,
            server.port = i64::from(node.port),
            redis.round_trip_us = Empty,
        );
        self.node = match self.node.take() {
            None => Some(Some(node.clone())),
            Some(Some(one)) if one == *node => Some(Some(one)),
            Some(_) => Some(None),
        };
        self.batches.push(Batch {
            node: node.clone(),
            span,
            written: now,
        });
    }

    /// Batch spans open now (for tests).
    #[cfg(test)]
    pub(crate) fn open_batches(&self) -> usize {
        self.batches.len()
    }

    /// The round's wait is over: its batches close at the next instant the request sees.
    pub(crate) fn round_ended(&mut self) {
        self.round_over = true;
    }

    /// Closes the batches of a round that ended, as of `now`.
    pub(crate) fn close_round(&mut self, now: Instant) {
        self.last = Some(now);
        if !std::mem::take(&mut self.round_over) {
            return;
        }
        for batch in self.batches.drain(..) {
            let took = now.saturating_duration_since(batch.written);
            let micros = i64::try_from(took.as_micros()).unwrap_or(i64::MAX);
            batch.span.record("redis.round_trip_us", micros);
            if self.metrics {
                self.samples.push((batch.node, took.as_secs_f64()));
            }
        }
    }

    /// The request's outcome: `error.type` when it failed (as a whole, or its one
    /// command), the serving node when there was one; the spans close (a round still
    /// open ends at the last instant the request saw).
    pub(crate) fn finish(mut self, outcome: std::result::Result<&[Result<Value>], &Error>) {
        if let Some(last) = self.last {
            self.round_over = true;
            self.close_round(last);
        }
        if let Some(Some(node)) = &self.node {
            self.span.record("server.address", node.host.as_str());
            self.span.record("server.port", i64::from(node.port));
        }
        let failure = match outcome {
            Err(e) => Some(e),
            Ok([one]) => one.as_ref().err(),
            Ok(_) => None,
        };
        let error = failure.map(error_type);
        if let Some(error) = &error {
            self.span.record("error.type", error.as_ref());
            self.span.record("otel.status_code", "ERROR");
        }
        for (node, seconds) in std::mem::take(&mut self.samples) {
            histogram(
                names::OPERATION_DURATION,
                seconds,
                self.system,
                &self.operation,
                &node,
                error.as_deref(),
            );
        }
        let timed_out = match outcome {
            Err(e) => e.kind() == ErrorKind::Timeout,
            Ok(results) => results
                .iter()
                .any(|r| r.as_ref().is_err_and(|e| e.kind() == ErrorKind::Timeout)),
        };
        if self.metrics && timed_out {
            counter(names::TIMEOUTS, 1);
        }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if self.metrics {
            gauge(names::IN_FLIGHT, -1.0);
        }
    }
}

/// Adds `by` to a counter (nothing without the `metrics` feature).
pub(crate) fn counter(name: &'static str, by: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!(name).increment(by);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, by);
}

pub(crate) fn gauge(name: &'static str, by: f64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(name).increment(by);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, by);
}

fn histogram(
    name: &'static str,
    seconds: f64,
    system: &'static str,
    op: &str,
    node: &NodeAddr,
    error: Option<&str>,
) {
    #[cfg(feature = "metrics")]
    {
        let mut labels = vec![
            metrics::Label::new("db.system.name", system),
            metrics::Label::new("db.operation.name", op.to_string()),
            metrics::Label::new("server.address", node.host.clone()),
            metrics::Label::new("server.port", node.port.to_string()),
        ];
        if let Some(error) = error {
            labels.push(metrics::Label::new("error.type", error.to_string()));
        }
        metrics::histogram!(name, labels).record(seconds);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (name, seconds, system, op, node, error);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cmd::cmd;

    #[test]
    fn operation_names_follow_the_batch_convention() {
        assert_eq!(operation_name(&[cmd("get").arg("k")]), "GET");
        assert_eq!(
            operation_name(&[cmd("GET").arg("a"), cmd("get").arg("b")]),
            "BATCH GET"
        );
        assert_eq!(
            operation_name(&[cmd("GET").arg("a"), cmd("SET").arg("b").arg(1)]),
            "BATCH"
        );
        assert_eq!(operation_name(&[]), "BATCH");
    }

    #[test]
    fn error_types_are_codes_or_kinds() {
        let e = Error::new(ErrorKind::ServerError, "WRONGTYPE Operation against a key");
        assert_eq!(error_type(&e), "WRONGTYPE");
        assert_eq!(
            error_type(&Error::new(ErrorKind::Timeout, "late")),
            "Timeout"
        );
        assert_eq!(system_name(Some("valkey")), "valkey");
        assert_eq!(system_name(Some("redis")), "redis");
        assert_eq!(system_name(None), "redis");
    }
}
