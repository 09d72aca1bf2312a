//! Reads one table through ibarrow and prints rows/s and peak memory, for side-by-side
//! comparisons with other readers.
//!
//! `cargo run --release --example scan_table -- "<connection string>" <schema> <table> [partitions] [out.arrows]`
//!
//! With an output path the rows are also written as an Arrow IPC stream, to check memory
//! while streaming to a file.

use std::time::Instant;

use futures::StreamExt;
use ibarrow::{Engine, SourceConfig};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [connection_string, schema, table, rest @ ..] = args.as_slice() else {
        eprintln!("usage: scan_table <connection string> <schema> <table> [partitions]");
        std::process::exit(2);
    };
    let partitions = rest.first().and_then(|p| p.parse().ok()).unwrap_or(1);
    let output = rest.get(1);
    let source = SourceConfig {
        connection_string: Some(connection_string.clone()),
        partitions: Some(partitions),
        min_partition_rows: Some(0),
        ..SourceConfig::default()
    };
    let engine = Engine::builder()
        .source_config("src", source)
        .build()
        .await?;
    let started = Instant::now();
    let mut stream = engine
        .stream(&format!("SELECT * FROM src.\"{schema}\".\"{table}\""))
        .await?;
    let mut writer = match output {
        Some(path) => Some(datafusion::arrow::ipc::writer::StreamWriter::try_new(
            std::io::BufWriter::new(std::fs::File::create(path)?),
            &stream.schema(),
        )?),
        None => None,
    };
    let mut rows = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows();
        if let Some(writer) = writer.as_mut() {
            writer.write(&batch)?;
        }
    }
    if let Some(mut writer) = writer {
        writer.finish()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "ibarrow ({partitions} partition{}) {rows} rows {seconds:.2} s {:.0} rows/s peak RSS {:.0} MB",
        if partitions == 1 { "" } else { "s" },
        rows as f64 / seconds,
        peak_rss_mb()
    );
    Ok(())
}
