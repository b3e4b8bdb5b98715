//! The management commands (`scsiport stat`, `sessions`, `adapter`): clients of the control
//! socket that `serve` runs ([`crate::control`]). They run on the main thread and block.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use bytesize::ByteSize;
use port::LatencyHistogram;
use serde::Serialize;

use crate::control::{self, Counters, Reply, Request, SessionInfo, StatSample};

/// How long a management command waits for the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time between the two samples a rate is computed from.
const STAT_INTERVAL: Duration = Duration::from_secs(1);
/// `adapter stop|restart` waits for the port (up to its own 30 s limit).
const ADAPTER_TIMEOUT: Duration =
    Duration::from_secs(control::ADAPTER_CONTROL_TIMEOUT.as_secs() + 10);

fn stat_sample(socket: &Path) -> Result<StatSample> {
    match control::request(socket, &Request::Stat {}, REQUEST_TIMEOUT)? {
        Reply::Stat(s) => Ok(s),
        Reply::Error { message } => bail!("{message}"),
        other => bail!("unexpected reply {other:?}"),
    }
}

/// One LU between two samples: cumulative counters and rates over the interval.
#[derive(Debug, Clone, Serialize)]
pub struct LuView {
    /// Adapter name.
    pub adapter: String,
    /// Adapter state (`running`/`stopped`).
    pub state: String,
    /// `path:target:lun` on the adapter.
    pub address: String,
    /// `IQN/LUN` of each export.
    pub exports: Vec<String>,
    /// Counters at the second sample.
    pub counters: Counters,
    /// Seconds between the samples.
    pub interval_s: f64,
    /// Commands completed per second over the interval.
    pub iops: f64,
    /// Read bandwidth over the interval, MiB/s.
    pub read_mib_s: f64,
    /// Write bandwidth over the interval, MiB/s.
    pub write_mib_s: f64,
    /// Mean latency of the commands completed over the interval, µs (0: none completed).
    pub avg_us: u64,
    /// Approximate 99th-percentile latency over the interval, µs: the upper bound of its log2
    /// bucket (0: none completed).
    pub p99_us: u64,
    /// Requests outstanding in the port at the second sample (queue depth).
    pub qd: u64,
}

/// Per-LU views from two samples of the same server (`before` first).
pub fn views(before: &StatSample, after: &StatSample) -> Vec<LuView> {
    let dt = after.uptime_ns.saturating_sub(before.uptime_ns) as f64 / 1e9;
    let rate = |d: u64| if dt > 0.0 { d as f64 / dt } else { 0.0 };
    let mut out = Vec::new();
    for a in &after.adapters {
        let old_adapter = before.adapters.iter().find(|b| b.name == a.name);
        for lu in &a.lus {
            let old = old_adapter
                .and_then(|b| b.lus.iter().find(|l| l.address == lu.address))
                .map(|l| l.counters)
                .unwrap_or_default();
            let c = lu.counters;
            let interval = LatencyHistogram::from(c.latency).since(&old.latency.into());
            out.push(LuView {
                adapter: a.name.clone(),
                state: a.state.clone(),
                address: lu.address.clone(),
                exports: lu.exports.clone(),
                counters: c,
                interval_s: dt,
                iops: rate(c.commands.saturating_sub(old.commands)),
                read_mib_s: rate(c.bytes_read.saturating_sub(old.bytes_read)) / 1048576.0,
                write_mib_s: rate(c.bytes_written.saturating_sub(old.bytes_written)) / 1048576.0,
                avg_us: interval.mean_us(),
                p99_us: interval.percentile_us(99.0),
                qd: c.outstanding,
            });
        }
    }
    out
}

fn print_table(views: &[LuView]) {
    println!(
        "{:<12} {:<8} {:<8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8} {:>5}  EXPORTS",
        "ADAPTER",
        "STATE",
        "LU",
        "COMMANDS",
        "READS",
        "WRITES",
        "READ",
        "WRITTEN",
        "ERRORS",
        "IOPS",
        "RD MiB/s",
        "WR MiB/s",
        "AVG us",
        "P99 us",
        "QD"
    );
    for v in views {
        let c = &v.counters;
        println!(
            "{:<12} {:<8} {:<8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7} {:>9.0} {:>9.1} {:>9.1} {:>8} {:>8} {:>5}  {}",
            v.adapter,
            v.state,
            v.address,
            c.commands,
            c.reads,
            c.writes,
            ByteSize::b(c.bytes_read).to_string(),
            ByteSize::b(c.bytes_written).to_string(),
            c.errors,
            v.iops,
            v.read_mib_s,
            v.write_mib_s,
            v.avg_us,
            v.p99_us,
            v.qd,
            v.exports.join(", ")
        );
    }
}

/// `scsiport stat`: with `once`, one view over one interval; otherwise a view every interval
/// until interrupted. `json`: one JSON array of [`LuView`] per view. Rates and latencies
/// (`avg_us`, `p99_us`) cover the interval between the two samples; `qd` is the queue depth at
/// the second one.
pub fn stat(socket: &Path, once: bool, json: bool) -> Result<()> {
    let mut before = stat_sample(socket)?;
    loop {
        std::thread::sleep(STAT_INTERVAL);
        let after = stat_sample(socket)?;
        let v = views(&before, &after);
        if json {
            println!("{}", serde_json::to_string(&v)?);
        } else {
            if !once {
                // Clear the screen and home the cursor for the live view.
                print!("\x1b[H\x1b[2J");
            }
            print_table(&v);
        }
        if once {
            return Ok(());
        }
        before = after;
    }
}

/// `scsiport sessions`.
pub fn sessions(socket: &Path, json: bool) -> Result<()> {
    let list: Vec<SessionInfo> =
        match control::request(socket, &Request::Sessions {}, REQUEST_TIMEOUT)? {
            Reply::Sessions(s) => s,
            Reply::Error { message } => bail!("{message}"),
            other => bail!("unexpected reply {other:?}"),
        };
    if json {
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        println!("no sessions");
        return Ok(());
    }
    println!(
        "{:<48} {:<12} {:>5} {:>6}  TARGET",
        "INITIATOR", "ISID", "TPGT", "NEXUS"
    );
    for s in &list {
        println!(
            "{:<48} {:<12} {:>5} {:>6}  {}",
            s.initiator, s.isid, s.portal_group_tag, s.nexus, s.target
        );
    }
    Ok(())
}

/// `scsiport adapter stop|restart NAME`.
pub fn adapter(socket: &Path, stop: bool, name: &str) -> Result<()> {
    let name = name.to_string();
    let req = if stop {
        Request::AdapterStop { name }
    } else {
        Request::AdapterRestart { name }
    };
    done(control::request(socket, &req, ADAPTER_TIMEOUT)?)
}

/// `scsiport adapter reset NAME`: a bus reset of every bus of the adapter.
pub fn adapter_reset(socket: &Path, name: &str) -> Result<()> {
    let req = Request::AdapterReset {
        name: name.to_string(),
    };
    done(control::request(socket, &req, ADAPTER_TIMEOUT)?)
}

/// Prints a [`Reply::Done`]; anything else is an error.
fn done(reply: Reply) -> Result<()> {
    match reply {
        Reply::Done { message } => {
            println!("scsiport: {message}");
            Ok(())
        }
        Reply::Error { message } => bail!("{message}"),
        other => bail!("unexpected reply {other:?}"),
    }
}

/// `scsiport wmi list|query|set|exec ...`: sends `request` and prints the answer (`json`: as
/// JSON; `raw`: the port's statistics blocks as hex, not decoded).
pub fn wmi(socket: &Path, request: Request, json: bool, raw: bool) -> Result<()> {
    match control::request(socket, &request, ADAPTER_TIMEOUT)? {
        Reply::WmiBlocks(blocks) => {
            if json {
                println!("{}", serde_json::to_string(&blocks)?);
            } else if blocks.is_empty() {
                println!("no WMI data blocks");
            } else {
                println!(
                    "{:<36} {:>9}  {:<8}  {:<18}  FLAGS",
                    "GUID", "INSTANCES", "SOURCE", "NAME"
                );
                for b in &blocks {
                    println!(
                        "{:<36} {:>9}  {:<8}  {:<18}  {}",
                        b.guid,
                        b.instance_count,
                        b.source,
                        b.name,
                        b.flags.join(",")
                    );
                }
            }
            Ok(())
        }
        Reply::WmiData { hex, statistics } => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "hex": hex, "statistics": statistics })
                );
            } else if let (Some(instances), false) = (statistics, raw) {
                for s in &instances {
                    print_statistics(s);
                }
            } else if hex.is_empty() {
                println!("(no data)");
            } else {
                // 16 bytes per line with the offset.
                for (i, chunk) in hex.as_bytes().chunks(32).enumerate() {
                    println!("{:08x}  {}", i * 16, String::from_utf8_lossy(chunk));
                }
            }
            Ok(())
        }
        other => done(other),
    }
}

/// Largest WMI data `set` and `exec` send (hex doubles it; the request line must fit in
/// [`control::MAX_REQUEST`]).
pub const MAX_WMI_DATA: u64 = 30 << 10;

/// The data of `wmi set` / `wmi exec` as hex: `hex` as given (checked), or the bytes of `file`.
pub fn wmi_data(hex: Option<String>, file: Option<&Path>) -> Result<String> {
    let bytes = match (hex, file) {
        (_, Some(f)) => {
            let len = std::fs::metadata(f)
                .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?
                .len();
            if len > MAX_WMI_DATA {
                bail!(
                    "{}: {len} bytes; at most {MAX_WMI_DATA} can be sent",
                    f.display()
                );
            }
            std::fs::read(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?
        }
        (Some(h), None) => crate::wmi::parse_hex(&h).map_err(anyhow::Error::msg)?,
        (None, None) => Vec::new(),
    };
    if bytes.len() as u64 > MAX_WMI_DATA {
        bail!(
            "{} bytes of data; at most {MAX_WMI_DATA} can be sent",
            bytes.len()
        );
    }
    Ok(crate::wmi::to_hex(&bytes))
}

/// One instance of a port statistics block, one field a line.
fn print_statistics(s: &crate::wmi::StatisticsInstance) {
    let k = &s.errors_by_kind;
    let lat: LatencyHistogram = s.latency.into();
    println!("{}:", s.instance);
    for (name, v) in [
        ("commands", s.commands),
        ("reads", s.reads),
        ("writes", s.writes),
        ("bytes_read", s.bytes_read),
        ("bytes_written", s.bytes_written),
        ("errors", s.errors),
        ("errors.check_condition", k.check_condition),
        ("errors.selection_timeout", k.selection_timeout),
        ("errors.bus_reset", k.bus_reset),
        ("errors.aborted", k.aborted),
        ("errors.other", k.other),
        ("timeouts", s.timeouts),
        ("resets", s.resets),
        ("busy", s.busy),
        ("queue_depth", s.queue_depth),
        ("latency.count", lat.count),
        ("latency.mean_us", lat.mean_us()),
        ("latency.p99_us", lat.percentile_us(99.0)),
    ] {
        println!("  {name:<26} {v}");
    }
    let buckets: Vec<String> = lat
        .buckets
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| format!("<{}us:{n}", LatencyHistogram::bucket_upper_us(i)))
        .collect();
    println!("  {:<26} {}", "latency.histogram", buckets.join(" "));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{AdapterSample, LuSample};

    fn sample(ns: u64, commands: u64, bytes_read: u64) -> StatSample {
        StatSample {
            uptime_ns: ns,
            adapters: vec![AdapterSample {
                name: "a0".into(),
                state: "running".into(),
                model: "storport".into(),
                totals: Counters::default(),
                timeout_restarts: 0,
                errors_logged: 0,
                lus: vec![LuSample {
                    address: "0:0:0".into(),
                    exports: vec!["iqn.2026-11.x:y/0".into()],
                    counters: Counters {
                        commands,
                        reads: commands,
                        bytes_read,
                        ..Counters::default()
                    },
                }],
            }],
        }
    }

    #[test]
    fn rates_come_from_the_deltas_over_the_real_interval() {
        let v = views(
            &sample(1_000_000_000, 100, 0),
            &sample(3_000_000_000, 300, 4 << 20),
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].interval_s, 2.0);
        assert_eq!(v[0].iops, 100.0);
        assert_eq!(v[0].read_mib_s, 2.0);
        assert_eq!(v[0].counters.commands, 300);
    }

    #[test]
    fn latency_and_queue_depth_come_from_the_interval() {
        let mut before = sample(1_000_000_000, 100, 0);
        let mut after = sample(2_000_000_000, 200, 0);
        // Before: 100 slow commands (~1 ms). Over the interval: 98 at ~100 µs (bucket 6,
        // [64, 128) µs) and 2 at ~10 ms (bucket 13, [8192, 16384) µs).
        let b = &mut before.adapters[0].lus[0].counters;
        b.latency.buckets[9] = 100;
        b.latency.sum_us = 100_000;
        b.latency.count = 100;
        let a = &mut after.adapters[0].lus[0].counters;
        a.latency.buckets[9] = 100;
        a.latency.buckets[6] = 98;
        a.latency.buckets[13] = 2;
        a.latency.sum_us = 100_000 + 98 * 100 + 2 * 10_000;
        a.latency.count = 200;
        a.outstanding = 7;
        let v = views(&before, &after);
        assert_eq!(v[0].avg_us, (98 * 100 + 2 * 10_000) / 100);
        assert_eq!(v[0].p99_us, 16_384);
        assert_eq!(v[0].qd, 7);
        // No earlier sample of the LU: the whole histogram counts.
        let v = views(&sample(0, 0, 0), &after);
        assert_eq!(v[0].p99_us, 1024, "rank 198 of 200 falls in [512, 1024) µs");
        assert_eq!(v[0].avg_us, (100_000 + 98 * 100 + 2 * 10_000) / 200);
        // Nothing completed in the interval: zeros, not the cumulative values.
        let v = views(&after, &after);
        assert_eq!((v[0].avg_us, v[0].p99_us, v[0].qd), (0, 0, 7));
    }

    #[test]
    fn zero_interval_gives_zero_rates() {
        let s = sample(5, 10, 10);
        let v = views(&s, &s);
        assert_eq!(v[0].iops, 0.0);
    }
}
