//! WMI through the control socket (`scsiport wmi list|query|set|exec`): the port's WMI API
//! ([`port::Adapter::wmi_reg_info`] and friends), which answers the port's own statistics blocks
//! and routes the rest to the adapter's miniport. Queries and methods follow the seed's
//! buffer-too-small protocol: the first buffer is [`INITIAL_BUFFER`] bytes; an answer "too small,
//! N needed" is retried once more with N bytes, up to [`port::wmi::WMI_MAX_BUFFER`].
//!
//! Threads: every function here blocks until the port has answered; the control socket runs
//! them on tokio's blocking pool.
//!
//! GUIDs are written as 32 hex digits in the 8-4-4-4-12 layout, the 16 bytes in the order the
//! port carries them (no Windows mixed-endian swapping). The port's blocks also have names:
//! [`ADAPTER_STATISTICS_NAME`] and [`LU_STATISTICS_NAME`].

use port::wmi::blocks::{ADAPTER_STATISTICS_GUID, LU_STATISTICS_GUID, StatisticsBlock};
use port::wmi::{WMI_MAX_BUFFER, WmiError, WmiSource};
use port::{Adapter, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::control::Latency;

/// The first buffer of a query or method.
pub const INITIAL_BUFFER: u32 = 4096;
/// Requests sent for one query (the first and the retries with a larger buffer).
const MAX_ATTEMPTS: usize = 3;
/// Name of [`ADAPTER_STATISTICS_GUID`].
pub const ADAPTER_STATISTICS_NAME: &str = "adapter-statistics";
/// Name of [`LU_STATISTICS_GUID`].
pub const LU_STATISTICS_NAME: &str = "lu-statistics";

/// One data block the adapter registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WmiBlock {
    /// The block's GUID.
    pub guid: String,
    /// Number of instances.
    pub instance_count: u32,
    /// `expensive`, `event-only`.
    pub flags: Vec<String>,
    /// `port` (answered by the port from its statistics) or `miniport`.
    #[serde(default)]
    pub source: String,
    /// The name of a port block (`adapter-statistics`, `lu-statistics`); empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Failed commands by kind (they add up to `errors`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorsByKind {
    /// CHECK CONDITION.
    pub check_condition: u64,
    /// SELECTION_TIMEOUT.
    pub selection_timeout: u64,
    /// BUS_RESET.
    pub bus_reset: u64,
    /// ABORTED.
    pub aborted: u64,
    /// Any other status.
    pub other: u64,
}

/// One instance of a port statistics block, decoded ([`StatisticsBlock`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatisticsInstance {
    /// `adapter`, or the LU as `path:target:lun`.
    pub instance: String,
    /// Commands completed.
    pub commands: u64,
    /// READs among them.
    pub reads: u64,
    /// WRITEs among them.
    pub writes: u64,
    /// Bytes moved by successful reads.
    pub bytes_read: u64,
    /// Bytes moved by successful writes.
    pub bytes_written: u64,
    /// Commands completed with a status other than SUCCESS.
    pub errors: u64,
    /// `errors` by kind.
    pub errors_by_kind: ErrorsByKind,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Bus, LU and adapter resets.
    pub resets: u64,
    /// BUSY / QUEUE FULL completions.
    pub busy: u64,
    /// Requests submitted and not yet completed (a gauge).
    pub queue_depth: u64,
    /// Submit-to-completion times.
    pub latency: Latency,
}

impl From<&StatisticsBlock> for StatisticsInstance {
    fn from(b: &StatisticsBlock) -> Self {
        let s = &b.statistics;
        StatisticsInstance {
            instance: match b.address {
                None => "adapter".to_string(),
                Some(a) => format!("{}:{}:{}", a.path_id, a.target_id, a.lun),
            },
            commands: s.commands,
            reads: s.reads,
            writes: s.writes,
            bytes_read: s.bytes_read,
            bytes_written: s.bytes_written,
            errors: s.errors,
            errors_by_kind: ErrorsByKind {
                check_condition: s.errors_of(ErrorKind::CheckCondition),
                selection_timeout: s.errors_of(ErrorKind::SelectionTimeout),
                bus_reset: s.errors_of(ErrorKind::BusReset),
                aborted: s.errors_of(ErrorKind::Aborted),
                other: s.errors_of(ErrorKind::Other),
            },
            timeouts: s.timeouts,
            resets: s.resets,
            busy: s.busy,
            queue_depth: s.outstanding,
            latency: s.latency.into(),
        }
    }
}

/// Formats a GUID's 16 bytes as 8-4-4-4-12 hex.
pub fn format_guid(g: &[u8; 16]) -> String {
    let h = to_hex(g);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Parses 32 hex digits, with or without the dashes of [`format_guid`] and braces, or the name
/// of a port block.
pub fn parse_guid(s: &str) -> Result<[u8; 16], String> {
    match s {
        ADAPTER_STATISTICS_NAME => return Ok(ADAPTER_STATISTICS_GUID),
        LU_STATISTICS_NAME => return Ok(LU_STATISTICS_GUID),
        _ => {}
    }
    let digits: String = s
        .chars()
        .filter(|c| !matches!(c, '-' | '{' | '}'))
        .collect();
    match from_hex(&digits)
        .ok()
        .and_then(|v| <[u8; 16]>::try_from(v).ok())
    {
        Some(g) => Ok(g),
        None => Err(format!(
            "{s:?} is not a GUID; expected 32 hex digits as xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx \
             or {ADAPTER_STATISTICS_NAME} / {LU_STATISTICS_NAME}"
        )),
    }
}

/// Parses hex data (whitespace allowed between digits); at most [`WMI_MAX_BUFFER`] bytes.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() / 2 > WMI_MAX_BUFFER as usize {
        return Err(format!("data longer than {WMI_MAX_BUFFER} bytes"));
    }
    from_hex(&digits).map_err(|e| format!("data is not hex: {e}"))
}

/// Lowercase hex, two digits per byte.
pub fn to_hex(data: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Decodes an even number of hex digits.
fn from_hex(digits: &str) -> Result<Vec<u8>, String> {
    if !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err("only hex digits are allowed".to_string());
    }
    if !digits.len().is_multiple_of(2) {
        return Err("odd number of hex digits".to_string());
    }
    digits
        .as_bytes()
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|t| u8::from_str_radix(t, 16).ok())
                .ok_or_else(|| format!("{:?} is not a hex byte", String::from_utf8_lossy(p)))
        })
        .collect()
}

/// The name of a port block.
fn block_name(g: &[u8; 16]) -> &'static str {
    if *g == ADAPTER_STATISTICS_GUID {
        ADAPTER_STATISTICS_NAME
    } else if *g == LU_STATISTICS_GUID {
        LU_STATISTICS_NAME
    } else {
        ""
    }
}

/// A WMI error as the control socket words it.
fn message(e: WmiError) -> String {
    match e {
        WmiError::Refused => "the provider refused the request (read-only block, unknown item \
                              or method, or bad data)"
            .to_string(),
        other => other.to_string(),
    }
}

/// The adapter's data blocks.
pub fn list(adapter: &Adapter) -> Result<Vec<WmiBlock>, String> {
    let blocks = adapter.wmi_reg_info().map_err(message)?;
    Ok(blocks
        .iter()
        .map(|b| {
            let mut flags = Vec::new();
            if b.expensive() {
                flags.push("expensive".to_string());
            }
            if b.event_only() {
                flags.push("event-only".to_string());
            }
            WmiBlock {
                guid: format_guid(&b.info.guid),
                instance_count: b.info.instance_count,
                flags,
                source: match b.source {
                    WmiSource::Port => "port",
                    WmiSource::Miniport => "miniport",
                }
                .to_string(),
                name: block_name(&b.info.guid).to_string(),
            }
        })
        .collect())
}

/// Runs `op` with a buffer of [`INITIAL_BUFFER`] bytes, then with the size asked for.
fn with_retry(mut op: impl FnMut(u32) -> Result<Vec<u8>, WmiError>) -> Result<Vec<u8>, String> {
    let mut size = INITIAL_BUFFER;
    for _ in 0..MAX_ATTEMPTS {
        match op(size) {
            Ok(data) => return Ok(data),
            Err(WmiError::BufferTooSmall { needed }) if needed > size => {
                if needed > WMI_MAX_BUFFER {
                    return Err(format!(
                        "the block needs {needed} bytes; at most {WMI_MAX_BUFFER} are allowed"
                    ));
                }
                size = needed;
            }
            Err(WmiError::BufferTooSmall { needed }) => {
                return Err(format!(
                    "the provider answered buffer too small but asks for {needed} bytes, no more than the {size} given"
                ));
            }
            Err(e) => return Err(message(e)),
        }
    }
    Err(format!(
        "the provider kept asking for a larger buffer ({MAX_ATTEMPTS} attempts)"
    ))
}

/// All instances of a block (`instance` None) or one. For the port's statistics blocks, also
/// the decoded instances.
pub fn query(
    adapter: &Adapter,
    guid: &[u8; 16],
    instance: Option<u32>,
) -> Result<(Vec<u8>, Option<Vec<StatisticsInstance>>), String> {
    let data = with_retry(|size| match instance {
        None => adapter.wmi_query_all(guid, size),
        Some(i) => adapter.wmi_query_single(guid, i, size),
    })?;
    let decoded = port::wmi::blocks::is_port_block(guid).then(|| {
        StatisticsBlock::decode_all(&data)
            .iter()
            .map(StatisticsInstance::from)
            .collect()
    });
    Ok((data, decoded))
}

/// Sets a whole instance (`item` None) or one item of it.
pub fn set(
    adapter: &Adapter,
    guid: &[u8; 16],
    instance: u32,
    item: Option<u32>,
    data: &[u8],
) -> Result<(), String> {
    match item {
        None => adapter.wmi_set_block(guid, instance, data),
        Some(id) => adapter.wmi_set_item(guid, instance, id, data),
    }
    .map_err(message)
}

/// Runs a method; returns its output.
pub fn exec(
    adapter: &Adapter,
    guid: &[u8; 16],
    instance: u32,
    method: u32,
    input: &[u8],
) -> Result<Vec<u8>, String> {
    with_retry(|size| adapter.wmi_execute_method(guid, instance, method, input, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: [u8; 16] = [
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
        0x01,
    ];

    #[test]
    fn guids_round_trip() {
        let s = format_guid(&GUID);
        assert_eq!(s, "11223344-5566-7788-99aa-bbccddeeff01");
        assert_eq!(parse_guid(&s).unwrap(), GUID);
        assert_eq!(
            parse_guid(&format!("{{{}}}", s.replace('-', ""))).unwrap(),
            GUID
        );
        assert!(parse_guid("1122").is_err());
        assert!(parse_guid(&s.replace('1', "g")).is_err());
        assert_eq!(
            parse_guid(LU_STATISTICS_NAME).unwrap(),
            port::wmi::blocks::LU_STATISTICS_GUID
        );
        assert_eq!(
            parse_guid(&format_guid(&ADAPTER_STATISTICS_GUID)).unwrap(),
            ADAPTER_STATISTICS_GUID
        );
    }

    #[test]
    fn hex_data_parses() {
        assert_eq!(parse_hex("00 ff\n10").unwrap(), vec![0, 0xff, 0x10]);
        assert!(parse_hex("0").is_err());
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("+1").is_err());
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn the_retry_uses_the_size_needed_once() {
        let mut sizes = Vec::new();
        let r = with_retry(|size| {
            sizes.push(size);
            if size < 6000 {
                Err(WmiError::BufferTooSmall { needed: 6000 })
            } else {
                Ok(vec![1; 6000])
            }
        });
        assert_eq!(r.unwrap().len(), 6000);
        assert_eq!(sizes, vec![INITIAL_BUFFER, 6000]);
        let e = with_retry(|_| Err(WmiError::BufferTooSmall { needed: 2 << 20 })).unwrap_err();
        assert!(e.contains("at most"), "{e}");
        let e = with_retry(|_| Err(WmiError::BufferTooSmall { needed: 10 })).unwrap_err();
        assert!(e.contains("no more than"), "{e}");
        let e = with_retry(|_| Err(WmiError::UnknownGuid)).unwrap_err();
        assert!(e.contains("no WMI data block"), "{e}");
    }
}
