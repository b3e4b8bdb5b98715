//! Runs the iSCSI front end over the in-memory test disk so real
//! initiators can be pointed at it before the port glue exists.
//!
//! ```sh
//! cargo run -p iscsi --example target -- 127.0.0.1:3260 [size-MiB]
//! iscsi-inq iscsi://127.0.0.1:3260/iqn.2026-11.org.scsiport:test/0
//! ```
//! Optional CHAP: set `TARGET_CHAP=user:secret` (and `TARGET_MUTUAL=user:secret`).
//! Logging: `RUST_LOG=iscsi=debug`.

use std::net::SocketAddr;

use iscsi::config::{ChapConfig, ChapCredential};
use iscsi::testing::{TEST_IQN, simple_config, spawn_server};

fn cred(v: &str) -> Option<ChapCredential> {
    let (u, s) = v.split_once(':')?;
    Some(ChapCredential::new(u, s))
}

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .as_deref()
        .unwrap_or("127.0.0.1:3260")
        .parse()
        .expect("listen address");
    let mib: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(64);
    let (mut config, disk) = simple_config(mib * 2048);
    if let Some(c) = std::env::var("TARGET_CHAP").ok().as_deref().and_then(cred) {
        let mutual = std::env::var("TARGET_MUTUAL")
            .ok()
            .as_deref()
            .and_then(cred);
        config.targets[0].chap = Some(ChapConfig {
            users: vec![c],
            mutual,
        });
    }
    let server = spawn_server(addr, config, disk)?;
    println!("iscsi://{}/{}/0", server.addr, TEST_IQN);
    loop {
        std::thread::park();
    }
}
