//! The Prometheus endpoint (`[metrics]` in the configuration; off unless configured): plain
//! HTTP/1.1 `GET /metrics` answered with the text exposition format, one connection per
//! request. It exports what the control socket's `stat` reports ([`StatSample`]): the port's
//! per-LU and per-adapter counters, the outstanding-request gauges (`*_outstanding`) and the
//! latency histograms (`*_latency_seconds`, whose buckets are the port's log2 µs buckets),
//! labelled with adapter, LU address, target and LUN, plus the number of iSCSI sessions.
//!
//! Threads: the accept loop and each connection are tasks on the `serve` runtime; a scrape reads
//! the port's relaxed atomic counters and the session table (one short lock) and takes no
//! adapter lock. Request heads are bounded ([`MAX_REQUEST_HEAD`]) and time-limited.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::control::{ControlState, Counters, Latency, StatSample};

/// Longest request head read (request line and headers).
pub const MAX_REQUEST_HEAD: usize = 8192;
/// Scrapes served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 8;
/// A client that does not send its request head within this time is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One exported counter: metric name suffix, help text, and how to read it.
type CounterDef = (&'static str, &'static str, fn(&Counters) -> u64);

/// The counters of [`Counters`] with their metric names and help texts.
const COUNTERS: [CounterDef; 11] = [
    ("commands_total", "EXECUTE_SCSI requests completed.", |c| {
        c.commands
    }),
    ("reads_total", "READ commands completed.", |c| c.reads),
    ("writes_total", "WRITE commands completed.", |c| c.writes),
    (
        "read_bytes_total",
        "Bytes moved by successful reads.",
        |c| c.bytes_read,
    ),
    (
        "written_bytes_total",
        "Bytes moved by successful writes.",
        |c| c.bytes_written,
    ),
    (
        "errors_total",
        "Completions with a status other than SUCCESS.",
        |c| c.errors,
    ),
    ("timeouts_total", "Requests that timed out.", |c| c.timeouts),
    ("resets_total", "Bus, LU and adapter resets.", |c| c.resets),
    ("busy_total", "BUSY or QUEUE FULL completions.", |c| c.busy),
    (
        "flushed_total",
        "Requests completed as REQUEST_FLUSHED.",
        |c| c.flushed,
    ),
    ("aborted_total", "Requests completed as ABORTED.", |c| {
        c.aborted
    }),
];

/// Writes the series of one histogram: cumulative `_bucket` lines (the upper bounds of the
/// port's log2 µs buckets in seconds; the last, open-ended bucket only under `+Inf`), `_sum` in
/// seconds and `_count`. `labels` is the label list without braces.
fn histogram(out: &mut String, name: &str, labels: &str, l: &Latency) {
    let mut cumulative = 0u64;
    for (i, n) in l.buckets.iter().enumerate().take(l.buckets.len() - 1) {
        cumulative += n;
        let le = port::LatencyHistogram::bucket_upper_us(i) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    // +Inf and _count from the buckets, so they agree even if a completion raced the read.
    let total: u64 = l.buckets.iter().sum();
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", l.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
}

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The labels of an LU's series (without braces): adapter, LU address, and the target and LUN
/// of its first export (empty when it is not exported).
fn lu_labels(adapter: &str, lu: &crate::control::LuSample) -> String {
    let (target, lun) = lu
        .exports
        .first()
        .and_then(|e| e.rsplit_once('/'))
        .unwrap_or(("", ""));
    format!(
        "adapter=\"{}\",lu=\"{}\",target=\"{}\",lun=\"{}\"",
        label(adapter),
        label(&lu.address),
        label(target),
        label(lun)
    )
}

/// Renders one sample in the Prometheus text format (version 0.0.4).
/// What the metrics show of the iSCSI front end.
#[derive(Debug, Clone, Copy, Default)]
pub struct IscsiSample {
    /// Logged-in sessions.
    pub sessions: usize,
    /// Adaptive polls that found the initiator's next command / that timed out
    /// (`iscsi::registry::Shared::poll_hits`, `poll_timeouts`).
    pub poll_hits: u64,
    pub poll_timeouts: u64,
}

pub fn render(sample: &StatSample, iscsi: &IscsiSample) -> String {
    let mut out = String::with_capacity(4096);
    for (name, help, get) in COUNTERS {
        let _ = writeln!(out, "# HELP scsiport_lu_{name} {help}");
        let _ = writeln!(out, "# TYPE scsiport_lu_{name} counter");
        for a in &sample.adapters {
            for lu in &a.lus {
                let labels = lu_labels(&a.name, lu);
                let _ = writeln!(out, "scsiport_lu_{name}{{{labels}}} {}", get(&lu.counters));
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP scsiport_lu_errors_by_kind_total Failed commands by kind \
         (check_condition, selection_timeout, bus_reset, aborted, other)."
    );
    let _ = writeln!(out, "# TYPE scsiport_lu_errors_by_kind_total counter");
    for a in &sample.adapters {
        for lu in &a.lus {
            let labels = lu_labels(&a.name, lu);
            for kind in port::ErrorKind::ALL {
                let _ = writeln!(
                    out,
                    "scsiport_lu_errors_by_kind_total{{{labels},kind=\"{}\"}} {}",
                    kind.name(),
                    lu.counters.error_kinds[kind as usize]
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP scsiport_lu_outstanding Requests submitted to the port and not yet completed."
    );
    let _ = writeln!(out, "# TYPE scsiport_lu_outstanding gauge");
    for a in &sample.adapters {
        for lu in &a.lus {
            let labels = lu_labels(&a.name, lu);
            let _ = writeln!(
                out,
                "scsiport_lu_outstanding{{{labels}}} {}",
                lu.counters.outstanding
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP scsiport_lu_latency_seconds Submit-to-completion time of commands."
    );
    let _ = writeln!(out, "# TYPE scsiport_lu_latency_seconds histogram");
    for a in &sample.adapters {
        for lu in &a.lus {
            let labels = lu_labels(&a.name, lu);
            histogram(
                &mut out,
                "scsiport_lu_latency_seconds",
                &labels,
                &lu.counters.latency,
            );
        }
    }
    for (name, help, get) in COUNTERS {
        let _ = writeln!(out, "# HELP scsiport_adapter_{name} {help}");
        let _ = writeln!(out, "# TYPE scsiport_adapter_{name} counter");
        for a in &sample.adapters {
            let _ = writeln!(
                out,
                "scsiport_adapter_{name}{{adapter=\"{}\"}} {}",
                label(&a.name),
                get(&a.totals)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP scsiport_adapter_outstanding Requests submitted to the port and not yet completed."
    );
    let _ = writeln!(out, "# TYPE scsiport_adapter_outstanding gauge");
    for a in &sample.adapters {
        let _ = writeln!(
            out,
            "scsiport_adapter_outstanding{{adapter=\"{}\"}} {}",
            label(&a.name),
            a.totals.outstanding
        );
    }
    let _ = writeln!(
        out,
        "# HELP scsiport_adapter_latency_seconds Submit-to-completion time of commands."
    );
    let _ = writeln!(out, "# TYPE scsiport_adapter_latency_seconds histogram");
    for a in &sample.adapters {
        let labels = format!("adapter=\"{}\"", label(&a.name));
        histogram(
            &mut out,
            "scsiport_adapter_latency_seconds",
            &labels,
            &a.totals.latency,
        );
    }
    let _ = writeln!(
        out,
        "# HELP scsiport_adapter_stopped 1 while the adapter is stopped by scsiport adapter stop."
    );
    let _ = writeln!(out, "# TYPE scsiport_adapter_stopped gauge");
    for a in &sample.adapters {
        let _ = writeln!(
            out,
            "scsiport_adapter_stopped{{adapter=\"{}\"}} {}",
            label(&a.name),
            u8::from(a.state == "stopped")
        );
    }
    let _ = writeln!(
        out,
        "# HELP scsiport_adapter_timeout_restarts_total Adapter restarts by the timeout escalation."
    );
    let _ = writeln!(
        out,
        "# TYPE scsiport_adapter_timeout_restarts_total counter"
    );
    for a in &sample.adapters {
        let _ = writeln!(
            out,
            "scsiport_adapter_timeout_restarts_total{{adapter=\"{}\"}} {}",
            label(&a.name),
            a.timeout_restarts
        );
    }
    let _ = writeln!(
        out,
        "# HELP scsiport_iscsi_sessions Logged-in iSCSI sessions."
    );
    let _ = writeln!(out, "# TYPE scsiport_iscsi_sessions gauge");
    let _ = writeln!(out, "scsiport_iscsi_sessions {}", iscsi.sessions);
    let _ = writeln!(
        out,
        "# HELP scsiport_iscsi_polls_total Adaptive polls of a queue depth 1 initiator's socket, \
         by result (hit: the next command came within the window; timeout: the connection slept)."
    );
    let _ = writeln!(out, "# TYPE scsiport_iscsi_polls_total counter");
    let _ = writeln!(
        out,
        "scsiport_iscsi_polls_total{{result=\"hit\"}} {}",
        iscsi.poll_hits
    );
    let _ = writeln!(
        out,
        "scsiport_iscsi_polls_total{{result=\"timeout\"}} {}",
        iscsi.poll_timeouts
    );
    out
}

/// Binds the endpoint (before the runtime serves anything, so a bad address stops `serve`).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)
        .with_context(|| format!("metrics.listen: cannot listen on {addr}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Spawns the accept loop on the current runtime.
pub fn spawn(listener: std::net::TcpListener, state: Arc<ControlState>) -> Result<()> {
    let listener = TcpListener::from_std(listener)?;
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                let _ = scrape(stream, &state).await;
                drop(permit);
            });
        }
    });
    Ok(())
}

/// Reads one request head and answers it; the connection closes after the response.
async fn scrape(mut stream: TcpStream, state: &ControlState) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(READ_TIMEOUT, async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if head.len() >= MAX_REQUEST_HEAD {
                return Ok(false);
            }
        }
    })
    .await
    .unwrap_or(Ok(false))?;
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_ascii_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = if !complete {
        ("400 Bad Request", "text/plain", "bad request\n".to_string())
    } else if method != "GET" && method != "HEAD" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        )
    } else if path != "/metrics" && !path.starts_with("/metrics?") {
        ("404 Not Found", "text/plain", "see /metrics\n".to_string())
    } else {
        (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(&state.stat(), &state.iscsi_sample()),
        )
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{AdapterSample, LuSample};

    #[test]
    fn render_labels_every_lu_and_escapes_values() {
        let sample = StatSample {
            uptime_ns: 1,
            adapters: vec![AdapterSample {
                name: "a\"0".into(),
                state: "stopped".into(),
                model: "storport".into(),
                totals: Counters {
                    commands: 9,
                    ..Counters::default()
                },
                timeout_restarts: 0,
                errors_logged: 0,
                lus: vec![LuSample {
                    address: "0:1:2".into(),
                    exports: vec!["iqn.2026-11.dev.x:y/3".into()],
                    counters: Counters {
                        reads: 7,
                        bytes_read: 3584,
                        error_kinds: [0, 0, 3, 0, 1],
                        outstanding: 4,
                        latency: Latency {
                            // 2 in [4, 8) µs, 1 in [1024, 2048) µs, 1 in the open last bucket.
                            buckets: {
                                let mut b = [0; port::LATENCY_BUCKETS];
                                b[2] = 2;
                                b[10] = 1;
                                b[port::LATENCY_BUCKETS - 1] = 1;
                                b
                            },
                            sum_us: 2_500_000,
                            count: 4,
                        },
                        ..Counters::default()
                    },
                }],
            }],
        };
        let iscsi = IscsiSample {
            sessions: 2,
            poll_hits: 41,
            poll_timeouts: 3,
        };
        let text = render(&sample, &iscsi);
        let lu = r#"{adapter="a\"0",lu="0:1:2",target="iqn.2026-11.dev.x:y",lun="3"}"#;
        assert!(
            text.contains(&format!("scsiport_lu_reads_total{lu} 7\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("scsiport_lu_read_bytes_total{lu} 3584\n")),
            "{text}"
        );
        assert!(text.contains("scsiport_adapter_commands_total{adapter=\"a\\\"0\"} 9\n"));
        assert!(text.contains("scsiport_adapter_stopped{adapter=\"a\\\"0\"} 1\n"));
        assert!(text.contains("scsiport_iscsi_sessions 2\n"));
        assert!(text.contains("scsiport_iscsi_polls_total{result=\"hit\"} 41\n"));
        assert!(text.contains("scsiport_iscsi_polls_total{result=\"timeout\"} 3\n"));
        assert!(text.contains("# TYPE scsiport_lu_writes_total counter\n"));
        let kind = |k: &str| lu.replacen('}', &format!(",kind=\"{k}\"}}"), 1);
        assert!(
            text.contains(&format!(
                "scsiport_lu_errors_by_kind_total{} 3\n",
                kind("bus_reset")
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "scsiport_lu_errors_by_kind_total{} 1\n",
            kind("other")
        )));
        assert!(text.contains(&format!(
            "scsiport_lu_errors_by_kind_total{} 0\n",
            kind("check_condition")
        )));
        assert!(
            text.contains(&format!("scsiport_lu_outstanding{lu} 4\n")),
            "{text}"
        );
        assert!(text.contains("# TYPE scsiport_lu_latency_seconds histogram\n"));
        let labels = &lu[..lu.len() - 1];
        let bucket =
            |le: &str| format!("scsiport_lu_latency_seconds_bucket{labels},le=\"{le}\"}} ");
        // Cumulative: bucket 1 ends at 4 µs (nothing yet), bucket 2 at 8 µs, bucket 10 at
        // 2048 µs; the last bucket shows only under +Inf.
        assert!(
            text.contains(&format!("{}0\n", bucket("0.000004"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{}2\n", bucket("0.000008"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{}3\n", bucket("0.002048"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{}3\n", bucket("2147.483648"))),
            "{text}"
        );
        assert!(text.contains(&format!("{}4\n", bucket("+Inf"))), "{text}");
        assert!(!text.contains(&bucket("4294.967296")), "{text}");
        assert!(text.contains(&format!("scsiport_lu_latency_seconds_sum{lu} 2.5\n")));
        assert!(text.contains(&format!("scsiport_lu_latency_seconds_count{lu} 4\n")));
        assert!(text.contains("scsiport_adapter_latency_seconds_count{adapter=\"a\\\"0\"} 0\n"));
    }
}
