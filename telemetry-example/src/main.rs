//! The client's telemetry, exported: every span to stdout (OpenTelemetry's stdout
//! exporter), then the metrics in the Prometheus text format.
//!
//! ```text
//! cargo run -p telemetry-example -- 127.0.0.1:7000
//! ```

fn main() {
    let seeds: Vec<String> = std::env::args().skip(1).collect();
    let seeds = if seeds.is_empty() {
        vec!["127.0.0.1:7000".to_string()]
    } else {
        seeds
    };
    match telemetry_example::run(&seeds, opentelemetry_stdout::SpanExporter::default()) {
        Ok(prometheus) => print!("\n# Prometheus\n{prometheus}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
