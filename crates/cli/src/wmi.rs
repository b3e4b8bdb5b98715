//! WMI through the control socket (`scsiport wmi list|query`): SRB_FUNCTION_WMI requests
//! submitted to an adapter's miniport, with the buffer-too-small protocol of the seed (the
//! provider answers DATA_OVERRUN with the size it needs; the request is sent again with a buffer
//! of that size, up to [`MAX_WMI_BUFFER`]).
//!
//! Threads: [`exchange`] blocks until the port completes each request; the control socket runs
//! it on tokio's blocking pool.
//!
//! GUIDs are written as 32 hex digits in the 8-4-4-4-12 layout, the 16 bytes in the order the
//! port carries them (no Windows mixed-endian swapping).

use port::wmi::{
    REGINFO_ENTRY_SIZE, WMIREG_FLAG_EVENT_ONLY_GUID, WMIREG_FLAG_EXPENSIVE, sub_function,
};
use port::{Address, DataDirection, Srb, SrbFunction, SrbStatus, WmiRequest};
use serde::{Deserialize, Serialize};

/// Largest buffer a WMI request is given, whatever size the provider asks for.
pub const MAX_WMI_BUFFER: u32 = 1 << 20;
/// The first buffer of a request.
const INITIAL_BUFFER: u32 = 4096;
/// Requests sent for one operation (the first and the retries with a larger buffer).
const MAX_ATTEMPTS: usize = 3;

/// One data block a provider registered (`SCSIWMIGUIDREGINFO`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WmiBlock {
    /// The block's GUID.
    pub guid: String,
    /// Number of instances.
    pub instance_count: u32,
    /// `expensive`, `event-only`.
    pub flags: Vec<String>,
}

/// What to ask the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WmiOp {
    /// IRP_MN_REGINFO: the blocks the provider offers.
    RegInfo,
    /// IRP_MN_QUERY_ALL_DATA of a block.
    QueryAll([u8; 16]),
    /// IRP_MN_QUERY_SINGLE_INSTANCE of a block.
    QuerySingle([u8; 16], u32),
}

/// Formats a GUID's 16 bytes as 8-4-4-4-12 hex.
pub fn format_guid(g: &[u8; 16]) -> String {
    let h: String = g.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Parses 32 hex digits, with or without the dashes of [`format_guid`] and braces.
pub fn parse_guid(s: &str) -> Result<[u8; 16], String> {
    let hex: Vec<u8> = s
        .bytes()
        .filter(|c| !matches!(c, b'-' | b'{' | b'}'))
        .collect();
    if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(format!(
            "{s:?} is not a GUID; expected 32 hex digits as xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
        ));
    }
    let mut g = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
        g[i] = u8::from_str_radix(text, 16).map_err(|e| e.to_string())?;
    }
    Ok(g)
}

/// Decodes a REGINFO answer.
pub fn decode_reginfo(data: &[u8]) -> Vec<WmiBlock> {
    data.chunks_exact(REGINFO_ENTRY_SIZE)
        .map(|e| {
            let guid: [u8; 16] = e[..16].try_into().expect("entry size");
            let instance_count = u32::from_le_bytes(e[16..20].try_into().expect("entry size"));
            let raw = u32::from_le_bytes(e[20..24].try_into().expect("entry size"));
            let mut flags = Vec::new();
            if raw & WMIREG_FLAG_EXPENSIVE != 0 {
                flags.push("expensive".to_string());
            }
            if raw & WMIREG_FLAG_EVENT_ONLY_GUID != 0 {
                flags.push("event-only".to_string());
            }
            WmiBlock {
                guid: format_guid(&guid),
                instance_count,
                flags,
            }
        })
        .collect()
}

/// Runs `op` against the miniport at `address` through `exec` (submit and wait), retrying with
/// the size the provider asks for when it answers DATA_OVERRUN. Returns the bytes returned.
pub fn exchange(
    mut exec: impl FnMut(Srb) -> Result<Srb, String>,
    address: Address,
    op: WmiOp,
) -> Result<Vec<u8>, String> {
    let (sub, guid, instance) = match op {
        WmiOp::RegInfo => (sub_function::REGINFO, [0; 16], 0),
        WmiOp::QueryAll(g) => (sub_function::QUERY_ALL_DATA, g, 0),
        WmiOp::QuerySingle(g, i) => (sub_function::QUERY_SINGLE_INSTANCE, g, i),
    };
    let mut size = INITIAL_BUFFER;
    for _ in 0..MAX_ATTEMPTS {
        let mut srb = Srb::function(SrbFunction::Wmi, address).with_data(
            vec![0; size as usize],
            size,
            DataDirection::In,
        );
        srb.wmi = WmiRequest {
            sub_function: sub,
            adapter_request: true,
            guid,
            instance_index: instance,
            item_id: 0,
            in_size: 0,
        };
        let mut done = exec(srb)?;
        match done.srb_status.status() {
            SrbStatus::SUCCESS => {
                let n = (done.data_transfer_length as usize).min(done.data.len());
                done.data.truncate(n);
                return Ok(done.data);
            }
            SrbStatus::DATA_OVERRUN => {
                let needed = done.data_transfer_length;
                if needed <= size {
                    return Err(format!(
                        "the provider answered buffer too small but asks for {needed} bytes, no more than the {size} given"
                    ));
                }
                if needed > MAX_WMI_BUFFER {
                    return Err(format!(
                        "the provider asks for {needed} bytes; at most {MAX_WMI_BUFFER} are allowed"
                    ));
                }
                size = needed;
            }
            SrbStatus::INVALID_REQUEST => {
                return Err("the adapter's miniport is not a WMI data provider".to_string());
            }
            SrbStatus::ERROR => {
                return Err(
                    "the provider refused the request (unknown GUID, instance or operation)"
                        .to_string(),
                );
            }
            other => return Err(format!("the WMI request failed with SRB status {other:?}")),
        }
    }
    Err(format!(
        "the provider kept asking for a larger buffer ({MAX_ATTEMPTS} attempts)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use port::wmi::{WmiGuidRegInfo, WmiProvider, WmiResult, dispatch};

    const GUID: [u8; 16] = [
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
        0x01,
    ];

    /// A provider with one block of `len` bytes per instance (2 instances), byte i = i.
    struct Provider {
        reg: [WmiGuidRegInfo; 1],
        len: usize,
    }

    impl WmiProvider for Provider {
        fn query_reg_info(&mut self) -> &[WmiGuidRegInfo] {
            &self.reg
        }
        fn query_data_block(
            &mut self,
            _guid_index: usize,
            instance_index: u32,
            instance_count: u32,
            buffer: &mut [u8],
        ) -> WmiResult {
            let needed = self.len * instance_count as usize;
            if buffer.len() < needed {
                return WmiResult::too_small(needed as u32);
            }
            for (i, b) in buffer[..needed].iter_mut().enumerate() {
                *b = (i as u8).wrapping_add(instance_index as u8);
            }
            WmiResult::ok(needed as u32)
        }
    }

    fn provider(len: usize) -> Provider {
        Provider {
            reg: [WmiGuidRegInfo {
                guid: GUID,
                instance_count: 2,
                flags: WMIREG_FLAG_EXPENSIVE,
            }],
            len,
        }
    }

    /// Dispatches each SRB to `p` as a miniport's start_io would; counts the requests.
    fn run(p: &mut Provider, op: WmiOp, sent: &mut usize) -> Result<Vec<u8>, String> {
        exchange(
            |mut srb| {
                *sent += 1;
                dispatch(p, &mut srb);
                Ok(srb)
            },
            Address::new(0, 0, 0),
            op,
        )
    }

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
    }

    #[test]
    fn reginfo_lists_the_blocks() {
        let mut sent = 0;
        let data = run(&mut provider(8), WmiOp::RegInfo, &mut sent).unwrap();
        assert_eq!(sent, 1);
        let blocks = decode_reginfo(&data);
        assert_eq!(
            blocks,
            vec![WmiBlock {
                guid: format_guid(&GUID),
                instance_count: 2,
                flags: vec!["expensive".into()],
            }]
        );
    }

    #[test]
    fn a_small_block_takes_one_request() {
        let mut sent = 0;
        let data = run(&mut provider(8), WmiOp::QuerySingle(GUID, 1), &mut sent).unwrap();
        assert_eq!(sent, 1);
        assert_eq!(data, (1..9).collect::<Vec<u8>>());
    }

    #[test]
    fn buffer_too_small_is_retried_with_the_size_needed() {
        let mut sent = 0;
        let data = run(&mut provider(6000), WmiOp::QueryAll(GUID), &mut sent).unwrap();
        assert_eq!(sent, 2);
        assert_eq!(data.len(), 12_000);
    }

    #[test]
    fn oversized_answers_and_unknown_guids_are_errors() {
        let mut sent = 0;
        let e = run(&mut provider(2 << 20), WmiOp::QueryAll(GUID), &mut sent).unwrap_err();
        assert!(e.contains("at most"), "{e}");
        assert_eq!(sent, 1);
        let e = run(&mut provider(8), WmiOp::QueryAll([0; 16]), &mut sent).unwrap_err();
        assert!(e.contains("refused"), "{e}");
        let e = run(&mut provider(8), WmiOp::QuerySingle(GUID, 2), &mut sent).unwrap_err();
        assert!(e.contains("refused"), "{e}");
    }
}
