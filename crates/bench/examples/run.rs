//! Runs one benchmark from the command line until the cli has `scsiport bench`:
//! `cargo run --release -p bench --example run -- MINIPORT PATTERN QD THREADS SECONDS [raw] [json]`
//! e.g. `... -- null randread 32 1 5`; `BS=65536` and `MODEL=storport` in
//! the environment set the block size and the port model.

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let cfg = bench::BenchConfig {
        miniport: arg(0, "null").parse().unwrap_or_else(|e| panic!("{e}")),
        pattern: arg(1, "randread").parse().unwrap_or_else(|e| panic!("{e}")),
        queue_depth: arg(2, "1").parse().expect("queue depth"),
        threads: arg(3, "1").parse().expect("threads"),
        duration: Duration::from_secs_f64(arg(4, "5").parse().expect("seconds")),
        block_size: std::env::var("BS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4096),
        model: std::env::var("MODEL")
            .ok()
            .map(|m| m.parse().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or(bench::Model::Scsiport),
        raw: args.iter().any(|a| a == "raw"),
        verify: args.iter().any(|a| a == "verify"),
        ..bench::BenchConfig::default()
    };
    match bench::run(&cfg, |_| {}) {
        Ok(r) if args.iter().any(|a| a == "json") => println!("{}", r.to_json()),
        Ok(r) => println!("{r}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
