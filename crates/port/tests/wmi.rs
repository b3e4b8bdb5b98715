//! The port's WMI path end to end: a WMI-provider miniport (below) behind a real adapter, driven
//! through `Adapter::wmi_*`. Each operation, the error answers, the buffer-too-small protocol,
//! consumer counting of enable/disable, event delivery per GUID, and the port's own statistics
//! blocks against I/O the test issued (with the scripted miniport).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{EventLog, Harness, LU0, LU1};
use parking_lot::Mutex;
use port::testing::{Behaviour, ScriptConfig, scripted_srb, test_options};
use port::wmi::blocks::{
    ADAPTER_STATISTICS_GUID, LU_STATISTICS_GUID, STATISTICS_BLOCK_SIZE, StatisticsBlock,
};
use port::wmi::{
    WMIREG_FLAG_EVENT_ONLY_GUID, WMIREG_FLAG_EXPENSIVE, WmiControl, WmiError, WmiEventSink,
    WmiGuidRegInfo, WmiProvider, WmiResult, WmiSource, dispatch,
};
use port::{
    Adapter, Address, DataDirection, ErrorKind, FindAdapterContext, FindAdapterResult,
    HwInitializationData, Miniport, PortConfiguration, PortContext, PortEvent, PortOptions, Srb,
    SrbFlags, SrbFunction, SrbRef, SrbStatus, WmiEvent,
};

/// Two instances of 16 bytes: value (u64 LE), instance * 1000 (u64 LE). Settable (block and
/// item 1); method 1 reverses its input; method 2 adds its input (u64) to the value and returns
/// the new and the old value (16 bytes).
const G_DATA: [u8; 16] = *b"test-wmi-data-01";
/// Expensive, one instance of [`BIG_LEN`] bytes (byte i = i mod 251).
const G_BIG: [u8; 16] = *b"test-wmi-big--02";
/// Event only.
const G_EVENT: [u8; 16] = *b"test-wmi-event03";
/// Read-only (no set routine), one instance of 4 bytes.
const G_RO: [u8; 16] = *b"test-wmi-ro---04";
const BIG_LEN: usize = 5000;

/// What the test reads and steers of the provider.
#[derive(Default)]
struct Hw {
    /// (guid index, control, enable) for every function_control call, in order.
    controls: Mutex<Vec<(usize, WmiControl, bool)>>,
    /// Refuse ENABLE requests.
    refuse_enable: AtomicBool,
    /// Times method 2 acted.
    method2_runs: AtomicU64,
    /// Extra read-only blocks to register (set before initialize).
    extra_blocks: AtomicU64,
}

impl Hw {
    fn controls_of(&self, guid_index: usize, control: WmiControl) -> Vec<bool> {
        self.controls
            .lock()
            .iter()
            .filter(|(g, c, _)| *g == guid_index && *c == control)
            .map(|(_, _, e)| *e)
            .collect()
    }
}

struct Provider {
    hw: Arc<Hw>,
    reg: Vec<WmiGuidRegInfo>,
    values: [u64; 2],
}

impl WmiProvider for Provider {
    fn query_reg_info(&mut self) -> &[WmiGuidRegInfo] {
        &self.reg
    }

    fn query_data_block(
        &mut self,
        guid_index: usize,
        instance_index: u32,
        instance_count: u32,
        buffer: &mut [u8],
    ) -> WmiResult {
        match guid_index {
            0 => {
                let needed = 16 * instance_count as usize;
                if buffer.len() < needed {
                    return WmiResult::too_small(needed as u32);
                }
                for k in 0..instance_count as usize {
                    let i = instance_index as usize + k;
                    buffer[16 * k..16 * k + 8].copy_from_slice(&self.values[i].to_le_bytes());
                    buffer[16 * k + 8..16 * k + 16]
                        .copy_from_slice(&(i as u64 * 1000).to_le_bytes());
                }
                WmiResult::ok(needed as u32)
            }
            1 => {
                if buffer.len() < BIG_LEN {
                    return WmiResult::too_small(BIG_LEN as u32);
                }
                for (i, b) in buffer[..BIG_LEN].iter_mut().enumerate() {
                    *b = (i % 251) as u8;
                }
                WmiResult::ok(BIG_LEN as u32)
            }
            3 => {
                if buffer.len() < 4 {
                    return WmiResult::too_small(4);
                }
                buffer[..4].copy_from_slice(b"ro!!");
                WmiResult::ok(4)
            }
            _ if guid_index < self.reg.len() => {
                if buffer.is_empty() {
                    return WmiResult::too_small(1);
                }
                buffer[0] = guid_index as u8;
                WmiResult::ok(1)
            }
            _ => WmiResult::status_only(SrbStatus::ERROR),
        }
    }

    fn set_data_block(&mut self, guid_index: usize, instance_index: u32, data: &[u8]) -> SrbStatus {
        if guid_index != 0 || data.len() != 16 {
            return SrbStatus::ERROR;
        }
        self.values[instance_index as usize] =
            u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        SrbStatus::SUCCESS
    }

    fn set_data_item(
        &mut self,
        guid_index: usize,
        instance_index: u32,
        item_id: u32,
        data: &[u8],
    ) -> SrbStatus {
        if guid_index != 0 || item_id != 1 || data.len() != 8 {
            return SrbStatus::ERROR;
        }
        self.values[instance_index as usize] = u64::from_le_bytes(data.try_into().expect("8"));
        SrbStatus::SUCCESS
    }

    fn execute_method(
        &mut self,
        guid_index: usize,
        instance_index: u32,
        method_id: u32,
        in_size: u32,
        buffer: &mut [u8],
    ) -> WmiResult {
        if guid_index != 0 {
            return WmiResult::status_only(SrbStatus::ERROR);
        }
        let n = in_size as usize;
        match method_id {
            1 => {
                if buffer.len() < n {
                    return WmiResult::too_small(n as u32);
                }
                buffer[..n].reverse();
                WmiResult::ok(n as u32)
            }
            2 => {
                if n != 8 {
                    return WmiResult::status_only(SrbStatus::ERROR);
                }
                // Check the output room before acting: the port may resend.
                if buffer.len() < 16 {
                    return WmiResult::too_small(16);
                }
                let add = u64::from_le_bytes(buffer[..8].try_into().expect("8"));
                let v = &mut self.values[instance_index as usize];
                let old = *v;
                *v = v.wrapping_add(add);
                self.hw.method2_runs.fetch_add(1, Ordering::Relaxed);
                buffer[..8].copy_from_slice(&v.to_le_bytes());
                buffer[8..16].copy_from_slice(&old.to_le_bytes());
                WmiResult::ok(16)
            }
            _ => WmiResult::status_only(SrbStatus::ERROR),
        }
    }

    fn function_control(
        &mut self,
        guid_index: usize,
        control: WmiControl,
        enable: bool,
    ) -> SrbStatus {
        if enable && self.hw.refuse_enable.load(Ordering::Relaxed) {
            return SrbStatus::ERROR;
        }
        self.hw.controls.lock().push((guid_index, control, enable));
        SrbStatus::SUCCESS
    }
}

/// A miniport with no devices whose only job is WMI.
struct WmiHba {
    provider: Provider,
}

impl Miniport for WmiHba {
    type HwContext = Arc<Hw>;
    type LuExtension = ();
    type SrbExtension = ();

    fn driver_entry() -> HwInitializationData {
        HwInitializationData::default()
    }

    fn find_adapter(
        hw: &mut Arc<Hw>,
        _ctx: &mut FindAdapterContext,
        config: &mut PortConfiguration,
    ) -> FindAdapterResult<Self> {
        config.wmi_data_provider = true;
        let extra = (0..hw.extra_blocks.load(Ordering::Relaxed)).map(|i| WmiGuidRegInfo {
            guid: *format!("test-extra-{i:05}")
                .as_bytes()
                .first_chunk()
                .expect("16"),
            instance_count: 1,
            flags: 0,
        });
        FindAdapterResult::Found(WmiHba {
            provider: Provider {
                hw: hw.clone(),
                reg: vec![
                    WmiGuidRegInfo {
                        guid: G_DATA,
                        instance_count: 2,
                        flags: 0,
                    },
                    WmiGuidRegInfo {
                        guid: G_BIG,
                        instance_count: 1,
                        flags: WMIREG_FLAG_EXPENSIVE,
                    },
                    WmiGuidRegInfo {
                        guid: G_EVENT,
                        instance_count: 1,
                        flags: WMIREG_FLAG_EVENT_ONLY_GUID,
                    },
                    WmiGuidRegInfo {
                        guid: G_RO,
                        instance_count: 1,
                        flags: 0,
                    },
                ]
                .into_iter()
                .chain(extra)
                .collect(),
                values: [7, 8],
            },
        })
    }

    fn initialize(&mut self, _port: &mut PortContext<'_, Self>) -> bool {
        true
    }

    fn start_io(&mut self, port: &mut PortContext<'_, Self>, r: SrbRef) -> bool {
        if let Some(srb) = port.srb_mut(&r) {
            if srb.function == SrbFunction::Wmi {
                dispatch(&mut self.provider, srb);
            } else {
                srb.srb_status = SrbStatus::SELECTION_TIMEOUT;
            }
        }
        port.request_complete(r);
        port.next_request();
        true
    }

    fn reset_bus(&mut self, port: &mut PortContext<'_, Self>, _path_id: u8) -> bool {
        port.next_request();
        true
    }
}

fn wmi_adapter() -> (Arc<Hw>, Adapter) {
    let hw = Arc::new(Hw::default());
    let options = PortOptions {
        scan: false,
        ..test_options()
    };
    let mut adapters = port::initialize::<WmiHba>(hw.clone(), options).expect("adapter");
    (hw, adapters.remove(0))
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

#[test]
fn reginfo_merges_the_port_blocks_with_the_miniports() {
    let (_hw, a) = wmi_adapter();
    let reg = a.wmi_reg_info().expect("reginfo");
    let list: Vec<([u8; 16], u32, u32, WmiSource)> = reg
        .iter()
        .map(|b| (b.info.guid, b.info.instance_count, b.info.flags, b.source))
        .collect();
    assert_eq!(
        list,
        vec![
            (ADAPTER_STATISTICS_GUID, 1, 0, WmiSource::Port),
            (LU_STATISTICS_GUID, 0, 0, WmiSource::Port),
            (G_DATA, 2, 0, WmiSource::Miniport),
            (G_BIG, 1, WMIREG_FLAG_EXPENSIVE, WmiSource::Miniport),
            (G_EVENT, 1, WMIREG_FLAG_EVENT_ONLY_GUID, WmiSource::Miniport),
            (G_RO, 1, 0, WmiSource::Miniport),
        ]
    );
    assert!(reg[3].expensive() && !reg[3].event_only());
    assert!(reg[4].event_only());
    a.shutdown().unwrap();
}

#[test]
fn a_long_reginfo_is_fetched_with_the_size_the_provider_asks_for() {
    let hw = Arc::new(Hw::default());
    hw.extra_blocks.store(40, Ordering::Relaxed);
    let options = PortOptions {
        scan: false,
        ..test_options()
    };
    let a = port::initialize::<WmiHba>(hw, options)
        .expect("adapter")
        .remove(0);
    // 44 miniport blocks need 1056 bytes, more than the port's first REGINFO buffer (768).
    let reg = a.wmi_reg_info().expect("reginfo");
    assert_eq!(reg.len(), 2 + 4 + 40);
    let last = reg.last().unwrap().info.guid;
    assert_eq!(&last, b"test-extra-00039");
    assert_eq!(a.wmi_query_single(&last, 0, 1).unwrap(), vec![43]);
    a.shutdown().unwrap();
}

#[test]
fn query_all_and_single_instance() {
    let (_hw, a) = wmi_adapter();
    let all = a.wmi_query_all(&G_DATA, 64).expect("query all");
    assert_eq!(all.len(), 32);
    assert_eq!((le64(&all[..8]), le64(&all[8..16])), (7, 0));
    assert_eq!((le64(&all[16..24]), le64(&all[24..32])), (8, 1000));
    let one = a.wmi_query_single(&G_DATA, 1, 64).expect("query single");
    assert_eq!(one, all[16..32]);
    assert_eq!(a.wmi_query_single(&G_RO, 0, 4).unwrap(), b"ro!!");
    a.shutdown().unwrap();
}

#[test]
fn set_block_and_set_item_change_what_queries_return() {
    let (_hw, a) = wmi_adapter();
    let mut block = [0u8; 16];
    block[..8].copy_from_slice(&42u64.to_le_bytes());
    a.wmi_set_block(&G_DATA, 0, &block).expect("set block");
    a.wmi_set_item(&G_DATA, 1, 1, &99u64.to_le_bytes())
        .expect("set item");
    let all = a.wmi_query_all(&G_DATA, 32).unwrap();
    assert_eq!((le64(&all[..8]), le64(&all[16..24])), (42, 99));
    // The provider's own refusals: bad length, unknown item, a block without a set routine.
    assert_eq!(
        a.wmi_set_block(&G_DATA, 0, &[1, 2, 3]),
        Err(WmiError::Refused)
    );
    assert_eq!(
        a.wmi_set_item(&G_DATA, 0, 7, &[0; 8]),
        Err(WmiError::Refused)
    );
    assert_eq!(a.wmi_set_block(&G_RO, 0, b"abcd"), Err(WmiError::Refused));
    // The port's blocks are read-only.
    assert_eq!(
        a.wmi_set_block(&ADAPTER_STATISTICS_GUID, 0, &[0; STATISTICS_BLOCK_SIZE]),
        Err(WmiError::ReadOnly)
    );
    assert_eq!(
        a.wmi_set_item(&ADAPTER_STATISTICS_GUID, 0, 1, &[0; 8]),
        Err(WmiError::ReadOnly)
    );
    a.shutdown().unwrap();
}

#[test]
fn execute_method_returns_the_output() {
    let (hw, a) = wmi_adapter();
    assert_eq!(
        a.wmi_execute_method(&G_DATA, 0, 1, b"abcdef", 6).unwrap(),
        b"fedcba"
    );
    let out = a
        .wmi_execute_method(&G_DATA, 1, 2, &5u64.to_le_bytes(), 16)
        .unwrap();
    assert_eq!((le64(&out), le64(&out[8..])), (13, 8));
    assert_eq!(hw.method2_runs.load(Ordering::Relaxed), 1);
    assert_eq!(
        a.wmi_execute_method(&G_DATA, 0, 9, b"", 8),
        Err(WmiError::Refused)
    );
    assert_eq!(
        a.wmi_execute_method(&ADAPTER_STATISTICS_GUID, 0, 1, b"", 8),
        Err(WmiError::NoMethods)
    );
    a.shutdown().unwrap();
}

#[test]
fn unknown_guids_bad_instances_and_event_only_queries_are_errors() {
    let (_hw, a) = wmi_adapter();
    let unknown = *b"no-such-block!!!";
    assert_eq!(a.wmi_query_all(&unknown, 64), Err(WmiError::UnknownGuid));
    assert_eq!(
        a.wmi_query_single(&unknown, 0, 64),
        Err(WmiError::UnknownGuid)
    );
    assert_eq!(
        a.wmi_set_block(&unknown, 0, &[0; 16]),
        Err(WmiError::UnknownGuid)
    );
    assert_eq!(
        a.wmi_execute_method(&unknown, 0, 1, b"", 8),
        Err(WmiError::UnknownGuid)
    );
    assert_eq!(
        a.wmi_enable(&unknown, WmiControl::Event).err(),
        Some(WmiError::UnknownGuid)
    );
    let bad = WmiError::InvalidInstance {
        instance: 2,
        instance_count: 2,
    };
    assert_eq!(a.wmi_query_single(&G_DATA, 2, 64), Err(bad));
    assert_eq!(a.wmi_set_block(&G_DATA, 2, &[0; 16]), Err(bad));
    assert_eq!(a.wmi_set_item(&G_DATA, 2, 1, &[0; 8]), Err(bad));
    assert_eq!(a.wmi_execute_method(&G_DATA, 2, 1, b"x", 8), Err(bad));
    // No LU was scanned: the LU statistics block has no instance.
    assert_eq!(
        a.wmi_query_single(&LU_STATISTICS_GUID, 0, 4096),
        Err(WmiError::InvalidInstance {
            instance: 0,
            instance_count: 0
        })
    );
    assert_eq!(a.wmi_query_all(&G_EVENT, 64), Err(WmiError::EventOnly));
    assert_eq!(
        a.wmi_query_single(&G_EVENT, 0, 64),
        Err(WmiError::EventOnly)
    );
    // Oversized buffers are refused before anything is allocated.
    assert!(matches!(
        a.wmi_query_all(&G_DATA, u32::MAX),
        Err(WmiError::TooLarge { .. })
    ));
    a.shutdown().unwrap();
}

#[test]
fn buffer_too_small_answers_the_size_needed_and_the_retry_succeeds() {
    let (hw, a) = wmi_adapter();
    // Query all: 2 instances of 16 bytes.
    assert_eq!(
        a.wmi_query_all(&G_DATA, 31),
        Err(WmiError::BufferTooSmall { needed: 32 })
    );
    assert_eq!(a.wmi_query_all(&G_DATA, 32).unwrap().len(), 32);
    // Query single.
    assert_eq!(
        a.wmi_query_single(&G_DATA, 0, 0),
        Err(WmiError::BufferTooSmall { needed: 16 })
    );
    assert_eq!(a.wmi_query_single(&G_DATA, 0, 16).unwrap().len(), 16);
    // A block larger than a page.
    let Err(WmiError::BufferTooSmall { needed }) = a.wmi_query_all(&G_BIG, 4096) else {
        panic!("expected buffer too small");
    };
    assert_eq!(needed as usize, BIG_LEN);
    let big = a.wmi_query_all(&G_BIG, needed).unwrap();
    assert_eq!(big.len(), BIG_LEN);
    assert!(big.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    // A method with a side effect: the short call does not act, the retry acts once. (The
    // provider sees max(input, output) bytes: 8 here.)
    assert_eq!(
        a.wmi_execute_method(&G_DATA, 0, 2, &1u64.to_le_bytes(), 4),
        Err(WmiError::BufferTooSmall { needed: 16 })
    );
    assert_eq!(hw.method2_runs.load(Ordering::Relaxed), 0);
    let out = a
        .wmi_execute_method(&G_DATA, 0, 2, &1u64.to_le_bytes(), 16)
        .unwrap();
    assert_eq!((le64(&out), le64(&out[8..])), (8, 7));
    assert_eq!(hw.method2_runs.load(Ordering::Relaxed), 1);
    // The port's own blocks follow the same protocol.
    assert_eq!(
        a.wmi_query_all(&ADAPTER_STATISTICS_GUID, 100),
        Err(WmiError::BufferTooSmall {
            needed: STATISTICS_BLOCK_SIZE as u32
        })
    );
    assert_eq!(
        a.wmi_query_single(&ADAPTER_STATISTICS_GUID, 0, STATISTICS_BLOCK_SIZE as u32)
            .unwrap()
            .len(),
        STATISTICS_BLOCK_SIZE
    );
    a.shutdown().unwrap();
}

#[test]
fn one_enable_for_the_first_consumer_and_one_disable_for_the_last() {
    let (hw, a) = wmi_adapter();
    let ev = |hw: &Hw| hw.controls_of(0, WmiControl::Event);
    let c1 = a.wmi_enable(&G_DATA, WmiControl::Event).unwrap();
    let c2 = a.wmi_enable(&G_DATA, WmiControl::Event).unwrap();
    let c3 = a.wmi_enable(&G_DATA, WmiControl::Event).unwrap();
    assert_eq!(ev(&hw), vec![true], "three consumers, one ENABLE_EVENTS");
    assert_eq!(a.wmi_consumers(&G_DATA, WmiControl::Event), 3);
    drop(c1);
    c2.close().unwrap();
    assert_eq!(ev(&hw), vec![true], "consumers left: no DISABLE yet");
    assert_eq!(a.wmi_consumers(&G_DATA, WmiControl::Event), 1);
    drop(c3);
    assert_eq!(
        ev(&hw),
        vec![true, false],
        "the last one: exactly one DISABLE"
    );
    assert_eq!(a.wmi_consumers(&G_DATA, WmiControl::Event), 0);
    // Re-enable: a new first consumer.
    let c4 = a.wmi_enable(&G_DATA, WmiControl::Event).unwrap();
    assert_eq!(ev(&hw), vec![true, false, true]);
    c4.close().unwrap();
    assert_eq!(ev(&hw), vec![true, false, true, false]);
    a.shutdown().unwrap();
}

#[test]
fn events_and_collection_are_counted_separately() {
    let (hw, a) = wmi_adapter();
    // G_BIG (index 1) is expensive: collection is controlled.
    let col1 = a.wmi_enable(&G_BIG, WmiControl::DataBlock).unwrap();
    let col2 = a.wmi_enable(&G_BIG, WmiControl::DataBlock).unwrap();
    let evt = a.wmi_enable(&G_BIG, WmiControl::Event).unwrap();
    assert_eq!(hw.controls_of(1, WmiControl::DataBlock), vec![true]);
    assert_eq!(hw.controls_of(1, WmiControl::Event), vec![true]);
    drop(evt);
    assert_eq!(hw.controls_of(1, WmiControl::Event), vec![true, false]);
    assert_eq!(
        hw.controls_of(1, WmiControl::DataBlock),
        vec![true],
        "collection still has two consumers"
    );
    drop(col1);
    drop(col2);
    assert_eq!(hw.controls_of(1, WmiControl::DataBlock), vec![true, false]);
    // G_DATA is not expensive: collection consumers are counted but never reach the provider.
    let cheap = a.wmi_enable(&G_DATA, WmiControl::DataBlock).unwrap();
    assert_eq!(a.wmi_consumers(&G_DATA, WmiControl::DataBlock), 1);
    drop(cheap);
    assert_eq!(hw.controls_of(0, WmiControl::DataBlock), Vec::<bool>::new());
    // Nor do consumers of the port's blocks.
    let port_block = a
        .wmi_enable(&ADAPTER_STATISTICS_GUID, WmiControl::Event)
        .unwrap();
    drop(port_block);
    assert_eq!(hw.controls.lock().len(), 4);
    a.shutdown().unwrap();
}

#[test]
fn a_refused_enable_leaves_no_consumer() {
    let (hw, a) = wmi_adapter();
    hw.refuse_enable.store(true, Ordering::Relaxed);
    assert_eq!(
        a.wmi_enable(&G_DATA, WmiControl::Event).err(),
        Some(WmiError::Refused)
    );
    assert_eq!(a.wmi_consumers(&G_DATA, WmiControl::Event), 0);
    hw.refuse_enable.store(false, Ordering::Relaxed);
    let c = a.wmi_enable(&G_DATA, WmiControl::Event).unwrap();
    drop(c);
    assert_eq!(hw.controls_of(0, WmiControl::Event), vec![true, false]);
    a.shutdown().unwrap();
}

#[test]
fn a_consumer_outliving_the_adapter_closes_without_a_provider_call() {
    let (hw, a) = wmi_adapter();
    let c = a.wmi_enable(&G_DATA, WmiControl::Event).unwrap();
    a.shutdown().unwrap();
    // The DISABLE completes with NO_HBA at once: counted down, nothing reaches the provider.
    assert_eq!(c.close(), Err(WmiError::Failed(SrbStatus::NO_HBA)));
    assert_eq!(a.wmi_consumers(&G_DATA, WmiControl::Event), 0);
    assert_eq!(hw.controls_of(0, WmiControl::Event), vec![true]);
    assert_eq!(
        a.wmi_reg_info().map(|r| r.len()),
        Err(WmiError::Failed(SrbStatus::NO_HBA))
    );
}

#[test]
fn concurrent_consumers_keep_enable_and_disable_alternating() {
    let (hw, a) = wmi_adapter();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..40 {
                    let c = a.wmi_enable(&G_DATA, WmiControl::Event).unwrap();
                    std::thread::yield_now();
                    drop(c);
                }
            });
        }
    });
    let seq = hw.controls_of(0, WmiControl::Event);
    assert!(!seq.is_empty());
    for (i, e) in seq.iter().enumerate() {
        assert_eq!(*e, i % 2 == 0, "ENABLE and DISABLE alternate: {seq:?}");
    }
    assert_eq!(seq.len() % 2, 0, "ends disabled: {seq:?}");
    assert_eq!(a.wmi_consumers(&G_DATA, WmiControl::Event), 0);
    a.shutdown().unwrap();
}

#[derive(Default)]
struct EventRecorder(Mutex<Vec<(Vec<u8>, [u8; 16])>>);

impl WmiEventSink for EventRecorder {
    fn wmi_event(&self, event: &WmiEvent) {
        self.0.lock().push((event.data().to_vec(), event.guid));
    }
}

impl EventRecorder {
    fn payloads(&self) -> Vec<Vec<u8>> {
        self.0.lock().iter().map(|(d, _)| d.clone()).collect()
    }
}

fn fire(a: &Adapter, guid: [u8; 16], data: &[u8]) {
    let e = WmiEvent::new(guid, None, data).expect("small event");
    a.synchronize::<WmiHba, _>(|_, port| port.wmi_event(e))
        .expect("WmiHba adapter");
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn events_reach_the_subscribers_of_their_guid_only() {
    let (hw, a) = wmi_adapter();
    let all = Arc::new(EventLog::default());
    a.subscribe(all.clone());
    let ev = Arc::new(EventRecorder::default());
    let data = Arc::new(EventRecorder::default());
    let c_ev = a.wmi_subscribe(&G_EVENT, ev.clone()).unwrap();
    let c_data = a.wmi_subscribe(&G_DATA, data.clone()).unwrap();
    assert_eq!(hw.controls_of(2, WmiControl::Event), vec![true]);
    assert_eq!(hw.controls_of(0, WmiControl::Event), vec![true]);

    fire(&a, G_EVENT, b"one");
    fire(&a, G_DATA, b"two");
    fire(&a, G_EVENT, b"three");
    wait_until("three events", || {
        all.events()
            .iter()
            .filter(|e| matches!(e, PortEvent::Wmi(_)))
            .count()
            == 3
    });
    wait_until("the subscribers' events", || {
        ev.payloads().len() == 2 && data.payloads().len() == 1
    });
    assert_eq!(ev.payloads(), vec![b"one".to_vec(), b"three".to_vec()]);
    assert!(ev.0.lock().iter().all(|(_, g)| *g == G_EVENT));
    assert_eq!(data.payloads(), vec![b"two".to_vec()]);

    // After its consumer closes, a subscriber gets nothing more.
    c_ev.close().unwrap();
    assert_eq!(hw.controls_of(2, WmiControl::Event), vec![true, false]);
    fire(&a, G_EVENT, b"four");
    fire(&a, G_DATA, b"five");
    wait_until("five events", || {
        all.events()
            .iter()
            .filter(|e| matches!(e, PortEvent::Wmi(_)))
            .count()
            == 5
    });
    wait_until("the data subscriber's second event", || {
        data.payloads().len() == 2
    });
    assert_eq!(ev.payloads().len(), 2);
    drop(c_data);
    a.shutdown().unwrap();
}

/// Drops its consumer when the first event arrives (inside the deferred stage).
#[derive(Default)]
struct DropOnEvent {
    consumer: Mutex<Option<port::wmi::WmiConsumer>>,
    seen: AtomicU64,
}

impl WmiEventSink for DropOnEvent {
    fn wmi_event(&self, _event: &WmiEvent) {
        self.seen.fetch_add(1, Ordering::Relaxed);
        drop(self.consumer.lock().take());
    }
}

#[test]
fn a_consumer_dropped_inside_an_event_sink_still_disables() {
    let (hw, a) = wmi_adapter();
    let sink = Arc::new(DropOnEvent::default());
    let c = a.wmi_subscribe(&G_EVENT, sink.clone()).unwrap();
    *sink.consumer.lock() = Some(c);
    // Blocking WMI calls from a sink are refused rather than deadlocking.
    fire(&a, G_EVENT, b"x");
    wait_until("the DISABLE from the sink", || {
        hw.controls_of(2, WmiControl::Event) == vec![true, false]
    });
    assert_eq!(sink.seen.load(Ordering::Relaxed), 1);
    assert_eq!(a.wmi_consumers(&G_EVENT, WmiControl::Event), 0);
    fire(&a, G_EVENT, b"y");
    // A later operation runs after the event was delivered (same deferred stage order).
    a.wmi_query_all(&G_DATA, 32).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(sink.seen.load(Ordering::Relaxed), 1, "unsubscribed");
    a.shutdown().unwrap();
}

// ---- The port's statistics blocks against real I/O (scripted miniport, two LUs). ----

fn two_lus() -> Harness {
    Harness::new(ScriptConfig {
        luns: vec![LU0, LU1],
        default_behaviour: Behaviour::Inline,
        ..ScriptConfig::default()
    })
}

fn rw(address: Address, write: bool, blocks: u8, id: u64) -> Srb {
    let op = if write { 0x2A } else { 0x28 };
    let len = u32::from(blocks) * 512;
    let mut s = Srb::execute_scsi(address, &[op, 0, 0, 0, 0, 0, 0, 0, blocks, 0])
        .unwrap()
        .with_data(
            vec![0; len as usize],
            len,
            if write {
                DataDirection::Out
            } else {
                DataDirection::In
            },
        );
    s.original_request = id;
    s
}

fn no_freeze(mut s: Srb) -> Srb {
    s.flags.insert(SrbFlags::NO_QUEUE_FREEZE);
    s
}

fn lu_block(a: &Adapter, instance: u32) -> StatisticsBlock {
    let bytes = a
        .wmi_query_single(&LU_STATISTICS_GUID, instance, STATISTICS_BLOCK_SIZE as u32)
        .expect("LU block");
    StatisticsBlock::decode(&bytes).expect("decodes")
}

#[test]
fn the_port_blocks_count_the_io_the_test_issued() {
    let h = two_lus();
    let a = &h.adapter;
    let reg = a.wmi_reg_info().unwrap();
    assert_eq!(reg[1].info.guid, LU_STATISTICS_GUID);
    assert_eq!(reg[1].info.instance_count, 2, "one instance per LU");
    // The scan's INQUIRY / REPORT LUNS are commands too: count from snapshots taken now.
    let before0 = a.lu_statistics(LU0).unwrap_or_default();
    let before = a.lu_statistics(LU1).unwrap_or_default();
    let before_ad = a.statistics();

    // LU 0: 3 reads of 4 blocks, 2 writes of 8 blocks.
    for i in 0..3 {
        h.submit_srb(rw(LU0, false, 4, i));
    }
    for i in 0..2 {
        h.submit_srb(rw(LU0, true, 8, 10 + i));
    }
    h.wait(5);
    // LU 1: one read, then one failure of each kind.
    h.submit_srb(rw(LU1, false, 1, 20));
    let fails = [
        Behaviour::CheckCondition {
            key: 3,
            asc: 0x11,
            ascq: 0,
        },
        Behaviour::Status(SrbStatus::SELECTION_TIMEOUT.0),
        Behaviour::Status(SrbStatus::BUS_RESET.0),
        Behaviour::Status(SrbStatus::ABORTED.0),
        Behaviour::Status(SrbStatus::ERROR.0),
    ];
    for (i, b) in fails.iter().enumerate() {
        h.submit_srb(no_freeze(scripted_srb(LU1, *b, 30 + i as u64)));
    }
    h.wait(6);
    // One BUSY, retried on the next tick.
    h.submit_srb(no_freeze(scripted_srb(LU1, Behaviour::Busy(1), 40)));
    h.assert_nothing_completes();
    h.tick(1);
    assert_eq!(h.wait(1)[0].srb_status, SrbStatus::SUCCESS);
    // One held by the miniport: the queue depth.
    h.submit(LU1, Behaviour::Interrupt, 50);
    wait_until("the held request", || h.active(LU1) == 1);

    let all = a
        .wmi_query_all(&LU_STATISTICS_GUID, 2 * STATISTICS_BLOCK_SIZE as u32)
        .unwrap();
    let blocks = StatisticsBlock::decode_all(&all);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0], lu_block(a, 0));

    let lu0 = blocks[0];
    assert_eq!(lu0.address, Some(LU0));
    let s = lu0.statistics;
    let b = before0;
    assert_eq!(
        (
            s.commands - b.commands,
            s.reads - b.reads,
            s.writes - b.writes
        ),
        (5, 3, 2),
        "LU 0 commands/reads/writes"
    );
    assert_eq!(
        (
            s.bytes_read - b.bytes_read,
            s.bytes_written - b.bytes_written
        ),
        (3 * 2048, 2 * 4096)
    );
    assert_eq!(s.errors, b.errors);
    assert_eq!(s.latency.count, s.commands);
    assert_eq!(s.latency.buckets.iter().sum::<u64>(), s.commands);
    assert_eq!(s.outstanding, 0);

    let lu1 = blocks[1];
    assert_eq!(lu1.address, Some(LU1));
    let s = lu1.statistics;
    assert_eq!(s.commands - before.commands, 7);
    assert_eq!(s.reads - before.reads, 1);
    assert_eq!(s.bytes_read - before.bytes_read, 512);
    assert_eq!(s.errors - before.errors, 5);
    for kind in ErrorKind::ALL {
        assert_eq!(
            s.errors_of(kind) - before.errors_of(kind),
            1,
            "one {} error",
            kind.name()
        );
    }
    assert_eq!(s.busy - before.busy, 1);
    assert_eq!(s.outstanding, 1, "the held request is the queue depth");
    assert_eq!(s.latency.count, s.commands);

    // The adapter block is the sum, and matches the port's own snapshot.
    let ad = StatisticsBlock::decode(
        &a.wmi_query_all(&ADAPTER_STATISTICS_GUID, STATISTICS_BLOCK_SIZE as u32)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ad.address, None);
    let snap = a.statistics();
    assert_eq!(ad.statistics.commands, snap.commands);
    assert_eq!(ad.statistics.commands - before_ad.commands, 5 + 7);
    assert_eq!(
        ad.statistics.bytes_written - before_ad.bytes_written,
        2 * 4096
    );
    assert_eq!(ad.statistics.error_kinds, snap.error_kinds);
    assert_eq!(ad.statistics.outstanding, 1);

    // A bus reset: counted as a reset; the held request completes with BUS_RESET.
    let resets = ad.statistics.resets;
    let reset = a
        .execute_and_wait(port::queue_request(SrbFunction::ResetBus, LU0))
        .unwrap();
    assert_eq!(reset.srb_status, SrbStatus::SUCCESS);
    assert_eq!(h.wait(1)[0].srb_status.status(), SrbStatus::BUS_RESET);
    let ad = StatisticsBlock::decode(
        &a.wmi_query_single(&ADAPTER_STATISTICS_GUID, 0, 4096)
            .unwrap(),
    )
    .unwrap();
    assert!(
        ad.statistics.resets > resets,
        "{resets} -> {:?}",
        ad.statistics
    );
    assert_eq!(ad.statistics.outstanding, 0);
    assert_eq!(lu_block(a, 1).statistics.errors_of(ErrorKind::BusReset), 2);

    // A request that times out: the port aborts it (an ABORTED command) and counts a timeout.
    let lu0_before = lu_block(a, 0).statistics;
    let mut never = scripted_srb(LU0, Behaviour::Never, 60);
    never.time_out_value = 1;
    h.submit_srb(never);
    // Ticks: the bus reset's hold-off, then the TimeOutValue, then the abort.
    for _ in 0..10 {
        h.tick(1);
        if h.sink.wait_for(1, Duration::from_millis(50)) >= 1 {
            break;
        }
    }
    let done = h.wait(1);
    assert_eq!(done[0].srb_status.status(), SrbStatus::ABORTED);
    let s = lu_block(a, 0).statistics;
    assert_eq!(s.timeouts - lu0_before.timeouts, 1);
    assert_eq!(
        s.errors_of(ErrorKind::Aborted) - lu0_before.errors_of(ErrorKind::Aborted),
        1
    );
    assert_eq!(s.timeouts, a.lu_statistics(LU0).unwrap().timeouts);
}

#[test]
fn the_port_blocks_work_on_a_storport_adapter_without_a_provider() {
    let h = Harness::storport(ScriptConfig {
        default_behaviour: Behaviour::Inline,
        ..ScriptConfig::default()
    });
    let a = &h.adapter;
    let reg = a.wmi_reg_info().unwrap();
    assert_eq!(reg.len(), 2, "no provider: the port's blocks only");
    assert!(reg.iter().all(|b| b.source == WmiSource::Port));
    let base = lu_block(a, 0).statistics;
    for i in 0..4 {
        h.submit_srb(rw(LU0, i % 2 == 1, 2, i));
    }
    h.wait(4);
    let s = lu_block(a, 0).statistics;
    assert_eq!(s.commands - base.commands, 4);
    assert_eq!(s.reads - base.reads, 2);
    assert_eq!(s.writes - base.writes, 2);
    assert_eq!(s.bytes_written - base.bytes_written, 2048);
    assert_eq!(
        a.wmi_query_all(&port::testing::SCRIPT_WMI_GUID, 64),
        Err(WmiError::UnknownGuid)
    );
}
