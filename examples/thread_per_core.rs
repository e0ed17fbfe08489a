//! Thread-per-core: one runtime and one client per core, sharing nothing.
//!
//! Each thread owns its connections (a `Client` is `!Send`), runs fan-out pipelines for a
//! few seconds and reports its throughput; the total shows how throughput scales.
//!
//! ```text
//! cargo run --release --example thread_per_core -- 127.0.0.1:7000 [threads] [seconds]
//! ```

use std::time::{Duration, Instant};

use redis_cluster_uring::{engine, Client, Config, Pipeline};

fn main() {
    let mut args = std::env::args().skip(1);
    let seed = args.next().unwrap_or_else(|| "127.0.0.1:7000".to_string());
    let threads: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);

    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let seed = seed.clone();
            std::thread::spawn(move || {
                engine::start(async move {
                    let client = Client::connect(&[seed.as_str()], Config::default()).await?;
                    let mut pipe = Pipeline::with_capacity(128);
                    for i in 0..128 {
                        pipe.get(format!("tpc:{t}:{i}"));
                    }
                    let deadline = Instant::now() + Duration::from_secs(seconds);
                    let mut commands = 0u64;
                    while Instant::now() < deadline {
                        client.execute(&pipe).await?;
                        commands += pipe.len() as u64;
                    }
                    Ok::<u64, redis_cluster_uring::Error>(commands)
                })
            })
        })
        .collect();
    let mut total = 0;
    for (t, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(n)) => {
                println!("thread {t}: {:.0} commands/s", n as f64 / seconds as f64);
                total += n;
            }
            Ok(Err(e)) => {
                eprintln!("thread {t}: error {e}");
                std::process::exit(1);
            }
            Err(_) => {
                eprintln!("thread {t} panicked");
                std::process::exit(1);
            }
        }
    }
    println!(
        "total: {:.0} commands/s on {threads} threads",
        total as f64 / seconds as f64
    );
}
