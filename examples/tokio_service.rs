//! A typical service on a multi-threaded tokio runtime: one `SharedClient`, cloned into 64
//! tasks that each read and write their own keys, single commands and a fan-out pipeline.
//!
//! `SharedClient` is `Send + Sync + Clone`: it runs one `Client` per worker thread, each
//! on its own ring, and hands requests to them through lock-free queues.
//!
//! ```text
//! cargo run --release --example tokio_service -- 127.0.0.1:7000
//! ```
//!
//! `tests/shared.rs` runs this example against a cluster it starts.

use std::time::Instant;

use redis_cluster_uring::{AsyncCommands, Config, Pipeline, Result, SharedClient};

#[tokio::main]
#[allow(dead_code)] // `tests/shared.rs` includes this file and calls `serve` itself.
async fn main() -> Result<()> {
    let seed = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".to_string());
    let done = serve(&[seed], 64, 1_000).await?;
    println!(
        "{} tasks: {} commands in {:?} on {} workers",
        done.tasks, done.commands, done.elapsed, done.workers
    );
    Ok(())
}

/// What [`serve`] did.
#[derive(Debug)]
pub struct Served {
    /// Tasks that ran.
    pub tasks: usize,
    /// Commands they ran, pipelines counted by their commands.
    pub commands: u64,
    /// Worker threads of the client.
    pub workers: usize,
    /// Wall time.
    pub elapsed: std::time::Duration,
}

/// Spawns `tasks` tasks on the current runtime, each running `rounds` rounds of a SET and
/// a GET of its own key, then one pipeline of 32 GETs over every node, and checks every
/// reply.
pub async fn serve(seeds: &[String], tasks: usize, rounds: u64) -> Result<Served> {
    // Each worker builds its own `Config` on its own thread.
    let client = SharedClient::connect(seeds, Config::default).await?;
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            let key = format!("service:{t}");
            for round in 0..rounds {
                // The typed helpers of `AsyncCommands`; their futures are `Send` here.
                client.set(&key, round).await?;
                let value: u64 = client.get(&key).await?;
                assert_eq!(value, round, "a reply reached the wrong caller");
            }
            let mut pipe = Pipeline::with_capacity(32);
            for other in 0..32 {
                pipe.get(format!("service:{}", (t + other) % tasks));
            }
            let values: Vec<Option<u64>> = client.query_pipeline(&pipe).await?;
            assert_eq!(values.len(), 32);
            Ok::<u64, redis_cluster_uring::Error>(2 * rounds + 32)
        }));
    }
    let mut commands = 0;
    for handle in handles {
        commands += handle.await.expect("a task panicked")?;
    }
    let workers = client.workers();
    client.shutdown(std::time::Duration::from_secs(1)).await;
    Ok(Served {
        tasks,
        commands,
        workers,
        elapsed: start.elapsed(),
    })
}
