//! The `scsiport` command: `serve` runs the iSCSI target, `check` validates a configuration.
#![forbid(unsafe_code)]

mod bridge;
mod config;
mod control;
mod manage;
mod metrics;
mod serve;
mod soak;
mod wmi;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// A user-space SCSI storage stack on the SCSI Port I/O model, with an iSCSI target front end.
#[derive(Debug, Parser)]
#[command(name = "scsiport", version, about)]
struct Cli {
    /// Log level or filter for the log lines on stderr (error, warn, info, debug, trace, or a
    /// filter such as `info,iscsi=debug`). Overrides $SCSIPORT_LOG, then $RUST_LOG; default info.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Installs the log subscriber: one line per event on stderr, with the event's spans (session,
/// LU) and fields, at the level `flag`, `$SCSIPORT_LOG` or `$RUST_LOG` chooses (default info).
fn init_logging(flag: Option<&str>) -> Result<(), String> {
    let spec = flag
        .map(str::to_string)
        .or_else(|| std::env::var("SCSIPORT_LOG").ok())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .map_err(|e| format!("log level {spec:?}: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve logical units to iSCSI initiators. Without --config: one 1 GiB RAM LU as LUN 0 of
    /// iqn.2026-11.dev.scsiport:default on 127.0.0.1:3260.
    Serve {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen on these addresses instead of the configured portals (repeatable).
        #[arg(long)]
        listen: Vec<std::net::SocketAddr>,
    },
    /// Drive a miniport in process through the class driver (or raw SRBs) and print IOPS,
    /// bandwidth, latency percentiles and CPU time per I/O.
    Bench(BenchArgs),
    /// Per-LU counters of a running `serve` (commands, reads, writes, bytes, errors, IOPS,
    /// MiB/s), refreshed every second until Ctrl-C.
    Stat {
        /// Print one view (over one second) and exit.
        #[arg(long)]
        once: bool,
        /// Print JSON (one array of LUs per view).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// The iSCSI sessions logged in to a running `serve`: initiator, ISID, target.
    Sessions {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Stop, restart or reset an adapter of a running `serve`. While stopped, the port holds
    /// the adapter's requests; they run after the restart. Reset: a bus reset of every bus.
    Adapter {
        /// stop or restart.
        action: AdapterAction,
        /// The adapter's name in the configuration.
        name: String,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// WMI data blocks of an adapter (the port's statistics blocks and the miniport's): `list`,
    /// `query`, `set`, `exec`.
    Wmi {
        #[command(subcommand)]
        action: WmiAction,
    },
    /// Soak test: iSCSI sessions and class-driver clients write and verify block patterns on
    /// simulated and file-backed LUs while faults are injected; exits non-zero on any lost or
    /// corrupted write, double or missing completion, or hung session.
    Soak(soak::SoakArgs),
    /// Validate a configuration file (or the built-in default) and print what it describes.
    Check {
        /// The TOML configuration file; without it, the built-in default.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Where a management command finds the server.
#[derive(Debug, clap::Args)]
struct SocketArg {
    /// The control socket ([control] socket in the server's configuration); default
    /// $XDG_RUNTIME_DIR/scsiport.sock or /tmp/scsiport-UID.sock.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Take the control socket from this configuration file (the one `serve` runs with).
    #[arg(long, short, conflicts_with = "socket")]
    config: Option<PathBuf>,
}

impl SocketArg {
    fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        match &self.config {
            Some(c) => Ok(load_config(c)
                .map_err(anyhow::Error::msg)?
                .control
                .socket_path()),
            None => Ok(config::default_control_socket()),
        }
    }
}

#[derive(Debug, Subcommand)]
enum WmiAction {
    /// The data blocks the miniport registers (GUID, instances, flags).
    List {
        /// The adapter's name in the configuration.
        adapter: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// The data of one block: every instance, or one with --instance.
    Query {
        /// The adapter's name in the configuration.
        adapter: String,
        /// The block's GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).
        guid: String,
        /// Query this instance only.
        #[arg(long)]
        instance: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Print the port's statistics blocks as hex instead of decoding them.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Change one instance of a block (or one item of it, --item).
    Set {
        /// The adapter's name in the configuration.
        adapter: String,
        /// The block's GUID.
        guid: String,
        /// The instance index.
        instance: u32,
        /// The new data in hex (or --file).
        #[arg(required_unless_present = "file")]
        data: Option<String>,
        /// Read the new data from this file instead.
        #[arg(long, conflicts_with = "data")]
        file: Option<PathBuf>,
        /// Set this data item only (CHANGE_SINGLE_ITEM).
        #[arg(long)]
        item: Option<u32>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Run a method of a block and print its output in hex.
    Exec {
        /// The adapter's name in the configuration.
        adapter: String,
        /// The block's GUID.
        guid: String,
        /// The instance index.
        instance: u32,
        /// The method id.
        method: u32,
        /// The method's input in hex (default: none).
        input: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum AdapterAction {
    /// ScsiStopAdapter: hold new requests, finish those in the miniport.
    Stop,
    /// ScsiRestartAdapter: restart and run the held requests.
    Restart,
    /// RESET_BUS on every bus: requests in the miniport end with BUS_RESET.
    Reset,
}

/// Maps a management command's outcome to an exit code (errors on stderr).
fn managed(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scsiport: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Miniport: null, ram, or file:PATH (a file or block device; created with --size if new).
    #[arg(long, default_value = "null")]
    miniport: bench::MiniportKind,
    /// I/O model of the port: storport or scsiport.
    #[arg(long, default_value = "storport")]
    model: bench::Model,
    /// randread, randwrite, read, write, mixed (70% reads) or mixed:READPERCENT.
    #[arg(long, default_value = "randread")]
    pattern: bench::Pattern,
    /// Bytes per I/O.
    #[arg(long, default_value_t = 4096)]
    bs: u32,
    /// Requests each submitting thread keeps in flight.
    #[arg(long, default_value_t = 32)]
    qd: u32,
    /// Submitting threads.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Disk size in bytes (null, ram, new files).
    #[arg(long, default_value_t = 256 << 20)]
    size: u64,
    /// Logical block size: 512 or 4096.
    #[arg(long, default_value_t = 512)]
    block_size: u32,
    /// Submit raw SRBs instead of going through the class driver.
    #[arg(long)]
    raw: bool,
    /// Write verifiable patterns and check every read.
    #[arg(long)]
    verify: bool,
    /// Print the report as JSON (no progress bar).
    #[arg(long)]
    json: bool,
}

fn run_bench(args: BenchArgs) -> ExitCode {
    if !(args.seconds > 0.0 && args.seconds <= 86_400.0) {
        eprintln!("scsiport: --seconds must be in (0, 86400]");
        return ExitCode::from(2);
    }
    let cfg = bench::BenchConfig {
        miniport: args.miniport,
        model: args.model,
        pattern: args.pattern,
        block_size: args.bs,
        queue_depth: args.qd,
        threads: args.threads,
        duration: std::time::Duration::from_secs_f64(args.seconds),
        size: args.size,
        logical_block_size: args.block_size,
        raw: args.raw,
        verify: args.verify,
        ..bench::BenchConfig::default()
    };
    let bar = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(1000);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    };
    let result = bench::run(&cfg, |p| {
        bar.set_position((p.fraction() * 1000.0) as u64);
        bar.set_message(format!("{:.0} IOPS", p.iops()));
    });
    bar.finish_and_clear();
    match result {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scsiport: bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `scsiport wmi ...`: builds the control request and prints the reply.
fn wmi_command(action: WmiAction) -> anyhow::Result<()> {
    use control::Request;
    let (request, json, raw, socket) = match action {
        WmiAction::List {
            adapter,
            json,
            socket,
        } => (Request::WmiList { adapter }, json, false, socket),
        WmiAction::Query {
            adapter,
            guid,
            instance,
            json,
            raw,
            socket,
        } => (
            Request::WmiQuery {
                adapter,
                guid,
                instance,
            },
            json,
            raw,
            socket,
        ),
        WmiAction::Set {
            adapter,
            guid,
            instance,
            data,
            file,
            item,
            socket,
        } => {
            let hex = manage::wmi_data(data, file.as_deref())?;
            let request = Request::WmiSet {
                adapter,
                guid,
                instance,
                item,
                hex,
            };
            (request, false, false, socket)
        }
        WmiAction::Exec {
            adapter,
            guid,
            instance,
            method,
            input,
            json,
            socket,
        } => {
            let hex = manage::wmi_data(Some(input.unwrap_or_default()), None)?;
            let request = Request::WmiExec {
                adapter,
                guid,
                instance,
                method,
                hex,
            };
            (request, json, true, socket)
        }
    };
    manage::wmi(&socket.path()?, request, json, raw)
}

fn load_config(path: &std::path::Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The soak injects faults on purpose: the port's warnings about them are noise there.
    let quiet = matches!(cli.command, Command::Soak(_)).then_some("error");
    if let Err(e) = init_logging(cli.log_level.as_deref().or(quiet)) {
        eprintln!("scsiport: {e}");
        return ExitCode::from(2);
    }
    match cli.command {
        Command::Bench(args) => run_bench(args),
        Command::Soak(args) => soak::main(&args),
        Command::Stat { once, json, socket } => {
            managed(socket.path().and_then(|p| manage::stat(&p, once, json)))
        }
        Command::Sessions { json, socket } => {
            managed(socket.path().and_then(|p| manage::sessions(&p, json)))
        }
        Command::Wmi { action } => managed(wmi_command(action)),
        Command::Adapter {
            action,
            name,
            socket,
        } => managed(socket.path().and_then(|p| match action {
            AdapterAction::Reset => manage::adapter_reset(&p, &name),
            _ => manage::adapter(&p, matches!(action, AdapterAction::Stop), &name),
        })),
        Command::Serve { config, listen } => {
            let config = match config.map(|p| load_config(&p)) {
                None => Config::builtin_default(),
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    eprintln!("scsiport: {e}");
                    return ExitCode::from(2);
                }
            };
            let listen = (!listen.is_empty()).then_some(listen);
            match serve::run(config, listen) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("scsiport: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => match config
            .map(|p| load_config(&p))
            .unwrap_or_else(|| Ok(Config::builtin_default()))
        {
            Ok(c) => {
                for a in &c.adapters {
                    println!(
                        "adapter {}: {:?} miniport, {:?} model, {} logical unit(s)",
                        a.name,
                        a.miniport,
                        a.model,
                        a.lus.len()
                    );
                }
                for t in &c.targets {
                    println!("target {}: {} LUN(s)", t.iqn, t.luns.len());
                }
                for p in &c.portals {
                    println!("portal {}", p.listen);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("scsiport: {e}");
                ExitCode::from(2)
            }
        },
    }
}
