//! The blocking client: fan-out pipelines in a closed loop on a ring the client owns, no
//! runtime. Prints the backend, the kernel features in use and the time per pipeline; run
//! it under `strace -c` to count system calls per pipeline.
//!
//! ```text
//! cargo run --release --example blocking -- 127.0.0.1:7000 [pipelines] [commands-per-pipeline]
//! strace -f -c -e trace=io_uring_enter,poll,sendto,recvfrom \
//!     target/release/examples/blocking 127.0.0.1:7000 10000 128
//! REDIS_CLUSTER_URING_ENGINE=epoll target/release/examples/blocking 127.0.0.1:7000   # poll(2)
//! ```

use std::time::Instant;

use redis_cluster_uring::{blocking, cmd, Config, Pipeline};

fn main() -> Result<(), redis_cluster_uring::Error> {
    let mut args = std::env::args().skip(1);
    let seed = args.next().unwrap_or_else(|| "127.0.0.1:7000".to_string());
    let pipelines: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let k: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(128);

    // No periodic refresh: the loop below should do nothing but pipelines.
    let config = Config::default().periodic_refresh(None);
    let mut client = blocking::Client::connect(&[seed.as_str()], config)?;
    println!(
        "backend={} features={:?} primaries={}",
        client.engine(),
        client.ring_features(),
        client.slot_map().shards().len()
    );

    // Single commands.
    client.query::<()>(cmd("SET").arg("example:greeting").arg("hello"))?;
    let greeting: String = client.query(cmd("GET").arg("example:greeting"))?;
    assert_eq!(greeting, "hello");

    // A pipeline touching every node: one write per node, all in one submission.
    let mut pipe = Pipeline::with_capacity(k);
    for i in 0..k {
        pipe.get(format!("bench:{i}"));
    }
    client.execute(&pipe)?; // opens every connection before the timing starts
    let start = Instant::now();
    for _ in 0..pipelines {
        for reply in client.execute(&pipe)? {
            reply?; // a server error would be this command's result
        }
    }
    let elapsed = start.elapsed();
    println!(
        "pipelines={pipelines} k={k} connections={} elapsed={elapsed:?} per_pipeline={:?}",
        client.connection_count(),
        elapsed / pipelines.max(1)
    );
    Ok(())
}
