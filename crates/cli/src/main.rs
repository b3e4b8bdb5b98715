//! The `scsiport` command: `serve` runs the iSCSI target, `check` validates a configuration.
#![forbid(unsafe_code)]

mod config;

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
