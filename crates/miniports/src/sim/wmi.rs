//! The simulated adapter's WMI provider: a counters data block and a method block whose
//! method 1 injects faults.

use std::sync::Arc;

use port::SrbStatus;
use port::wmi::{WmiGuidRegInfo, WmiProvider, WmiResult};

use super::fault::{SIM_COUNTERS_WMI_SIZE, SimFault, SimFaultKind};
use super::hardware::Hardware;

/// GUID of the counters data block (one instance: [`SimCounters`](super::SimCounters) in the
/// layout of [`SimCounters::to_wmi_bytes`](super::SimCounters::to_wmi_bytes)).
pub const SIM_COUNTERS_GUID: [u8; 16] = [
    0x5c, 0x1d, 0x0e, 0x8a, 0x43, 0x27, 0x4b, 0x61, 0x9a, 0x1e, 0x53, 0x49, 0x4d, 0x43, 0x4e, 0x54,
];
/// GUID of the method block (one instance; method [`SIM_WMI_METHOD_INJECT`]).
pub const SIM_METHODS_GUID: [u8; 16] = [
    0x5c, 0x1d, 0x0e, 0x8b, 0x43, 0x27, 0x4b, 0x61, 0x9a, 0x1e, 0x53, 0x49, 0x4d, 0x4d, 0x54, 0x48,
];
/// Method id of "inject fault".
pub const SIM_WMI_METHOD_INJECT: u32 = 1;
/// Input of the inject method: u32 LE kind index (see
/// [`SimFaultKind::ALL`]), u32 LE count, u8 sense key, u8 ASC, u8 ASCQ (the sense is used by
/// `check_condition` only).
pub const SIM_WMI_INJECT_INPUT_SIZE: usize = 11;
/// Output of the inject method: u32 LE faults queued by this call, u32 LE one-shot faults
/// queued in all, then the counters block ([`SIM_COUNTERS_WMI_SIZE`] bytes). A smaller output
/// buffer answers buffer-too-small with this size, before anything is injected.
pub const SIM_WMI_INJECT_OUTPUT_SIZE: usize = 8 + SIM_COUNTERS_WMI_SIZE;
/// Most faults one inject call may queue.
pub const SIM_WMI_INJECT_MAX_COUNT: u32 = 4096;

/// The input of the inject method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectInput {
    /// Index into [`SimFaultKind::ALL`].
    pub kind: u32,
    /// How many faults of that kind to queue (1..=[`SIM_WMI_INJECT_MAX_COUNT`]).
    pub count: u32,
    /// SENSE KEY for `check_condition`.
    pub sense_key: u8,
    /// ASC for `check_condition`.
    pub asc: u8,
    /// ASCQ for `check_condition`.
    pub ascq: u8,
}

const _: () = assert!(SIM_WMI_INJECT_INPUT_SIZE == 4 + 4 + 3);

impl InjectInput {
    /// The wire form ([`SIM_WMI_INJECT_INPUT_SIZE`] bytes).
    pub fn to_bytes(&self) -> [u8; SIM_WMI_INJECT_INPUT_SIZE] {
        let mut b = [0u8; SIM_WMI_INJECT_INPUT_SIZE];
        b[0..4].copy_from_slice(&self.kind.to_le_bytes());
        b[4..8].copy_from_slice(&self.count.to_le_bytes());
        b[8] = self.sense_key;
        b[9] = self.asc;
        b[10] = self.ascq;
        b
    }

    /// Parses the wire form (`None` if too short).
    pub fn parse(b: &[u8]) -> Option<InjectInput> {
        let b = b.get(..SIM_WMI_INJECT_INPUT_SIZE)?;
        Some(InjectInput {
            kind: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            count: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            sense_key: b[8],
            asc: b[9],
            ascq: b[10],
        })
    }
}

/// The provider; runs under the adapter's interrupt lock (from `start_io`).
pub(crate) struct SimWmi {
    hw: Arc<Hardware>,
    reg: [WmiGuidRegInfo; 2],
}

impl SimWmi {
    pub(crate) fn new(hw: Arc<Hardware>) -> Self {
        Self {
            hw,
            reg: [
                WmiGuidRegInfo {
                    guid: SIM_COUNTERS_GUID,
                    instance_count: 1,
                    flags: 0,
                },
                WmiGuidRegInfo {
                    guid: SIM_METHODS_GUID,
                    instance_count: 1,
                    flags: 0,
                },
            ],
        }
    }
}

impl WmiProvider for SimWmi {
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
        if guid_index != 0 || instance_index != 0 || instance_count != 1 {
            return WmiResult::status_only(SrbStatus::ERROR);
        }
        if buffer.len() < SIM_COUNTERS_WMI_SIZE {
            return WmiResult::too_small(SIM_COUNTERS_WMI_SIZE as u32);
        }
        let bytes = self.hw.counters.snapshot().to_wmi_bytes();
        buffer[..SIM_COUNTERS_WMI_SIZE].copy_from_slice(&bytes);
        WmiResult::ok(SIM_COUNTERS_WMI_SIZE as u32)
    }

    fn execute_method(
        &mut self,
        guid_index: usize,
        instance_index: u32,
        method_id: u32,
        in_size: u32,
        buffer: &mut [u8],
    ) -> WmiResult {
        if guid_index != 1 || instance_index != 0 || method_id != SIM_WMI_METHOD_INJECT {
            return WmiResult::status_only(SrbStatus::ERROR);
        }
        let in_size = (in_size as usize).min(buffer.len());
        let Some(input) = InjectInput::parse(&buffer[..in_size]) else {
            return WmiResult::status_only(SrbStatus::INVALID_REQUEST);
        };
        if buffer.len() < SIM_WMI_INJECT_OUTPUT_SIZE {
            return WmiResult::too_small(SIM_WMI_INJECT_OUTPUT_SIZE as u32);
        }
        let Some(kind) = SimFaultKind::from_index(input.kind as usize) else {
            return WmiResult::status_only(SrbStatus::INVALID_REQUEST);
        };
        if input.count == 0 || input.count > SIM_WMI_INJECT_MAX_COUNT {
            return WmiResult::status_only(SrbStatus::INVALID_REQUEST);
        }
        let fault = SimFault::of_kind(kind, (input.sense_key, input.asc, input.ascq));
        let mut queued = 0u32;
        for _ in 0..input.count {
            if !self.hw.inject(fault) {
                break;
            }
            queued += 1;
        }
        let total = self.hw.queued_faults() as u32;
        buffer[..4].copy_from_slice(&queued.to_le_bytes());
        buffer[4..8].copy_from_slice(&total.to_le_bytes());
        buffer[8..SIM_WMI_INJECT_OUTPUT_SIZE]
            .copy_from_slice(&self.hw.counters.snapshot().to_wmi_bytes());
        WmiResult::ok(SIM_WMI_INJECT_OUTPUT_SIZE as u32)
    }
}
