//! The faults the simulated host adapter can inject, and its counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// The kinds of fault the simulated adapter injects, in the order of [`SimFaultKind::ALL`]
/// (the index of a kind in `ALL` is its index in [`SimAdapterConfig::fault_rates`],
/// [`SimCounters::injected`] and the WMI inject method).
///
/// [`SimAdapterConfig::fault_rates`]: super::SimAdapterConfig::fault_rates
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimFaultKind {
    /// The command is executed (data transferred), its completion is posted to the mailbox but
    /// the interrupt is not raised.
    LostInterrupt,
    /// The command is executed, its completion is held back until a reset (LU, target or bus)
    /// or an adapter restart has taken the request back; it then arrives for a request the port
    /// already finished, and is dropped and counted by the port as a late completion.
    LateCompletion,
    /// The command completes normally; in addition the line is raised once with nothing
    /// pending (the interrupt routine does not claim it).
    SpuriousInterrupt,
    /// Before the transfer, the adapter sees a bus reset on the command's bus: queued commands
    /// of the bus are dropped (nothing written), LUs see a target reset, the miniport reports
    /// ResetDetected and completes the bus's requests with BUS_RESET.
    BusResetDetected,
    /// Before the transfer: the target does not answer (SRB_STATUS_SELECTION_TIMEOUT).
    SelectionTimeout,
    /// Before the transfer: SCSI status BUSY.
    Busy,
    /// Before the transfer: CHECK CONDITION with the given sense (autosense).
    CheckCondition,
    /// Before the transfer: the adapter stops answering until the port resets a bus
    /// (`reset_bus`): no command is processed, and aborts and LU resets are not acknowledged
    /// (they fail at once, so the port's recovery ladder goes straight on to the bus reset).
    HangUntilReset,
    /// Like [`HangUntilReset`](Self::HangUntilReset), and the bus reset that ends the hang
    /// takes [`SimAdapterConfig::slow_reset_time`](super::SimAdapterConfig::slow_reset_time)
    /// before the adapter processes commands again.
    SlowReset,
}

impl SimFaultKind {
    /// Number of kinds.
    pub const COUNT: usize = 9;

    /// Every kind, in index order.
    pub const ALL: [SimFaultKind; 9] = [
        SimFaultKind::LostInterrupt,
        SimFaultKind::LateCompletion,
        SimFaultKind::SpuriousInterrupt,
        SimFaultKind::BusResetDetected,
        SimFaultKind::SelectionTimeout,
        SimFaultKind::Busy,
        SimFaultKind::CheckCondition,
        SimFaultKind::HangUntilReset,
        SimFaultKind::SlowReset,
    ];

    /// The configuration / WMI name (`"lost_interrupt"`, `"late_completion"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            SimFaultKind::LostInterrupt => "lost_interrupt",
            SimFaultKind::LateCompletion => "late_completion",
            SimFaultKind::SpuriousInterrupt => "spurious_interrupt",
            SimFaultKind::BusResetDetected => "bus_reset_detected",
            SimFaultKind::SelectionTimeout => "selection_timeout",
            SimFaultKind::Busy => "busy",
            SimFaultKind::CheckCondition => "check_condition",
            SimFaultKind::HangUntilReset => "hang_until_reset",
            SimFaultKind::SlowReset => "slow_reset",
        }
    }

    /// The kind named `name` (see [`name`](Self::name)).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The index of this kind in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind at `index` of [`ALL`](Self::ALL).
    pub fn from_index(index: usize) -> Option<Self> {
        Self::ALL.get(index).copied()
    }
}

/// One fault to inject into the next eligible command (see [`SimControl::inject`]).
///
/// [`SimControl::inject`]: super::SimControl::inject
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimFault {
    /// See [`SimFaultKind::LostInterrupt`].
    LostInterrupt,
    /// See [`SimFaultKind::LateCompletion`].
    LateCompletion,
    /// See [`SimFaultKind::SpuriousInterrupt`].
    SpuriousInterrupt,
    /// See [`SimFaultKind::BusResetDetected`].
    BusResetDetected,
    /// See [`SimFaultKind::SelectionTimeout`].
    SelectionTimeout,
    /// See [`SimFaultKind::Busy`].
    Busy,
    /// CHECK CONDITION with fixed-format sense `sense_key` / `asc` / `ascq`.
    CheckCondition {
        /// SENSE KEY.
        sense_key: u8,
        /// ADDITIONAL SENSE CODE.
        asc: u8,
        /// ADDITIONAL SENSE CODE QUALIFIER.
        ascq: u8,
    },
    /// See [`SimFaultKind::HangUntilReset`].
    HangUntilReset,
    /// See [`SimFaultKind::SlowReset`].
    SlowReset,
}

impl SimFault {
    /// The kind of this fault.
    pub fn kind(&self) -> SimFaultKind {
        match self {
            SimFault::LostInterrupt => SimFaultKind::LostInterrupt,
            SimFault::LateCompletion => SimFaultKind::LateCompletion,
            SimFault::SpuriousInterrupt => SimFaultKind::SpuriousInterrupt,
            SimFault::BusResetDetected => SimFaultKind::BusResetDetected,
            SimFault::SelectionTimeout => SimFaultKind::SelectionTimeout,
            SimFault::Busy => SimFaultKind::Busy,
            SimFault::CheckCondition { .. } => SimFaultKind::CheckCondition,
            SimFault::HangUntilReset => SimFaultKind::HangUntilReset,
            SimFault::SlowReset => SimFaultKind::SlowReset,
        }
    }

    /// The fault of `kind`; a CHECK CONDITION gets `sense` (key, ASC, ASCQ).
    pub fn of_kind(kind: SimFaultKind, sense: (u8, u8, u8)) -> SimFault {
        match kind {
            SimFaultKind::LostInterrupt => SimFault::LostInterrupt,
            SimFaultKind::LateCompletion => SimFault::LateCompletion,
            SimFaultKind::SpuriousInterrupt => SimFault::SpuriousInterrupt,
            SimFaultKind::BusResetDetected => SimFault::BusResetDetected,
            SimFaultKind::SelectionTimeout => SimFault::SelectionTimeout,
            SimFaultKind::Busy => SimFault::Busy,
            SimFaultKind::CheckCondition => SimFault::CheckCondition {
                sense_key: sense.0,
                asc: sense.1,
                ascq: sense.2,
            },
            SimFaultKind::HangUntilReset => SimFault::HangUntilReset,
            SimFaultKind::SlowReset => SimFault::SlowReset,
        }
    }
}

/// A snapshot of the simulated adapter's counters ([`SimControl::counters`], and the WMI
/// counters block in the layout of [`SimCounters::to_wmi_bytes`]).
///
/// [`SimControl::counters`]: super::SimControl::counters
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SimCounters {
    /// EXECUTE_SCSI commands the hardware processed (took from its mailbox).
    pub commands: u64,
    /// Interrupts the miniport's interrupt routine claimed.
    pub interrupts: u64,
    /// Interrupts the routine found nothing for (returned false; the port counts them too).
    pub spurious_interrupts: u64,
    /// Bus resets performed by `reset_bus`.
    pub resets: u64,
    /// Faults that took effect, per kind (indexed like [`SimFaultKind::ALL`]).
    pub injected: [u64; 9],
    /// LU and target resets (RESET_LOGICAL_UNIT, RESET_DEVICE).
    pub lu_resets: u64,
    /// ABORT_COMMAND requests.
    pub aborts: u64,
    /// Calls of `dma_started`.
    pub dma_started: u64,
    /// Transfers started through the system-DMA path (io_map_transfer, then dma_started).
    pub dma_transfers: u64,
    /// Interrupt work deferred through CallEnableInterrupts (and ended with
    /// CallDisableInterrupts).
    pub deferred_rounds: u64,
    /// Completions the hardware delivered for requests the port had already taken back
    /// (handed to the port, which drops and counts them).
    pub late_completions: u64,
    /// Completions for requests the miniport had already completed after a reset (dropped by
    /// the miniport).
    pub dropped_completions: u64,
    /// ScsiStopAdapter.
    pub stops: u64,
    /// ScsiRestartAdapter.
    pub restarts: u64,
    /// adapter_state(save).
    pub state_saves: u64,
    /// adapter_state(restore).
    pub state_restores: u64,
}

/// Number of u64 fields of the WMI counters block.
pub const SIM_COUNTERS_FIELDS: usize = 4 + 9 + 12;
/// Size of the WMI counters block: every field of [`SimCounters`] as a little-endian u64, in
/// declaration order (`injected` as 9 consecutive values).
pub const SIM_COUNTERS_WMI_SIZE: usize = SIM_COUNTERS_FIELDS * 8;
const _: () = assert!(SIM_COUNTERS_WMI_SIZE == 200);

impl SimCounters {
    fn fields(&self) -> [u64; SIM_COUNTERS_FIELDS] {
        let i = &self.injected;
        [
            self.commands,
            self.interrupts,
            self.spurious_interrupts,
            self.resets,
            i[0],
            i[1],
            i[2],
            i[3],
            i[4],
            i[5],
            i[6],
            i[7],
            i[8],
            self.lu_resets,
            self.aborts,
            self.dma_started,
            self.dma_transfers,
            self.deferred_rounds,
            self.late_completions,
            self.dropped_completions,
            self.stops,
            self.restarts,
            self.state_saves,
            self.state_restores,
            0,
        ]
    }

    /// The WMI counters block: [`SIM_COUNTERS_WMI_SIZE`] bytes, every field a little-endian
    /// u64 in declaration order, followed by one reserved zero u64.
    pub fn to_wmi_bytes(&self) -> [u8; SIM_COUNTERS_WMI_SIZE] {
        let mut out = [0u8; SIM_COUNTERS_WMI_SIZE];
        for (chunk, v) in out.chunks_exact_mut(8).zip(self.fields()) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Parses the WMI counters block (`None` if `bytes` is shorter than
    /// [`SIM_COUNTERS_WMI_SIZE`]).
    pub fn from_wmi_bytes(bytes: &[u8]) -> Option<SimCounters> {
        let bytes = bytes.get(..SIM_COUNTERS_WMI_SIZE)?;
        let mut v = [0u64; SIM_COUNTERS_FIELDS];
        for (dst, chunk) in v.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *dst = u64::from_le_bytes(b);
        }
        let mut injected = [0u64; 9];
        injected.copy_from_slice(&v[4..13]);
        Some(SimCounters {
            commands: v[0],
            interrupts: v[1],
            spurious_interrupts: v[2],
            resets: v[3],
            injected,
            lu_resets: v[13],
            aborts: v[14],
            dma_started: v[15],
            dma_transfers: v[16],
            deferred_rounds: v[17],
            late_completions: v[18],
            dropped_completions: v[19],
            stops: v[20],
            restarts: v[21],
            state_saves: v[22],
            state_restores: v[23],
        })
    }

    /// Total faults that took effect.
    pub fn injected_total(&self) -> u64 {
        self.injected.iter().sum()
    }
}

/// The live counters (atomics, updated from the device thread and the miniport routines).
#[derive(Debug, Default)]
pub(crate) struct LiveCounters {
    pub(crate) commands: AtomicU64,
    pub(crate) interrupts: AtomicU64,
    pub(crate) spurious_interrupts: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) injected: [AtomicU64; 9],
    pub(crate) lu_resets: AtomicU64,
    pub(crate) aborts: AtomicU64,
    pub(crate) dma_started: AtomicU64,
    pub(crate) dma_transfers: AtomicU64,
    pub(crate) deferred_rounds: AtomicU64,
    pub(crate) late_completions: AtomicU64,
    pub(crate) dropped_completions: AtomicU64,
    pub(crate) stops: AtomicU64,
    pub(crate) restarts: AtomicU64,
    pub(crate) state_saves: AtomicU64,
    pub(crate) state_restores: AtomicU64,
}

/// Adds one.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl LiveCounters {
    pub(crate) fn snapshot(&self) -> SimCounters {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimCounters {
            commands: r(&self.commands),
            interrupts: r(&self.interrupts),
            spurious_interrupts: r(&self.spurious_interrupts),
            resets: r(&self.resets),
            injected: std::array::from_fn(|i| r(&self.injected[i])),
            lu_resets: r(&self.lu_resets),
            aborts: r(&self.aborts),
            dma_started: r(&self.dma_started),
            dma_transfers: r(&self.dma_transfers),
            deferred_rounds: r(&self.deferred_rounds),
            late_completions: r(&self.late_completions),
            dropped_completions: r(&self.dropped_completions),
            stops: r(&self.stops),
            restarts: r(&self.restarts),
            state_saves: r(&self.state_saves),
            state_restores: r(&self.state_restores),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_indices_match_all() {
        for (i, k) in SimFaultKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(SimFaultKind::from_name(k.name()), Some(k));
            assert_eq!(SimFaultKind::from_index(i), Some(k));
            assert_eq!(SimFault::of_kind(k, (1, 2, 3)).kind(), k);
        }
        assert_eq!(SimFaultKind::from_name("nope"), None);
        assert_eq!(SimFaultKind::from_index(9), None);
    }

    #[test]
    fn counters_block_round_trips() {
        let c = SimCounters {
            commands: 1,
            interrupts: 2,
            spurious_interrupts: 3,
            resets: 4,
            injected: [5, 6, 7, 8, 9, 10, 11, 12, 13],
            lu_resets: 14,
            aborts: 15,
            dma_started: 16,
            dma_transfers: 17,
            deferred_rounds: 18,
            late_completions: 19,
            dropped_completions: 20,
            stops: 21,
            restarts: 22,
            state_saves: 23,
            state_restores: 24,
        };
        let b = c.to_wmi_bytes();
        assert_eq!(&b[..8], &1u64.to_le_bytes());
        assert_eq!(&b[4 * 8..5 * 8], &5u64.to_le_bytes());
        assert_eq!(SimCounters::from_wmi_bytes(&b), Some(c));
        assert_eq!(SimCounters::from_wmi_bytes(&b[..10]), None);
    }
}
