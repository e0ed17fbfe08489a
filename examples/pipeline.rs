//! Runs fan-out pipelines in a closed loop and prints what they cost: used to count
//! system calls per pipeline with `strace -f -c`.
//!
//! ```text
//! cargo run --release --example pipeline -- 127.0.0.1:7000 [pipelines] [commands-per-pipeline]
//! strace -f -c -e trace=io_uring_enter,epoll_wait,read,write \
//!     target/release/examples/pipeline 127.0.0.1:7000 10000 128
//! ```

use std::time::Instant;

use redis_cluster_uring::{Client, Config, Pipeline};

fn main() {
    let mut args = std::env::args().skip(1);
    let seed = args.next().unwrap_or_else(|| "127.0.0.1:7000".to_string());
    let pipelines: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let k: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(128);
    let outcome = tokio_uring::start(async move {
        let client =
            Client::connect(&[seed.as_str()], Config::default().periodic_refresh(None)).await?;
        let mut pipe = Pipeline::with_capacity(k);
        for i in 0..k {
            pipe.get(format!("bench:{i}"));
        }
        // Warm up: open every connection before counting.
        client.execute(&pipe).await?;
        let before = client.stats();
        let start = Instant::now();
        for _ in 0..pipelines {
            let replies = client.execute(&pipe).await?;
            debug_assert_eq!(replies.len(), k);
        }
        let elapsed = start.elapsed();
        let after = client.stats();
        println!(
            "nodes={} pipelines={pipelines} k={k} elapsed={elapsed:?} per_pipeline={:?} writes/pipeline={:.2} reads/pipeline={:.2}",
            client.slot_map().shards().len(),
            elapsed / pipelines as u32,
            (after.writes - before.writes) as f64 / pipelines as f64,
            (after.reads - before.reads) as f64 / pipelines as f64,
        );
        Ok::<(), redis_cluster_uring::Error>(())
    });
    if let Err(e) = outcome {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
