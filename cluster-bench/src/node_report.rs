//! The per-node breakdown of a fan-out pipeline (`Client::execute_with_report`): for each
//! node, what it was sent and how long its batch took, over many pipelines, with and
//! without one node slowed down (`--slow-node`). A slow shard is named; the pipeline's
//! time is its time.

use std::collections::BTreeMap;
use std::time::Duration;

use redis_cluster_uring::report::PipelineReport;
use redis_cluster_uring::{Client, Config, NodeAddr, Pipeline};

use crate::clients::{keys, Workload, VALUE};

/// Per node over the measured pipelines.
#[derive(Default)]
struct Acc {
    rtts: Vec<Duration>,
    commands: usize,
    bytes_sent: usize,
    reply_bytes: usize,
    unanswered: usize,
}

/// Runs `pipelines` fan-out pipelines of `k` commands through `seeds` (after a warm-up)
/// and renders the breakdown: the last pipeline's report, then per node the median and
/// p99 of its batch's round trip against the pipeline's.
pub fn breakdown(
    seeds: &[String],
    k: usize,
    pipelines: usize,
    title: &str,
) -> Result<String, String> {
    let seeds = seeds.to_vec();
    let title = title.to_string();
    redis_cluster_uring::engine::start_with(redis_cluster_uring::Engine::Auto, async move {
        let client = Client::connect(&seeds, Config::default().periodic_refresh(None))
            .await
            .map_err(|e| e.to_string())?;
        let mut pipe = Pipeline::with_capacity(k);
        for (i, key) in keys(Workload::Fanout, k).iter().enumerate() {
            if i % 2 == 0 {
                pipe.get(key.as_str());
            } else {
                pipe.set(key.as_str(), VALUE);
            }
        }
        for _ in 0..pipelines.min(50) {
            client.execute(&pipe).await.map_err(|e| e.to_string())?;
        }
        let mut per_node: BTreeMap<NodeAddr, Acc> = BTreeMap::new();
        let mut elapsed = Vec::with_capacity(pipelines);
        let mut last: Option<PipelineReport> = None;
        for _ in 0..pipelines {
            let (_, report) = client
                .execute_with_report(&pipe)
                .await
                .map_err(|e| e.to_string())?;
            elapsed.push(report.elapsed);
            for n in &report.nodes {
                let acc = per_node.entry(n.node.clone()).or_default();
                match n.round_trip {
                    Some(rtt) => acc.rtts.push(rtt),
                    None => acc.unanswered += 1,
                }
                acc.commands += n.commands;
                acc.bytes_sent += n.bytes_sent;
                acc.reply_bytes += n.reply_bytes;
            }
            last = Some(report);
        }
        let mut out = format!("\n## {title}\n\nThe last pipeline's report:\n\n```text\n");
        if let Some(report) = &last {
            out.push_str(&report.to_string());
        }
        out.push_str("\n```\n\n");
        let pipeline_p50 = percentile(&mut elapsed, 0.5);
        out.push_str(&format!(
            "Over {pipelines} pipelines of K={k} (pipeline p50 {:.0} µs):\n\n\
             | node | commands/pipeline | bytes sent/pipeline | reply bytes/pipeline | batch rtt p50 µs | p99 µs | p50 ÷ pipeline p50 | unanswered |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
            micros(pipeline_p50)
        ));
        for (node, acc) in &mut per_node {
            let p50 = percentile(&mut acc.rtts, 0.5);
            let p99 = percentile(&mut acc.rtts, 0.99);
            out.push_str(&format!(
                "| {node} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {} |\n",
                acc.commands as f64 / pipelines as f64,
                acc.bytes_sent as f64 / pipelines as f64,
                acc.reply_bytes as f64 / pipelines as f64,
                micros(p50),
                micros(p99),
                p50.as_secs_f64() / pipeline_p50.as_secs_f64().max(1e-9),
                acc.unanswered
            ));
        }
        Ok::<String, String>(out)
    })
    .map_err(|e| e.to_string())?
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentile(v: &mut [Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}
