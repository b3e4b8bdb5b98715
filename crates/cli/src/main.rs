//! The `scsiport` command: `serve` runs the iSCSI target, `check` validates a configuration.
#![forbid(unsafe_code)]

mod bridge;
mod config;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// A user-space SCSI storage stack on the SCSI Port I/O model, with an iSCSI target front end.
#[derive(Debug, Parser)]
#[command(name = "scsiport", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Validate a configuration file (or the built-in default) and print what it describes.
    Check {
        /// The TOML configuration file; without it, the built-in default.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn load_config(path: &std::path::Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
