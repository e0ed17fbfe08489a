//! Quick start: connect, set, get, one cross-node pipeline.
//!
//! ```text
//! cargo run --example quick_start -- 127.0.0.1:7000
//! ```

use redis_cluster_uring::{cmd, AsyncCommands, Client, Config, Pipeline, Value};

fn main() {
    let seed = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".to_string());
    let outcome = tokio_uring::start(async move {
        let client = Client::connect(&[seed.as_str()], Config::default()).await?;
        client.set("greeting", "hello").await?;
        let greeting: Option<String> = client.get("greeting").await?;
        println!("greeting = {greeting:?}");

        // Keys on every node, one pipeline: one write per node, all in flight at once.
        let mut pipe = Pipeline::new();
        for i in 0..10 {
            pipe.set(format!("user:{i}"), i).get(format!("user:{i}"));
        }
        pipe.add(cmd("INCR").arg("visits"));
        for (i, reply) in client.execute(&pipe).await?.into_iter().enumerate() {
            match reply {
                Ok(Value::Bulk(b)) => println!("{i}: {}", String::from_utf8_lossy(&b)),
                Ok(other) => println!("{i}: {other:?}"),
                Err(e) => println!("{i}: error {e}"),
            }
        }
        println!("{:?}", client.stats());
        Ok::<(), redis_cluster_uring::Error>(())
    });
    if let Err(e) = outcome {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
