//! The configuration file (TOML): adapters with their logical units, iSCSI portals and targets.
//!
//! Parsing is two steps, as everywhere in this project: [`Config::parse`] turns text into typed
//! values (serde rejects unknown keys and wrong types, naming the key), then
//! [`Config::validate`] checks what types cannot (references between sections, sizes, names) and
//! names the offending key with what would be valid. A configuration that fails either step is
//! never partly applied: `serve` starts nothing until the whole file is valid.
//!
//! ```toml
//! [[portal]]
//! listen = "127.0.0.1:3260"
//!
//! [[adapter]]
//! name = "ram0"
//! miniport = "ram"          # ram | file | null | sim
//! model = "storport"        # storport | scsiport
//! # [adapter.sim]           # sim only: timing and fault injection, all keys optional
//! # interrupt_latency_us = 20
//! # fault_rates = { busy = 1000, lost_interrupt = 100 }   # per million commands
//! [[adapter.lu]]
//! target = 0
//! lun = 0
//! size = "1 GiB"
//! block_size = 512
//!
//! [[target]]
//! iqn = "iqn.2026-11.dev.scsiport:disk0"
//! initiators = []           # empty: every initiator may log in
//! [[target.lun]]
//! lun = 0
//! adapter = "ram0"
//! target_id = 0
//! adapter_lun = 0
//!
//! [control]                 # optional: the management socket (scsiport stat, adapter, ...)
//! socket = "/run/user/1000/scsiport.sock"
//!
//! [metrics]                 # optional: Prometheus endpoint, off without this section
//! listen = "127.0.0.1:9464"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytesize::ByteSize;
use serde::Deserialize;

/// The IQN of the built-in default target (`scsiport serve` with no arguments).
pub const DEFAULT_IQN: &str = "iqn.2026-11.dev.scsiport:default";
/// The built-in default portal.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3260";

/// A whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Addresses the iSCSI front end listens on.
    #[serde(default, rename = "portal")]
    pub portals: Vec<Portal>,
    /// Host adapters, each driven by one miniport.
    #[serde(default, rename = "adapter")]
    pub adapters: Vec<Adapter>,
    /// iSCSI targets and the logical units they expose.
    #[serde(default, rename = "target")]
    pub targets: Vec<Target>,
    /// The management control socket (`scsiport stat`, `sessions`, `adapter`).
    #[serde(default)]
    pub control: Control,
    /// The Prometheus endpoint; absent: off.
    pub metrics: Option<Metrics>,
    /// Tuning of the iSCSI front end.
    #[serde(default)]
    pub iscsi: Iscsi,
}

/// The `[iscsi]` section: tuning of the iSCSI front end.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Iscsi {
    /// Adaptive polling, µs: a connection alone on its network thread whose initiator waits for
    /// each response (queue depth 1) polls its socket this long before sleeping; 0 turns it off
    /// (`iscsi::config::ServerConfig::poll_before_sleep`).
    #[serde(default = "default_poll_before_sleep_us")]
    pub poll_before_sleep_us: u64,
}

impl Default for Iscsi {
    fn default() -> Self {
        Iscsi {
            poll_before_sleep_us: default_poll_before_sleep_us(),
        }
    }
}

fn default_poll_before_sleep_us() -> u64 {
    iscsi::config::DEFAULT_POLL_BEFORE_SLEEP.as_micros() as u64
}

impl Iscsi {
    /// The polling window as a duration.
    pub fn poll_before_sleep(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.poll_before_sleep_us)
    }
}

/// The `[metrics]` section: where `serve` exports its counters for Prometheus.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// `address:port` of the HTTP endpoint (`GET /metrics`); loopback by default.
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
}

/// The default metrics address: loopback, Prometheus' customary exporter port range.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

fn default_metrics_listen() -> SocketAddr {
    DEFAULT_METRICS_LISTEN.parse().expect("constant address")
}

/// The `[control]` section: where `serve` puts its control socket.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Path of the Unix domain socket; absent: [`default_control_socket`].
    pub socket: Option<PathBuf>,
}

/// Longest socket path a `sockaddr_un` holds (108 bytes with the terminating NUL on Linux).
pub const MAX_SOCKET_PATH: usize = 107;

/// The default control socket: `$XDG_RUNTIME_DIR/scsiport.sock` when that directory exists,
/// otherwise `/tmp/scsiport-<uid>.sock`.
pub fn default_control_socket() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && dir.is_absolute()
        && dir.is_dir()
    {
        let p = dir.join("scsiport.sock");
        if p.as_os_str().len() <= MAX_SOCKET_PATH {
            return p;
        }
    }
    PathBuf::from(format!(
        "/tmp/scsiport-{}.sock",
        rustix::process::getuid().as_raw()
    ))
}

impl Control {
    /// The socket path to use: the configured one or the default.
    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(default_control_socket)
    }
}

/// One iSCSI portal.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Portal {
    /// `address:port` to listen on.
    pub listen: SocketAddr,
}

/// Which miniport drives an adapter.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MiniportKind {
    /// Sparse, thin RAM disks; completes in `start_io`.
    Ram,
    /// A regular file or block device; completes from its interrupt routine.
    File,
    /// Reads zeroes, discards writes: measures the stack's own overhead.
    Null,
    /// A simulated host adapter over RAM LUs, with interrupts, system DMA and fault
    /// injection (`[adapter.sim]`).
    Sim,
}

/// Which I/O model the port runs the adapter under.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum IoModel {
    /// SCSI Port: one request at a time, the miniport pulls the next with NextRequest.
    Scsiport,
    /// Storport: the port pushes requests up to the queue depths.
    #[default]
    Storport,
}

/// One host adapter.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Adapter {
    /// Name that targets use to refer to the adapter.
    pub name: String,
    /// The miniport that drives it.
    pub miniport: MiniportKind,
    /// The port's I/O model for it.
    #[serde(default)]
    pub model: IoModel,
    /// Logical units behind the adapter.
    #[serde(default, rename = "lu")]
    pub lus: Vec<LogicalUnit>,
    /// Settings of a `sim` adapter (`[adapter.sim]`); only with `miniport = "sim"`.
    pub sim: Option<SimSettings>,
}

/// The `[adapter.sim]` table: timing and fault injection of a simulated adapter. Every key is
/// optional; absent keys keep the simulator's defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimSettings {
    /// Time from the hardware processing a command to its interrupt, in µs (at most 1 s).
    pub interrupt_latency_us: Option<u64>,
    /// How long a bus reset keeps the adapter busy, in ms (at most 10 s).
    pub reset_time_ms: Option<u64>,
    /// How long the bus reset after a slow-reset fault keeps it busy, in ms (at most 10 s).
    pub slow_reset_time_ms: Option<u64>,
    /// Faults per million commands by kind name (`lost_interrupt`, `late_completion`,
    /// `spurious_interrupt`, `bus_reset_detected`, `selection_timeout`, `busy`,
    /// `check_condition`, `hang_until_reset`, `slow_reset`); the sum at most 1000000.
    #[serde(default)]
    pub fault_rates: BTreeMap<String, u32>,
    /// Seed of the fault draw.
    pub seed: Option<u64>,
    /// Sense key, ASC and ASCQ of rate-drawn CHECK CONDITION faults.
    pub check_condition_sense: Option<[u8; 3]>,
    /// Data transfers through the system-DMA path (default true).
    pub system_dma: Option<bool>,
    /// Defer interrupt work (CallEnableInterrupts) above this many pending completions.
    pub defer_threshold: Option<u32>,
    /// The port tick of this adapter in ms (1..=1000; default 1000): request timeouts and the
    /// recovery ladder count in ticks, so a short tick recovers hangs quickly.
    pub port_tick_ms: Option<u64>,
}

impl SimSettings {
    /// The fault rates indexed like [`miniports::sim::SimFaultKind::ALL`] (names validated).
    pub fn rates(&self) -> [u32; 9] {
        let mut r = [0u32; 9];
        for (name, &rate) in &self.fault_rates {
            if let Some(k) = miniports::sim::SimFaultKind::from_name(name) {
                r[k.index()] = rate;
            }
        }
        r
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let max_ms = |k: &str, v: Option<u64>| match v {
            Some(ms) if ms > 10_000 => Err(err(
                format!("{key}.{k}"),
                format!("{ms} is too long; at most 10000 ms"),
            )),
            _ => Ok(()),
        };
        max_ms("reset_time_ms", self.reset_time_ms)?;
        max_ms("slow_reset_time_ms", self.slow_reset_time_ms)?;
        if let Some(us) = self.interrupt_latency_us
            && us > 1_000_000
        {
            return Err(err(
                format!("{key}.interrupt_latency_us"),
                format!("{us} is too long; at most 1000000 µs"),
            ));
        }
        if let Some(t) = self.port_tick_ms
            && !(1..=1000).contains(&t)
        {
            return Err(err(
                format!("{key}.port_tick_ms"),
                format!("{t} is out of range; valid: 1..=1000"),
            ));
        }
        if let Some([k, _, _]) = self.check_condition_sense
            && k > 0x0F
        {
            return Err(err(
                format!("{key}.check_condition_sense"),
                format!("sense key {k} is out of range; valid: 0..=15"),
            ));
        }
        let mut total = 0u64;
        for (name, &rate) in &self.fault_rates {
            if miniports::sim::SimFaultKind::from_name(name).is_none() {
                let valid: Vec<&str> = miniports::sim::SimFaultKind::ALL
                    .iter()
                    .map(|k| k.name())
                    .collect();
                return Err(err(
                    format!("{key}.fault_rates.{name}"),
                    format!("unknown fault kind; valid: {}", valid.join(", ")),
                ));
            }
            if rate > 1_000_000 {
                return Err(err(
                    format!("{key}.fault_rates.{name}"),
                    format!("{rate} is more than 1000000 per million"),
                ));
            }
            total += u64::from(rate);
        }
        if total > 1_000_000 {
            return Err(err(
                format!("{key}.fault_rates"),
                format!("the rates add up to {total}, more than 1000000 per million"),
            ));
        }
        Ok(())
    }
}

/// One logical unit behind an adapter.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogicalUnit {
    /// SCSI path (bus) id.
    #[serde(default)]
    pub path: u8,
    /// SCSI target id on the bus.
    #[serde(default)]
    pub target: u8,
    /// Logical unit number.
    #[serde(default)]
    pub lun: u8,
    /// Capacity (`"1 GiB"`, `"512MiB"`, or bytes). For `file`, the file's size when absent.
    pub size: Option<ByteSize>,
    /// Logical block size in bytes: 512 or 4096.
    #[serde(default = "default_block_size")]
    pub block_size: u32,
    /// Backing file or block device (`file` miniport only).
    pub file: Option<PathBuf>,
    /// Product serial number reported in VPD page 0x80; derived from the address when absent.
    pub serial: Option<String>,
}

fn default_block_size() -> u32 {
    512
}

/// One iSCSI target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// iSCSI qualified name (`iqn.YYYY-MM.reversed.domain[:id]`, `eui.` or `naa.`).
    pub iqn: String,
    /// TargetAlias sent at login.
    pub alias: Option<String>,
    /// Initiator names allowed to log in and to see the target; empty: everyone.
    #[serde(default)]
    pub initiators: Vec<String>,
    /// CHAP credentials; absent: no authentication.
    pub chap: Option<Chap>,
    /// The LUN map.
    #[serde(default, rename = "lun")]
    pub luns: Vec<LunMapping>,
}

/// CHAP credentials of a target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Chap {
    /// The name the initiator authenticates with.
    pub user: String,
    /// The initiator's secret.
    pub secret: String,
    /// For mutual CHAP: the name the target answers with.
    pub mutual_user: Option<String>,
    /// For mutual CHAP: the target's secret.
    pub mutual_secret: Option<String>,
}

/// One LUN of a target, mapped to a logical unit of an adapter.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LunMapping {
    /// The LUN the initiator sees.
    pub lun: u16,
    /// Name of the adapter.
    pub adapter: String,
    /// Path id on the adapter.
    #[serde(default)]
    pub path: u8,
    /// Target id on the adapter.
    #[serde(default)]
    pub target_id: u8,
    /// Logical unit number on the adapter.
    #[serde(default)]
    pub adapter_lun: u8,
}

/// A configuration error, naming the key that is wrong and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path to the key, e.g. `adapter[0].lu[1].block_size`.
    pub key: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// The built-in default: one 1 GiB RAM LU behind a Storport-model adapter, exported as LUN 0
    /// of [`DEFAULT_IQN`] on [`DEFAULT_LISTEN`].
    pub fn builtin_default() -> Config {
        Config {
            portals: vec![Portal {
                listen: DEFAULT_LISTEN.parse().expect("constant address"),
            }],
            adapters: vec![Adapter {
                name: "ram0".into(),
                miniport: MiniportKind::Ram,
                model: IoModel::Storport,
                lus: vec![LogicalUnit {
                    path: 0,
                    target: 0,
                    lun: 0,
                    size: Some(ByteSize::gib(1)),
                    block_size: 512,
                    file: None,
                    serial: None,
                }],
                sim: None,
            }],
            targets: vec![Target {
                iqn: DEFAULT_IQN.into(),
                alias: Some("scsiport default".into()),
                initiators: vec![],
                chap: None,
                luns: vec![LunMapping {
                    lun: 0,
                    adapter: "ram0".into(),
                    path: 0,
                    target_id: 0,
                    adapter_lun: 0,
                }],
            }],
            control: Control::default(),
            metrics: None,
            iscsi: Iscsi::default(),
        }
    }

    /// Parses and validates a configuration file's text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            // toml names the key in its span; report the line too.
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let key = match line {
                Some(l) => format!("line {l}"),
                None => String::new(),
            };
            err(key, message)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot: references, uniqueness, sizes and names.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.portals.is_empty() {
            return Err(err(
                "portal",
                "no portal configured; add [[portal]] with listen = \"127.0.0.1:3260\"",
            ));
        }
        if let Some(socket) = &self.control.socket {
            validate_socket_path("control.socket", socket)?;
        }
        let max_poll = iscsi::config::MAX_POLL_BEFORE_SLEEP.as_micros();
        if u128::from(self.iscsi.poll_before_sleep_us) > max_poll {
            return Err(err(
                "iscsi.poll_before_sleep_us",
                format!(
                    "{} is too long: at most {max_poll} (0 turns polling off)",
                    self.iscsi.poll_before_sleep_us
                ),
            ));
        }
        let mut listens = BTreeSet::new();
        for (i, p) in self.portals.iter().enumerate() {
            if !listens.insert(p.listen) {
                return Err(err(
                    format!("portal[{i}].listen"),
                    format!("{} is listed twice", p.listen),
                ));
            }
        }
        let mut adapters: BTreeMap<&str, &Adapter> = BTreeMap::new();
        for (i, a) in self.adapters.iter().enumerate() {
            let key = format!("adapter[{i}]");
            if a.name.is_empty()
                || !a
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(err(
                    format!("{key}.name"),
                    format!(
                        "{:?} is not a valid name; use letters, digits, '-' and '_'",
                        a.name
                    ),
                ));
            }
            if adapters.insert(&a.name, a).is_some() {
                return Err(err(
                    format!("{key}.name"),
                    format!("adapter name {:?} is used twice", a.name),
                ));
            }
            if a.lus.is_empty() {
                return Err(err(
                    format!("{key}.lu"),
                    "an adapter needs at least one [[adapter.lu]]",
                ));
            }
            match (&a.sim, a.miniport) {
                (Some(sim), MiniportKind::Sim) => sim.validate(&format!("{key}.sim"))?,
                (Some(_), _) => {
                    return Err(err(
                        format!("{key}.sim"),
                        "only a sim adapter takes [adapter.sim]; use miniport = \"sim\"",
                    ));
                }
                _ => {}
            }
            let mut addrs = BTreeSet::new();
            for (j, lu) in a.lus.iter().enumerate() {
                let key = format!("{key}.lu[{j}]");
                validate_lu(&key, a.miniport, lu)?;
                if !addrs.insert((lu.path, lu.target, lu.lun)) {
                    return Err(err(
                        key,
                        format!(
                            "address path {} target {} lun {} is used twice on adapter {:?}",
                            lu.path, lu.target, lu.lun, a.name
                        ),
                    ));
                }
            }
        }
        let mut iqns = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let key = format!("target[{i}]");
            validate_iscsi_name(&format!("{key}.iqn"), &t.iqn)?;
            if !iqns.insert(t.iqn.to_ascii_lowercase()) {
                return Err(err(
                    format!("{key}.iqn"),
                    format!("target {:?} is defined twice", t.iqn),
                ));
            }
            for (j, name) in t.initiators.iter().enumerate() {
                validate_iscsi_name(&format!("{key}.initiators[{j}]"), name)?;
            }
            if let Some(chap) = &t.chap {
                validate_chap(&format!("{key}.chap"), chap)?;
            }
            if t.luns.is_empty() {
                return Err(err(
                    format!("{key}.lun"),
                    "a target needs at least one [[target.lun]]",
                ));
            }
            let mut luns = BTreeSet::new();
            for (j, m) in t.luns.iter().enumerate() {
                let key = format!("{key}.lun[{j}]");
                if m.lun >= 16384 {
                    return Err(err(
                        format!("{key}.lun"),
                        format!("{} is out of range; valid LUNs are 0..=16383", m.lun),
                    ));
                }
                if !luns.insert(m.lun) {
                    return Err(err(
                        format!("{key}.lun"),
                        format!("LUN {} is mapped twice", m.lun),
                    ));
                }
                let Some(a) = adapters.get(m.adapter.as_str()) else {
                    let known: Vec<&str> = adapters.keys().copied().collect();
                    return Err(err(
                        format!("{key}.adapter"),
                        format!(
                            "no adapter named {:?}; defined adapters: {}",
                            m.adapter,
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                };
                if !a.lus.iter().any(|lu| {
                    lu.path == m.path && lu.target == m.target_id && lu.lun == m.adapter_lun
                }) {
                    let have: Vec<String> = a
                        .lus
                        .iter()
                        .map(|lu| format!("{}/{}/{}", lu.path, lu.target, lu.lun))
                        .collect();
                    return Err(err(
                        key,
                        format!(
                            "adapter {:?} has no logical unit at path/target/lun {}/{}/{}; it has {}",
                            a.name,
                            m.path,
                            m.target_id,
                            m.adapter_lun,
                            have.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A control socket path must be absolute, name a file, and fit in a `sockaddr_un`.
fn validate_socket_path(key: &str, path: &std::path::Path) -> Result<(), ConfigError> {
    if !path.is_absolute() || path.file_name().is_none() {
        return Err(err(
            key,
            format!(
                "{:?} is not an absolute file path; e.g. socket = \"/run/user/1000/scsiport.sock\"",
                path.display().to_string()
            ),
        ));
    }
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(err(
            key,
            format!("is {len} bytes long; a Unix socket path holds at most {MAX_SOCKET_PATH}"),
        ));
    }
    Ok(())
}

fn validate_lu(key: &str, kind: MiniportKind, lu: &LogicalUnit) -> Result<(), ConfigError> {
    if lu.block_size != 512 && lu.block_size != 4096 {
        return Err(err(
            format!("{key}.block_size"),
            format!("{} is not supported; valid: 512 or 4096", lu.block_size),
        ));
    }
    if lu.target >= 128 {
        return Err(err(
            format!("{key}.target"),
            format!("{} is out of range; valid: 0..=127", lu.target),
        ));
    }
    match kind {
        MiniportKind::File => {
            if lu.file.is_none() {
                return Err(err(
                    format!("{key}.file"),
                    "the file miniport needs file = \"/path/to/file-or-block-device\"",
                ));
            }
        }
        MiniportKind::Ram | MiniportKind::Null | MiniportKind::Sim => {
            if lu.file.is_some() {
                return Err(err(
                    format!("{key}.file"),
                    "only the file miniport takes a file; use miniport = \"file\"",
                ));
            }
            if lu.size.is_none() {
                return Err(err(
                    format!("{key}.size"),
                    "missing; give a capacity such as size = \"1 GiB\"",
                ));
            }
        }
    }
    if let Some(size) = lu.size {
        let bytes = size.as_u64();
        if bytes < u64::from(lu.block_size) {
            return Err(err(
                format!("{key}.size"),
                format!(
                    "{size} is smaller than one block of {} bytes",
                    lu.block_size
                ),
            ));
        }
        if bytes % u64::from(lu.block_size) != 0 {
            return Err(err(
                format!("{key}.size"),
                format!(
                    "{bytes} bytes is not a multiple of the block size {}",
                    lu.block_size
                ),
            ));
        }
    }
    if let Some(serial) = &lu.serial
        && (serial.is_empty() || serial.len() > 32 || !serial.chars().all(|c| c.is_ascii_graphic()))
    {
        return Err(err(
            format!("{key}.serial"),
            format!("{serial:?} is not valid; use 1 to 32 printable ASCII characters"),
        ));
    }
    Ok(())
}

/// Checks an iSCSI name (RFC 7143 §4.2.7): `iqn.`, `eui.` or `naa.` form, at most 223 bytes.
pub fn validate_iscsi_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let lower = name.to_ascii_lowercase();
    let ok_chars = lower
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    let ok_form = if let Some(rest) = lower.strip_prefix("iqn.") {
        // iqn.YYYY-MM.naming-authority[:unique]
        let b = rest.as_bytes();
        b.len() > 8
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[5..7].iter().all(u8::is_ascii_digit)
            && b[7] == b'.'
    } else if let Some(hex) = lower.strip_prefix("eui.") {
        hex.len() == 16 && hex.chars().all(|c| c.is_ascii_hexdigit())
    } else if let Some(hex) = lower.strip_prefix("naa.") {
        (hex.len() == 16 || hex.len() == 32) && hex.chars().all(|c| c.is_ascii_hexdigit())
    } else {
        false
    };
    if name.len() > 223 || !ok_chars || !ok_form {
        return Err(err(
            key,
            format!(
                "{name:?} is not an iSCSI name; expected iqn.YYYY-MM.reversed.domain[:id], eui.<16 hex> or naa.<16|32 hex>"
            ),
        ));
    }
    Ok(())
}

fn validate_chap(key: &str, chap: &Chap) -> Result<(), ConfigError> {
    if chap.user.is_empty() {
        return Err(err(format!("{key}.user"), "must not be empty"));
    }
    if chap.secret.is_empty() || chap.secret.len() > 255 {
        return Err(err(
            format!("{key}.secret"),
            "must be 1 to 255 bytes (RFC 7143 recommends at least 12)",
        ));
    }
    match (&chap.mutual_user, &chap.mutual_secret) {
        (None, None) => Ok(()),
        (Some(u), Some(s)) => {
            if u.is_empty() {
                return Err(err(format!("{key}.mutual_user"), "must not be empty"));
            }
            if s.is_empty() || s.len() > 255 {
                return Err(err(
                    format!("{key}.mutual_secret"),
                    "must be 1 to 255 bytes",
                ));
            }
            if *s == chap.secret {
                return Err(err(
                    format!("{key}.mutual_secret"),
                    "must differ from secret (RFC 7143 §12.1.3 forbids reusing a CHAP secret in both directions)",
                ));
            }
            Ok(())
        }
        (Some(_), None) => Err(err(
            format!("{key}.mutual_secret"),
            "missing; mutual CHAP needs both mutual_user and mutual_secret",
        )),
        (None, Some(_)) => Err(err(
            format!("{key}.mutual_user"),
            "missing; mutual CHAP needs both mutual_user and mutual_secret",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[portal]]
listen = "127.0.0.1:3260"

[[adapter]]
name = "ram0"
miniport = "ram"
model = "scsiport"
[[adapter.lu]]
target = 0
lun = 0
size = "64 MiB"
block_size = 4096

[[target]]
iqn = "iqn.2026-11.dev.scsiport:disk0"
initiators = ["iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"]
chap = { user = "alice", secret = "secret-of-alice", mutual_user = "tgt", mutual_secret = "secret-of-target" }
[[target.lun]]
lun = 0
adapter = "ram0"
"#;

    #[test]
    fn good_file_parses_with_defaults() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.adapters[0].model, IoModel::Scsiport);
        assert_eq!(c.adapters[0].lus[0].size, Some(ByteSize::mib(64)));
        assert_eq!(c.adapters[0].lus[0].block_size, 4096);
        assert_eq!(c.targets[0].luns[0].adapter_lun, 0);
        assert_eq!(
            c.targets[0].chap.as_ref().unwrap().mutual_user.as_deref(),
            Some("tgt")
        );
    }

    #[test]
    fn builtin_default_is_valid() {
        let c = Config::builtin_default();
        c.validate().unwrap();
        assert_eq!(c.targets[0].iqn, DEFAULT_IQN);
        assert_eq!(c.adapters[0].lus[0].size, Some(ByteSize::gib(1)));
    }

    fn parse_err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_is_named_with_valid_keys() {
        let e = parse_err(&GOOD.replace("block_size = 4096", "blocksize = 4096"));
        assert!(e.contains("unknown field `blocksize`"), "{e}");
        assert!(e.contains("block_size"), "{e}");
    }

    #[test]
    fn bad_enum_value_lists_valid_ones() {
        let e = parse_err(&GOOD.replace("miniport = \"ram\"", "miniport = \"tape\""));
        assert!(
            e.contains("tape") && e.contains("ram") && e.contains("file"),
            "{e}"
        );
    }

    #[test]
    fn bad_block_size_names_key() {
        let e = parse_err(&GOOD.replace("block_size = 4096", "block_size = 1000"));
        assert_eq!(
            e,
            "adapter[0].lu[0].block_size: 1000 is not supported; valid: 512 or 4096"
        );
    }

    #[test]
    fn unknown_adapter_reference_lists_defined_ones() {
        let e = parse_err(&GOOD.replace("adapter = \"ram0\"", "adapter = \"ram9\""));
        assert_eq!(
            e,
            "target[0].lun[0].adapter: no adapter named \"ram9\"; defined adapters: ram0"
        );
    }

    #[test]
    fn missing_logical_unit_is_reported() {
        let e =
            parse_err(&GOOD.replace("adapter = \"ram0\"", "adapter = \"ram0\"\nadapter_lun = 3"));
        assert!(
            e.starts_with("target[0].lun[0]: adapter \"ram0\" has no logical unit"),
            "{e}"
        );
    }

    #[test]
    fn bad_iqn_is_rejected() {
        let e = parse_err(&GOOD.replace("iqn.2026-11.dev.scsiport:disk0", "disk0"));
        assert!(
            e.starts_with("target[0].iqn: \"disk0\" is not an iSCSI name"),
            "{e}"
        );
    }

    #[test]
    fn size_not_multiple_of_block_is_rejected() {
        let e = parse_err(&GOOD.replace("size = \"64 MiB\"", "size = 5000"));
        assert!(
            e.starts_with("adapter[0].lu[0].size: 5000 bytes is not a multiple"),
            "{e}"
        );
    }

    /// GOOD with its adapter turned into a sim adapter with `sim` as its `[adapter.sim]`.
    fn sim_config(sim: &str) -> String {
        GOOD.replace(
            "miniport = \"ram\"\nmodel = \"scsiport\"",
            &format!("miniport = \"sim\"\nmodel = \"scsiport\"\n[adapter.sim]\n{sim}"),
        )
    }

    #[test]
    fn sim_adapter_parses_with_rates() {
        let c = Config::parse(&sim_config(
            "interrupt_latency_us = 50\nseed = 7\nport_tick_ms = 50\n\
             fault_rates = { busy = 1000, slow_reset = 20 }",
        ))
        .unwrap();
        let a = &c.adapters[0];
        assert_eq!(a.miniport, MiniportKind::Sim);
        let sim = a.sim.as_ref().unwrap();
        assert_eq!(sim.interrupt_latency_us, Some(50));
        assert_eq!(sim.port_tick_ms, Some(50));
        let rates = sim.rates();
        assert_eq!(rates[miniports::sim::SimFaultKind::Busy.index()], 1000);
        assert_eq!(rates[miniports::sim::SimFaultKind::SlowReset.index()], 20);
        assert_eq!(rates.iter().sum::<u32>(), 1020);
        // A sim adapter without the table is fine too.
        let plain = GOOD.replace("miniport = \"ram\"", "miniport = \"sim\"");
        assert_eq!(Config::parse(&plain).unwrap().adapters[0].sim, None);
    }

    #[test]
    fn sim_keys_are_validated_by_name() {
        let e = parse_err(&sim_config("fault_rates = { bussy = 10 }"));
        assert!(
            e.starts_with(
                "adapter[0].sim.fault_rates.bussy: unknown fault kind; valid: lost_interrupt,"
            ),
            "{e}"
        );
        let e = parse_err(&sim_config(
            "fault_rates = { busy = 600000, hang_until_reset = 600000 }",
        ));
        assert!(
            e.starts_with("adapter[0].sim.fault_rates: the rates add up to 1200000"),
            "{e}"
        );
        let e = parse_err(&sim_config("port_tick_ms = 0"));
        assert!(
            e.starts_with("adapter[0].sim.port_tick_ms: 0 is out of range"),
            "{e}"
        );
        let e = parse_err(&sim_config("slow_reset_time_ms = 20000"));
        assert!(
            e.starts_with("adapter[0].sim.slow_reset_time_ms: 20000 is too long"),
            "{e}"
        );
        let e = parse_err(&sim_config("interrupt_latency = 5"));
        assert!(e.contains("unknown field `interrupt_latency`"), "{e}");
        // [adapter.sim] on another miniport.
        let e = parse_err(&GOOD.replace(
            "model = \"scsiport\"",
            "model = \"scsiport\"\n[adapter.sim]\nseed = 1",
        ));
        assert!(e.starts_with("adapter[0].sim: only a sim adapter"), "{e}");
    }

    #[test]
    fn file_miniport_needs_file() {
        let e = parse_err(&GOOD.replace("miniport = \"ram\"", "miniport = \"file\""));
        assert!(
            e.starts_with("adapter[0].lu[0].file: the file miniport needs"),
            "{e}"
        );
    }

    #[test]
    fn mutual_chap_needs_both_halves_and_distinct_secret() {
        let e = parse_err(&GOOD.replace(", mutual_secret = \"secret-of-target\"", ""));
        assert!(
            e.starts_with("target[0].chap.mutual_secret: missing"),
            "{e}"
        );
        let e = parse_err(&GOOD.replace("secret-of-target", "secret-of-alice"));
        assert!(
            e.starts_with("target[0].chap.mutual_secret: must differ"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_lun_is_rejected() {
        let text = format!("{GOOD}\n[[target.lun]]\nlun = 0\nadapter = \"ram0\"\n");
        let e = parse_err(&text);
        assert_eq!(e, "target[0].lun[1].lun: LUN 0 is mapped twice");
    }

    #[test]
    fn wrong_type_names_line() {
        let e = parse_err(&GOOD.replace("lun = 0\nsize", "lun = \"zero\"\nsize"));
        assert!(e.starts_with("line "), "{e}");
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn iscsi_poll_window_defaults_parses_and_is_bounded() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(
            c.iscsi.poll_before_sleep(),
            iscsi::config::DEFAULT_POLL_BEFORE_SLEEP
        );
        let c = Config::parse(&format!("{GOOD}\n[iscsi]\npoll_before_sleep_us = 0\n")).unwrap();
        assert!(c.iscsi.poll_before_sleep().is_zero());
        let e = parse_err(&format!("{GOOD}\n[iscsi]\npoll_before_sleep_us = 5000\n"));
        assert!(
            e.starts_with("iscsi.poll_before_sleep_us: 5000 is too long: at most 1000"),
            "{e}"
        );
        let e = parse_err(&format!("{GOOD}\n[iscsi]\npoll_us = 5\n"));
        assert!(e.contains("unknown field `poll_us`"), "{e}");
    }

    #[test]
    fn control_socket_parses_and_is_validated() {
        let c = Config::parse(&format!(
            "{GOOD}\n[control]\nsocket = \"/tmp/x/ctl.sock\"\n"
        ))
        .unwrap();
        assert_eq!(c.control.socket_path(), PathBuf::from("/tmp/x/ctl.sock"));
        let e = parse_err(&format!("{GOOD}\n[control]\nsocket = \"ctl.sock\"\n"));
        assert!(
            e.starts_with("control.socket: \"ctl.sock\" is not an absolute"),
            "{e}"
        );
        let long = format!("/{}", "x".repeat(200));
        let e = parse_err(&format!("{GOOD}\n[control]\nsocket = \"{long}\"\n"));
        assert!(e.starts_with("control.socket: is 201 bytes long"), "{e}");
        let e = parse_err(&format!("{GOOD}\n[control]\npath = \"/tmp/a\"\n"));
        assert!(e.contains("unknown field `path`"), "{e}");
        assert!(
            Config::parse(GOOD)
                .unwrap()
                .control
                .socket_path()
                .is_absolute()
        );
    }

    #[test]
    fn metrics_are_off_by_default_and_loopback_when_on() {
        assert_eq!(Config::parse(GOOD).unwrap().metrics, None);
        let c = Config::parse(&format!("{GOOD}\n[metrics]\n")).unwrap();
        assert!(c.metrics.unwrap().listen.ip().is_loopback());
        let e = parse_err(&format!("{GOOD}\n[metrics]\nlisten = \"nowhere\"\n"));
        assert!(e.contains("invalid socket address"), "{e}");
    }

    #[test]
    fn no_portal_is_rejected() {
        let e = parse_err(&GOOD.replace("[[portal]]\nlisten = \"127.0.0.1:3260\"\n", ""));
        assert!(e.starts_with("portal: no portal configured"), "{e}");
    }
}
