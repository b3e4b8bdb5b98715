//! Statistics counters and the error log.
//!
//! Counters are relaxed atomics bumped by the deferred stage (one uncontended add per event), so
//! readers (a WMI block, a metrics endpoint) never take an adapter lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::srb::Address;

/// Error codes of `ScsiPortLogError` (`SP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// SP_BUS_PARITY_ERROR.
    BusParityError = 0x01,
    /// SP_UNEXPECTED_DISCONNECT.
    UnexpectedDisconnect = 0x02,
    /// SP_INVALID_RESELECTION.
    InvalidReselection = 0x03,
    /// SP_BUS_TIME_OUT.
    BusTimeOut = 0x04,
    /// SP_PROTOCOL_ERROR.
    ProtocolError = 0x05,
    /// SP_INTERNAL_ADAPTER_ERROR.
    InternalAdapterError = 0x06,
    /// SP_REQUEST_TIMEOUT.
    RequestTimeout = 0x07,
    /// SP_IRQ_NOT_RESPONDING.
    IrqNotResponding = 0x08,
    /// SP_BAD_FW_WARNING.
    BadFwWarning = 0x09,
    /// SP_BAD_FW_ERROR.
    BadFwError = 0x0a,
    /// SP_LOST_WMI_MINIPORT_REQUEST.
    LostWmiMiniportRequest = 0x0b,
}

/// One error-log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorLogEntry {
    /// The LU concerned.
    pub address: Address,
    /// What happened.
    pub code: ErrorCode,
    /// Free-form id chosen by the logger (line number, firmware code...).
    pub unique_id: u32,
    /// Tag of the request concerned, if any.
    pub queue_tag: Option<u32>,
}

/// How many error-log entries an adapter keeps (oldest dropped first).
pub const ERROR_LOG_DEPTH: usize = 64;

/// Live counters of an adapter or an LU.
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) commands: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) busy: AtomicU64,
    pub(crate) flushed: AtomicU64,
    pub(crate) aborted: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn record_completion(&self, opcode: u8, ok: bool, bytes: u64) {
        add(&self.commands, 1);
        match classify(opcode) {
            Some(true) => {
                add(&self.reads, 1);
                if ok {
                    add(&self.bytes_read, bytes);
                }
            }
            Some(false) => {
                add(&self.writes, 1);
                if ok {
                    add(&self.bytes_written, bytes);
                }
            }
            None => {}
        }
        if !ok {
            add(&self.errors, 1);
        }
    }
    pub(crate) fn timeout(&self) {
        add(&self.timeouts, 1);
    }
    pub(crate) fn reset(&self) {
        add(&self.resets, 1);
    }
    pub(crate) fn busy(&self) {
        add(&self.busy, 1);
    }
    pub(crate) fn flushed(&self) {
        add(&self.flushed, 1);
    }
    pub(crate) fn aborted(&self) {
        add(&self.aborted, 1);
    }

    /// A consistent-enough snapshot (each counter read once, relaxed).
    pub fn snapshot(&self) -> Statistics {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Statistics {
            commands: r(&self.commands),
            reads: r(&self.reads),
            writes: r(&self.writes),
            bytes_read: r(&self.bytes_read),
            bytes_written: r(&self.bytes_written),
            errors: r(&self.errors),
            timeouts: r(&self.timeouts),
            resets: r(&self.resets),
            busy: r(&self.busy),
            flushed: r(&self.flushed),
            aborted: r(&self.aborted),
        }
    }
}

/// `Some(true)` for READ opcodes, `Some(false)` for WRITE opcodes (incl. WRITE AND VERIFY).
fn classify(opcode: u8) -> Option<bool> {
    match opcode {
        0x08 | 0x28 | 0xA8 | 0x88 => Some(true),
        0x0A | 0x2A | 0xAA | 0x8A | 0x2E | 0xAE | 0x8E => Some(false),
        _ => None,
    }
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Statistics {
    /// EXECUTE_SCSI requests completed to submitters.
    pub commands: u64,
    /// READ(6/10/12/16) among them.
    pub reads: u64,
    /// WRITE(6/10/12/16) and WRITE AND VERIFY among them.
    pub writes: u64,
    /// Bytes read by successful reads.
    pub bytes_read: u64,
    /// Bytes written by successful writes.
    pub bytes_written: u64,
    /// Requests completed with a status other than SUCCESS.
    pub errors: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Resets (bus resets, LU resets, adapter restarts, reported resets).
    pub resets: u64,
    /// BUSY / QUEUE FULL completions the port retried or gave up on.
    pub busy: u64,
    /// Requests completed as REQUEST_FLUSHED.
    pub flushed: u64,
    /// Requests completed as ABORTED.
    pub aborted: u64,
}

/// Adapter-wide shared state reachable without adapter locks.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) counters: Counters,
    late_completions: AtomicU64,
    spurious_interrupts: AtomicU64,
    dropped_wmi_events: AtomicU64,
    errors_logged: AtomicU64,
    restarts: AtomicU64,
    error_log: Mutex<VecDeque<ErrorLogEntry>>,
}

impl Shared {
    pub(crate) fn count_late_completion(&self) {
        add(&self.late_completions, 1);
    }
    pub(crate) fn count_spurious_interrupt(&self) {
        add(&self.spurious_interrupts, 1);
    }
    pub(crate) fn count_dropped_wmi_event(&self) {
        add(&self.dropped_wmi_events, 1);
    }
    pub(crate) fn count_restart(&self) {
        add(&self.restarts, 1);
    }
    pub(crate) fn log_error(&self, e: ErrorLogEntry) {
        tracing::warn!(address = %e.address, code = ?e.code, unique_id = e.unique_id, "port error log");
        add(&self.errors_logged, 1);
        let mut log = self.error_log.lock();
        if log.len() == ERROR_LOG_DEPTH {
            log.pop_front();
        }
        log.push_back(e);
    }
    pub(crate) fn error_log(&self) -> Vec<ErrorLogEntry> {
        self.error_log.lock().iter().copied().collect()
    }
    pub(crate) fn port_counters(&self) -> PortCounters {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PortCounters {
            late_completions: r(&self.late_completions),
            spurious_interrupts: r(&self.spurious_interrupts),
            dropped_wmi_events: r(&self.dropped_wmi_events),
            errors_logged: r(&self.errors_logged),
            adapter_restarts: r(&self.restarts),
        }
    }
}

/// Port-level counters of an adapter (beyond the I/O [`Statistics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortCounters {
    /// Completions of requests the port had already finished (dropped, never delivered).
    pub late_completions: u64,
    /// Interrupts the miniport's `interrupt` routine did not claim.
    pub spurious_interrupts: u64,
    /// WMI events dropped because the latch was full.
    pub dropped_wmi_events: u64,
    /// Error-log entries written.
    pub errors_logged: u64,
    /// Adapter restarts by the timeout escalation.
    pub adapter_restarts: u64,
}
