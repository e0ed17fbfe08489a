//! Connecting the way a production service does: a `rediss://` URL with an ACL user,
//! the cluster's CA for TLS, reads from replicas in this service's availability zone,
//! a client name that shows up in `CLIENT LIST`.
//!
//! ```sh
//! REDIS_URL='rediss://checkout:s3cret@10.0.0.5:6379' REDIS_CA=ca.pem ZONE=us-east-1a \
//!     cargo run --example production
//! ```

use redis_cluster_uring::tls::TlsConfig;
use redis_cluster_uring::{engine, AsyncCommands, Client, Config, ErrorKind, Pipeline, ReadFrom};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL")
        .unwrap_or_else(|_| "rediss://default:password@127.0.0.1:6379".into());
    let ca = std::fs::read(std::env::var("REDIS_CA").unwrap_or_else(|_| "ca.pem".into()))?;
    let zone = std::env::var("ZONE").unwrap_or_else(|_| "us-east-1a".into());

    let config = Config::default()
        .tls(TlsConfig::new().add_root_pem(&ca)?)
        .read_from(ReadFrom::AzAffinity(zone))
        .client_name("checkout");

    engine::start(async move {
        let client = match Client::connect(&[url], config).await {
            Ok(client) => client,
            // Wrong credentials and untrusted certificates are their own kinds, and the
            // message names the node (never the password).
            Err(e) if matches!(e.kind(), ErrorKind::Auth | ErrorKind::Tls) => {
                eprintln!("cannot connect: {e}");
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        client.set("cart:42", "3 items").await?;
        // Reads go to a replica in this zone when there is one; writes to primaries.
        let mut pipe = Pipeline::new();
        pipe.get("cart:42").get("cart:43");
        for reply in client.execute(&pipe).await? {
            println!("{:?}", reply?);
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
