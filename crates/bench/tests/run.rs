//! Short runs of every pattern against the null and ram miniports, the raw path, verify mode
//! (clean, and with a deliberately corrupted block), and the configuration errors.

use std::sync::Arc;
use std::time::Duration;

use bench::{BenchConfig, BenchError, BenchReport, MiniportKind, Model, Pattern, run};
use device::BlockBackend;
use device::backend::{BackendResult, RamBackend};

fn cfg(miniport: MiniportKind, pattern: Pattern) -> BenchConfig {
    BenchConfig {
        miniport,
        pattern,
        duration: Duration::from_millis(300),
        size: 64 << 20,
        progress_interval: Duration::from_millis(50),
        ..BenchConfig::default()
    }
}

/// Runs `c`, checks the figures every run must have, and returns the report.
fn sane(c: &BenchConfig) -> BenchReport {
    let mut samples = Vec::new();
    let r = run(c, |p| samples.push(*p)).unwrap();
    assert!(r.ios > 0, "{c:?}: no I/O");
    assert_eq!(r.errors, 0, "{c:?}: {:?}", r.first_error);
    assert_eq!(r.ios, r.reads + r.writes);
    assert_eq!(r.bytes, r.ios * u64::from(c.block_size));
    assert!(r.iops > 0.0 && r.mib_per_sec > 0.0);
    assert!(r.elapsed_secs >= c.duration.as_secs_f64() * 0.9);
    let l = r.latency;
    assert!(l.min_us > 0.0, "{l:?}");
    assert!(
        l.min_us <= l.p50_us
            && l.p50_us <= l.p99_us
            && l.p99_us <= l.p999_us
            && l.p999_us <= l.max_us,
        "percentiles out of order: {l:?}"
    );
    assert!(l.mean_us >= l.min_us && l.mean_us <= l.max_us);
    assert!(r.cpu_secs > 0.0 && r.cpu_us_per_io > 0.0);
    match c.pattern {
        Pattern::RandRead | Pattern::Read => assert_eq!(r.writes, 0),
        Pattern::RandWrite | Pattern::Write => assert_eq!(r.reads, 0),
        Pattern::Mixed { .. } => assert!(r.reads > 0 && r.writes > 0, "{r:?}"),
    }
    let last = samples.last().expect("progress was reported");
    assert_eq!(last.ios, r.ios, "the last progress sample is the total");
    assert!(samples.len() >= 3, "progress every 50 ms over 300 ms");
    // JSON round trip.
    let back: BenchReport = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(
        (&back.config, back.ios, back.reads, back.writes, back.verify),
        (&r.config, r.ios, r.reads, r.writes, r.verify)
    );
    assert!((back.iops - r.iops).abs() <= 1e-9 * r.iops);
    assert!((back.latency.p99_us - l.p99_us).abs() <= 1e-9 * l.p99_us);
    assert!(r.to_string().contains("IOPS"));
    r
}

const PATTERNS: [Pattern; 5] = [
    Pattern::RandRead,
    Pattern::RandWrite,
    Pattern::Read,
    Pattern::Write,
    Pattern::Mixed { read_percent: 70 },
];

#[test]
fn every_pattern_on_null() {
    for p in PATTERNS {
        sane(&cfg(MiniportKind::Null, p));
    }
}

#[test]
fn every_pattern_on_ram() {
    for p in PATTERNS {
        sane(&BenchConfig {
            queue_depth: 4,
            ..cfg(MiniportKind::Ram, p)
        });
    }
}

#[test]
fn storport_model_on_null_and_ram() {
    for (m, p) in [
        (MiniportKind::Null, Pattern::RandRead),
        (MiniportKind::Ram, Pattern::Mixed { read_percent: 50 }),
    ] {
        let r = sane(&BenchConfig {
            model: Model::Storport,
            queue_depth: 8,
            ..cfg(m.clone(), p)
        });
        assert_eq!(r.config.model, Model::Storport);
        sane(&BenchConfig {
            model: Model::Storport,
            raw: true,
            queue_depth: 8,
            ..cfg(m, p)
        });
    }
}

#[test]
fn raw_srbs_and_several_threads() {
    sane(&BenchConfig {
        raw: true,
        queue_depth: 8,
        ..cfg(MiniportKind::Null, Pattern::RandRead)
    });
    sane(&BenchConfig {
        threads: 2,
        queue_depth: 4,
        block_size: 8192,
        logical_block_size: 4096,
        ..cfg(MiniportKind::Ram, Pattern::Mixed { read_percent: 50 })
    });
}

#[test]
fn file_miniport_patterns_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    for p in [Pattern::RandRead, Pattern::RandWrite, Pattern::Write] {
        sane(&BenchConfig {
            queue_depth: 8,
            size: 8 << 20,
            ..cfg(MiniportKind::File { path: path.clone() }, p)
        });
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 << 20);
    let r = sane(&BenchConfig {
        model: Model::Storport,
        queue_depth: 8,
        size: 8 << 20,
        ..cfg(MiniportKind::File { path: path.clone() }, Pattern::RandRead)
    });
    assert_eq!(r.config.model, Model::Storport);
    let r = sane(&BenchConfig {
        verify: true,
        queue_depth: 8,
        size: 1 << 20,
        ..cfg(
            MiniportKind::File { path: path.clone() },
            Pattern::Mixed { read_percent: 50 },
        )
    });
    let v = r.verify.unwrap();
    assert!(v.reads_checked > 0);
    assert_eq!(v.mismatches, 0, "{v:?}");
}

#[test]
fn verify_finds_no_mismatch_on_a_healthy_disk() {
    for raw in [false, true] {
        let r = sane(&BenchConfig {
            verify: true,
            raw,
            threads: 2,
            queue_depth: 8,
            size: 1 << 20,
            ..cfg(MiniportKind::Ram, Pattern::Mixed { read_percent: 50 })
        });
        let v = r.verify.expect("verify report");
        assert!(v.reads_checked > 0);
        assert_eq!(v.mismatches, 0, "raw {raw}: {v:?}");
    }
}

/// A RAM disk that flips one byte of every read touching block `bad`.
struct Corrupting {
    inner: RamBackend,
    bad: u64,
}

impl BlockBackend for Corrupting {
    fn block_size(&self) -> u32 {
        self.inner.block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.inner.num_blocks()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> BackendResult<()> {
        self.inner.read_at(offset, buf)?;
        let bs = u64::from(self.block_size());
        let first = offset / bs;
        let end = (offset + buf.len() as u64).div_ceil(bs);
        if (first..end).contains(&self.bad) {
            let at = ((self.bad - first) * bs + 100) as usize;
            buf[at] ^= 0x40;
        }
        Ok(())
    }
    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> BackendResult<()> {
        self.inner.write_at(offset, buf, fua)
    }
    fn flush(&self) -> BackendResult<()> {
        self.inner.flush()
    }
}

#[test]
fn verify_catches_a_corrupted_block() {
    // 64 units of 4 KiB; logical block 8 * 3 + 2 lies in unit 3.
    let backend = Arc::new(Corrupting {
        inner: RamBackend::new(512, 512).unwrap(),
        bad: 8 * 3 + 2,
    });
    let c = BenchConfig {
        verify: true,
        queue_depth: 4,
        size: 512 * 512,
        ..cfg(MiniportKind::Ram, Pattern::Mixed { read_percent: 50 })
    };
    let r = bench::run_with_backend(&c, backend, |_| {}).unwrap();
    assert_eq!(r.errors, 0);
    let v = r.verify.unwrap();
    assert!(v.mismatches > 0, "{v:?}");
    assert!(v.mismatches < v.reads_checked, "only unit 3 is bad: {v:?}");
    assert_eq!(v.first_mismatch_offset, Some(3 * 4096));
    assert!(r.to_string().contains("mismatches"));
}

#[test]
fn configuration_errors_are_reported() {
    let base = cfg(MiniportKind::Null, Pattern::RandRead);
    let file_dir = BenchConfig {
        miniport: MiniportKind::File {
            path: "/nonexistent-dir/x.img".into(),
        },
        ..base.clone()
    };
    assert!(matches!(
        run(&file_dir, |_| {}),
        Err(BenchError::Backend(_))
    ));
    let null_verify = BenchConfig {
        verify: true,
        ..base.clone()
    };
    assert!(matches!(
        run(&null_verify, |_| {}),
        Err(BenchError::Config(_))
    ));
    let odd = BenchConfig {
        block_size: 1000,
        ..base.clone()
    };
    assert!(matches!(run(&odd, |_| {}), Err(BenchError::Config(_))));
    let tiny = BenchConfig {
        size: 4096,
        threads: 2,
        ..base
    };
    assert!(matches!(run(&tiny, |_| {}), Err(BenchError::Config(_))));
}

#[test]
fn names_parse() {
    assert_eq!("randread".parse::<Pattern>(), Ok(Pattern::RandRead));
    assert_eq!(
        "mixed:30".parse::<Pattern>(),
        Ok(Pattern::Mixed { read_percent: 30 })
    );
    assert!("mixed:130".parse::<Pattern>().is_err());
    assert_eq!(
        "file:/dev/shm/x".parse::<MiniportKind>(),
        Ok(MiniportKind::File {
            path: "/dev/shm/x".into()
        })
    );
    assert!("file:".parse::<MiniportKind>().is_err());
    assert_eq!("storport".parse::<Model>(), Ok(Model::Storport));
    for p in PATTERNS {
        assert_eq!(p.to_string().parse::<Pattern>(), Ok(p));
    }
}
