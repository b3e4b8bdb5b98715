//! The simulated host adapter: registers, a command mailbox (the doorbell queue), a completion
//! mailbox, and a device thread that executes commands on the LUs and raises the interrupt.
//!
//! # Locking
//!
//! All hardware state is behind one mutex ([`Hardware::state`]). The device thread *executes*
//! a command — runs its CDB on the [`LogicalUnit`](device::LogicalUnit), i.e. applies the data
//! transfer — while holding it, so the miniport's register operations (abort, reset, stop),
//! which also take it, see a command either not yet processed (still in the mailbox: removed,
//! nothing written) or processed (written; its completion is pending). This is the data
//! integrity rule of the simulation: no data moves for a command after an abort or reset
//! cleared it.
//!
//! The device thread never holds the mutex while it raises the interrupt line (raising may
//! run the port's deferred stage, and so the miniport, on the device thread). The miniport
//! takes the mutex under the port's interrupt lock; the device thread never takes a port lock
//! while holding it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use device::{Completion, ResetKind, ScsiRequest};
use parking_lot::{Condvar, Mutex};
use port::{Address, AddressFilter, Cdb, DataDirection, InterruptLine, SrbStatus, scsi_status};

use super::fault::{LiveCounters, SimFault, SimFaultKind, bump};
use crate::DiskLu;

/// Most one-shot faults queued at once ([`Hardware::inject`] drops beyond).
pub(crate) const MAX_QUEUED_FAULTS: usize = 1 << 16;

/// The adapter's registers: what `adapter_state` saves and restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimRegisters {
    /// Interrupt mask: true = the adapter does not raise its line.
    pub interrupt_mask: bool,
    /// Operating mode: [`SimRegisters::MODE_BIOS`] at power-on, [`SimRegisters::MODE_RUNNING`]
    /// after `initialize`.
    pub mode: u32,
    /// Doorbell writes so far (commands the miniport handed to the adapter).
    pub doorbell: u64,
}

impl SimRegisters {
    /// Power-on ("BIOS") mode.
    pub const MODE_BIOS: u32 = 0;
    /// The mode `initialize` sets.
    pub const MODE_RUNNING: u32 = 1;
    /// The registers at power-on.
    pub const POWER_ON: SimRegisters = SimRegisters {
        interrupt_mask: true,
        mode: Self::MODE_BIOS,
        doorbell: 0,
    };
}

/// A command the miniport wrote into the command mailbox.
#[derive(Debug)]
pub(crate) struct Command {
    pub(crate) tag: u64,
    pub(crate) address: Address,
    pub(crate) cdb: Cdb,
    pub(crate) nexus: device::ItNexus,
    pub(crate) direction: DataDirection,
    /// The data the "DMA" read from host memory (writes).
    pub(crate) data_out: Vec<u8>,
    /// Bytes of the host buffer (reads: how much the device may return).
    pub(crate) transfer_length: usize,
}

/// How a command ended, as the adapter reports it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The device executed the command; `data_in` is what it returned (reads).
    Executed {
        completion: Completion,
        data_in: Vec<u8>,
    },
    /// The adapter ended it before the transfer with this SRB status / SCSI status / sense.
    Failed {
        srb_status: SrbStatus,
        scsi_status: u8,
        sense: Option<[u8; 18]>,
    },
}

/// One entry of the completion mailbox.
#[derive(Debug)]
pub(crate) enum MailboxEntry {
    /// A command finished.
    Done { tag: u64, outcome: Outcome },
    /// The adapter saw a bus reset on `path_id`; its queued commands there were dropped and
    /// the held-back completions `released` will arrive after this entry.
    BusReset { path_id: u8, released: Vec<u64> },
}

/// A completion waiting for its interrupt latency.
#[derive(Debug)]
struct Timed {
    due: Instant,
    address: Address,
    entry: MailboxEntry,
    /// Post without raising the line (lost interrupt).
    lost: bool,
    /// A late completion a reset released: no later clear drops it.
    released: bool,
}

/// A completion held back by the LateCompletion fault.
#[derive(Debug)]
struct Late {
    tag: u64,
    address: Address,
    outcome: Outcome,
    since: Instant,
}

/// What [`Hardware::abort`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AbortResult {
    /// The command was still in the command mailbox: removed, nothing transferred.
    Removed,
    /// The command was processed; its completion is now in the completion mailbox.
    Completed,
    /// The command was processed and its completion is held back (too late to abort).
    TooLate,
    /// The adapter does not know the command.
    NotFound,
}

/// Timing and fault settings, copied from the adapter's configuration at `find_adapter`.
#[derive(Debug, Clone)]
pub(crate) struct HwSettings {
    pub(crate) interrupt_latency: Duration,
    pub(crate) reset_time: Duration,
    pub(crate) slow_reset_time: Duration,
    pub(crate) late_completion_max_hold: Duration,
    pub(crate) check_condition_sense: (u8, u8, u8),
}

impl Default for HwSettings {
    fn default() -> Self {
        Self {
            interrupt_latency: Duration::from_micros(20),
            reset_time: Duration::ZERO,
            slow_reset_time: Duration::from_millis(200),
            late_completion_max_hold: Duration::from_secs(30),
            check_condition_sense: (0x0B, 0x00, 0x00),
        }
    }
}

struct HwState {
    regs: SimRegisters,
    settings: HwSettings,
    lus: Vec<DiskLu>,
    commands: VecDeque<Command>,
    timed: VecDeque<Timed>,
    late: Vec<Late>,
    mailbox: VecDeque<MailboxEntry>,
    /// A non-lost completion was posted since the last raise.
    raise_needed: bool,
    spurious_pending: u32,
    hung: bool,
    slow_next_reset: bool,
    /// Resetting: no command is processed before this instant.
    ready_at: Option<Instant>,
    stopped: bool,
    shutdown: bool,
    faults: VecDeque<SimFault>,
    rates: [u32; 9],
    rng: u64,
    /// Reads of the interrupt status register (the spurious raise waits for one).
    isr_reads: u64,
}

/// The simulated adapter, shared by the miniport, the device thread and [`SimControl`]s.
///
/// [`SimControl`]: super::SimControl
pub(crate) struct Hardware {
    state: Mutex<HwState>,
    cv: Condvar,
    pub(crate) counters: LiveCounters,
    line: OnceLock<InterruptLine>,
    thread_started: AtomicBool,
}

impl std::fmt::Debug for Hardware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hardware").finish_non_exhaustive()
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fixed-format sense data (18 bytes) with `key` / `asc` / `ascq`.
pub(crate) fn fixed_sense(key: u8, asc: u8, ascq: u8) -> [u8; 18] {
    let mut s = [0u8; 18];
    s[0] = 0x70;
    s[2] = key & 0x0F;
    s[7] = 10;
    s[12] = asc;
    s[13] = ascq;
    s
}

/// Commands that faults never hit: the bus scan's INQUIRY and REPORT LUNS, and REQUEST SENSE.
fn fault_eligible(cdb: &Cdb) -> bool {
    !matches!(cdb.opcode(), 0x12 | 0xA0 | 0x03)
}

impl HwState {
    fn draw_fault(&mut self) -> Option<SimFault> {
        if let Some(f) = self.faults.pop_front() {
            return Some(f);
        }
        let total: u64 = self.rates.iter().map(|&r| r as u64).sum();
        if total == 0 {
            return None;
        }
        let r = splitmix(&mut self.rng) % 1_000_000;
        let mut acc = 0u64;
        for (i, &rate) in self.rates.iter().enumerate() {
            acc += rate as u64;
            if r < acc {
                return Some(SimFault::of_kind(
                    SimFaultKind::ALL[i],
                    self.settings.check_condition_sense,
                ));
            }
        }
        None
    }

    fn post(&mut self, now: Instant, address: Address, entry: MailboxEntry, lost: bool) {
        self.timed.push_back(Timed {
            due: now + self.settings.interrupt_latency,
            address,
            entry,
            lost,
            released: false,
        });
    }

    /// Clears what the adapter holds for `filter`: queued commands (dropped, nothing
    /// transferred) and completions waiting for their latency. Held-back late completions are
    /// released to arrive after the reset; their tags are returned.
    fn clear(&mut self, filter: AddressFilter, after: Instant) -> Vec<u64> {
        self.commands.retain(|c| !filter.matches(c.address));
        self.timed
            .retain(|t| t.released || !filter.matches(t.address));
        let mut released = Vec::new();
        let mut keep = Vec::with_capacity(self.late.len());
        for l in self.late.drain(..) {
            if filter.matches(l.address) {
                released.push(l.tag);
                self.timed.push_back(Timed {
                    due: after + self.settings.interrupt_latency,
                    address: l.address,
                    entry: MailboxEntry::Done {
                        tag: l.tag,
                        outcome: l.outcome,
                    },
                    lost: false,
                    released: true,
                });
            } else {
                keep.push(l);
            }
        }
        self.late = keep;
        released
    }

    fn reset_lus(&self, filter: AddressFilter, kind: ResetKind) {
        for d in &self.lus {
            if filter.matches(d.address) {
                d.lu.reset(kind);
            }
        }
    }
}

impl Hardware {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(HwState {
                regs: SimRegisters::POWER_ON,
                settings: HwSettings::default(),
                lus: Vec::new(),
                commands: VecDeque::new(),
                timed: VecDeque::new(),
                late: Vec::new(),
                mailbox: VecDeque::new(),
                raise_needed: false,
                spurious_pending: 0,
                hung: false,
                slow_next_reset: false,
                ready_at: None,
                stopped: false,
                shutdown: false,
                faults: VecDeque::new(),
                rates: [0; 9],
                rng: 0,
                isr_reads: 0,
            }),
            cv: Condvar::new(),
            counters: LiveCounters::default(),
            line: OnceLock::new(),
            thread_started: AtomicBool::new(false),
        }
    }

    /// Powers the adapter on (`find_adapter`): LUs, settings, rates, and the device thread
    /// that raises `line`. False if it was already powered on or the thread cannot start.
    pub(crate) fn power_on(
        self: &Arc<Self>,
        lus: Vec<DiskLu>,
        settings: HwSettings,
        rates: [u32; 9],
        seed: u64,
        line: InterruptLine,
    ) -> bool {
        if self.thread_started.swap(true, Ordering::AcqRel) {
            return false;
        }
        {
            let mut st = self.state.lock();
            st.lus = lus;
            st.settings = settings;
            st.rates = rates;
            st.rng = seed;
            st.regs = SimRegisters::POWER_ON;
        }
        let _ = self.line.set(line);
        let hw = self.clone();
        std::thread::Builder::new()
            .name("sim-hba".into())
            .spawn(move || hw.device_thread())
            .is_ok()
    }

    /// Stops the device thread (the adapter is gone).
    pub(crate) fn power_off(&self) {
        self.state.lock().shutdown = true;
        self.cv.notify_all();
    }

    // ---- SimControl side -------------------------------------------------------------

    pub(crate) fn inject(&self, fault: SimFault) -> bool {
        let mut st = self.state.lock();
        if st.faults.len() >= MAX_QUEUED_FAULTS {
            return false;
        }
        st.faults.push_back(fault);
        true
    }

    pub(crate) fn set_rate(&self, kind: SimFaultKind, per_million: u32) {
        self.state.lock().rates[kind.index()] = per_million.min(1_000_000);
    }

    pub(crate) fn rates(&self) -> [u32; 9] {
        self.state.lock().rates
    }

    pub(crate) fn queued_faults(&self) -> usize {
        self.state.lock().faults.len()
    }

    pub(crate) fn registers(&self) -> SimRegisters {
        self.state.lock().regs
    }

    pub(crate) fn is_hung(&self) -> bool {
        self.state.lock().hung
    }

    // ---- miniport side (under the port's interrupt lock) -----------------------------

    /// Writes `cmd` into the command mailbox and rings the doorbell.
    pub(crate) fn submit(&self, cmd: Command) {
        let mut st = self.state.lock();
        st.regs.doorbell += 1;
        st.commands.push_back(cmd);
        drop(st);
        self.cv.notify_all();
    }

    /// Reads the interrupt status register: the number of mailbox entries pending.
    pub(crate) fn interrupt_status(&self) -> usize {
        let mut st = self.state.lock();
        st.isr_reads += 1;
        let n = st.mailbox.len();
        drop(st);
        self.cv.notify_all();
        n
    }

    /// Reads the completion mailbox (and acknowledges the interrupt).
    pub(crate) fn take_mailbox(&self, out: &mut Vec<MailboxEntry>) {
        let mut st = self.state.lock();
        out.extend(st.mailbox.drain(..));
    }

    /// Sets the interrupt mask register; unmasking lets the adapter raise again for whatever
    /// is pending.
    pub(crate) fn set_mask(&self, masked: bool) {
        let mut st = self.state.lock();
        st.regs.interrupt_mask = masked;
        if !masked && !st.mailbox.is_empty() {
            st.raise_needed = true;
        }
        drop(st);
        self.cv.notify_all();
    }

    /// `initialize` / RestartAdapter: running mode, queues empty, interrupts unmasked.
    pub(crate) fn start(&self) {
        let mut st = self.state.lock();
        st.regs.mode = SimRegisters::MODE_RUNNING;
        st.regs.interrupt_mask = false;
        st.stopped = false;
        st.hung = false;
        drop(st);
        self.cv.notify_all();
    }

    /// StopAdapter: masks the interrupt and drops every command and completion; the device
    /// thread idles until [`start`](Self::start).
    pub(crate) fn stop(&self) {
        let mut st = self.state.lock();
        st.stopped = true;
        st.regs.interrupt_mask = true;
        st.hung = false;
        st.slow_next_reset = false;
        st.ready_at = None;
        st.commands.clear();
        st.timed.clear();
        st.late.clear();
        st.mailbox.clear();
        st.raise_needed = false;
        st.spurious_pending = 0;
        drop(st);
        self.cv.notify_all();
    }

    pub(crate) fn set_registers(&self, regs: SimRegisters) {
        let mut st = self.state.lock();
        st.regs = regs;
        drop(st);
        self.cv.notify_all();
    }

    /// Bus reset of `path_id` (`reset_bus`): ends a hang, drops the bus's queued commands and
    /// pending completions, resets its LUs (target reset), and keeps the adapter busy for the
    /// reset time (the slow one after a SlowReset fault). Returns the tags of late completions
    /// released to arrive after the reset.
    pub(crate) fn reset_bus(&self, path_id: u8) -> Vec<u64> {
        let mut st = self.state.lock();
        let now = Instant::now();
        let time = if std::mem::take(&mut st.slow_next_reset) {
            st.settings.slow_reset_time
        } else {
            st.settings.reset_time
        };
        st.hung = false;
        let after = now + time;
        st.ready_at = Some(st.ready_at.map_or(after, |t| t.max(after)));
        let filter = AddressFilter::bus(path_id);
        let released = st.clear(filter, after);
        st.reset_lus(filter, ResetKind::TargetReset);
        drop(st);
        self.cv.notify_all();
        released
    }

    /// LU or target reset for `filter`; `None` while the adapter is hung (no answer).
    pub(crate) fn reset_lu(&self, filter: AddressFilter, kind: ResetKind) -> Option<Vec<u64>> {
        let mut st = self.state.lock();
        if st.hung {
            return None;
        }
        let released = st.clear(filter, Instant::now());
        st.reset_lus(filter, kind);
        drop(st);
        self.cv.notify_all();
        Some(released)
    }

    /// Clears `filter` without resetting the LUs (after the adapter reported a bus reset it
    /// saw: catches commands queued after the event). Returns released late tags.
    pub(crate) fn clear(&self, filter: AddressFilter) -> Vec<u64> {
        let mut st = self.state.lock();
        let released = st.clear(filter, Instant::now());
        drop(st);
        self.cv.notify_all();
        released
    }

    /// ABORT of command `tag`; `None` while the adapter is hung (no answer).
    pub(crate) fn abort(&self, tag: u64) -> Option<AbortResult> {
        let mut st = self.state.lock();
        if st.hung {
            return None;
        }
        if let Some(i) = st.commands.iter().position(|c| c.tag == tag) {
            st.commands.remove(i);
            return Some(AbortResult::Removed);
        }
        let is_tag = |e: &MailboxEntry| matches!(e, MailboxEntry::Done { tag: t, .. } if *t == tag);
        if let Some(i) = st.timed.iter().position(|t| is_tag(&t.entry)) {
            // Processed: post the completion now (the abort flushes it).
            if let Some(t) = st.timed.remove(i) {
                st.mailbox.push_back(t.entry);
            }
            return Some(AbortResult::Completed);
        }
        if st.mailbox.iter().any(is_tag) {
            return Some(AbortResult::Completed);
        }
        if st.late.iter().any(|l| l.tag == tag) {
            return Some(AbortResult::TooLate);
        }
        Some(AbortResult::NotFound)
    }

    // ---- the device thread -----------------------------------------------------------

    fn device_thread(self: Arc<Self>) {
        let Some(line) = self.line.get().cloned() else {
            return;
        };
        let mut st = self.state.lock();
        loop {
            if st.shutdown {
                return;
            }
            let now = Instant::now();
            // A spurious raise goes out when nothing is pending, so the interrupt routine
            // really finds nothing; then wait (bounded) until it has looked.
            if st.spurious_pending > 0
                && st.mailbox.is_empty()
                && !st.regs.interrupt_mask
                && !st.stopped
            {
                st.spurious_pending -= 1;
                bump(&self.counters.injected[SimFaultKind::SpuriousInterrupt.index()]);
                let reads = st.isr_reads;
                drop(st);
                line.raise();
                st = self.state.lock();
                let deadline = Instant::now() + Duration::from_millis(100);
                while st.isr_reads == reads && !st.shutdown {
                    if self.cv.wait_until(&mut st, deadline).timed_out() {
                        break;
                    }
                }
                continue;
            }
            // Completions whose latency has passed go to the completion mailbox.
            if st.timed.iter().any(|t| t.due <= now) {
                let mut rest = VecDeque::with_capacity(st.timed.len());
                let timed = std::mem::take(&mut st.timed);
                for t in timed {
                    if t.due <= now {
                        if !t.lost {
                            st.raise_needed = true;
                        }
                        st.mailbox.push_back(t.entry);
                    } else {
                        rest.push_back(t);
                    }
                }
                st.timed = rest;
            }
            // Late completions held too long are delivered anyway.
            let max_hold = st.settings.late_completion_max_hold;
            if st
                .late
                .iter()
                .any(|l| now.duration_since(l.since) >= max_hold)
            {
                let late = std::mem::take(&mut st.late);
                for l in late {
                    if now.duration_since(l.since) >= max_hold {
                        st.post(
                            now,
                            l.address,
                            MailboxEntry::Done {
                                tag: l.tag,
                                outcome: l.outcome,
                            },
                            false,
                        );
                    } else {
                        st.late.push(l);
                    }
                }
            }
            // Commands.
            if st.ready_at.is_some_and(|t| t <= now) {
                st.ready_at = None;
            }
            while !st.stopped && !st.hung && st.ready_at.is_none() {
                let Some(cmd) = st.commands.pop_front() else {
                    break;
                };
                self.process(&mut st, cmd, now);
            }
            if st.raise_needed && !st.regs.interrupt_mask && !st.stopped && !st.mailbox.is_empty() {
                st.raise_needed = false;
                drop(st);
                line.raise();
                st = self.state.lock();
                continue;
            }
            // Sleep until the next due completion, the end of a reset, or new work.
            let mut next: Option<Instant> = st.timed.iter().map(|t| t.due).min();
            if let Some(r) = st.ready_at {
                next = Some(next.map_or(r, |n| n.min(r)));
            }
            if let Some(l) = st.late.iter().map(|l| l.since + max_hold).min() {
                next = Some(next.map_or(l, |n| n.min(l)));
            }
            match next {
                Some(t) => {
                    let _ = self.cv.wait_until(&mut st, t);
                }
                None => self.cv.wait(&mut st),
            }
        }
    }

    /// Processes one command (under the state lock): applies a fault, or executes it on the
    /// LU (the data transfer happens here) and schedules its completion.
    fn process(&self, st: &mut HwState, cmd: Command, now: Instant) {
        let fault = if fault_eligible(&cmd.cdb) {
            st.draw_fault()
        } else {
            None
        };
        if let Some(f) = fault
            && f.kind() != SimFaultKind::SpuriousInterrupt
        {
            bump(&self.counters.injected[f.kind().index()]);
        }
        let address = cmd.address;
        let failed = |srb_status, scsi_status, sense| Outcome::Failed {
            srb_status,
            scsi_status,
            sense,
        };
        match fault {
            Some(SimFault::HangUntilReset) | Some(SimFault::SlowReset) => {
                // Not processed: the adapter stops answering with the command still queued.
                st.hung = true;
                if fault == Some(SimFault::SlowReset) {
                    st.slow_next_reset = true;
                }
                st.commands.push_front(cmd);
                return;
            }
            Some(SimFault::BusResetDetected) => {
                let filter = AddressFilter::bus(address.path_id);
                st.commands.push_front(cmd);
                let released = st.clear(filter, now);
                st.reset_lus(filter, ResetKind::TargetReset);
                // The event goes in the mailbox before anything the reset released.
                st.mailbox.push_back(MailboxEntry::BusReset {
                    path_id: address.path_id,
                    released,
                });
                st.raise_needed = true;
                return;
            }
            _ => {}
        }
        bump(&self.counters.commands);
        let outcome = match fault {
            Some(SimFault::SelectionTimeout) => failed(SrbStatus::SELECTION_TIMEOUT, 0, None),
            Some(SimFault::Busy) => failed(SrbStatus::BUSY, scsi_status::BUSY, None),
            Some(SimFault::CheckCondition {
                sense_key,
                asc,
                ascq,
            }) => failed(
                SrbStatus::ERROR,
                scsi_status::CHECK_CONDITION,
                Some(fixed_sense(sense_key, asc, ascq)),
            ),
            _ => match st.lus.iter().find(|d| d.address == address) {
                None => failed(SrbStatus::SELECTION_TIMEOUT, 0, None),
                Some(d) => {
                    let mut data_in = match cmd.direction {
                        DataDirection::In => vec![0u8; cmd.transfer_length],
                        _ => Vec::new(),
                    };
                    let data_out: &[u8] = match cmd.direction {
                        DataDirection::Out => &cmd.data_out,
                        _ => &[],
                    };
                    let mut req = ScsiRequest {
                        nexus: cmd.nexus,
                        cdb: cmd.cdb.as_slice(),
                        data_out,
                        data_in: &mut data_in,
                    };
                    let completion = d.lu.execute(&mut req);
                    Outcome::Executed {
                        completion,
                        data_in,
                    }
                }
            },
        };
        let entry = MailboxEntry::Done {
            tag: cmd.tag,
            outcome,
        };
        match fault {
            Some(SimFault::LostInterrupt) => st.post(now, address, entry, true),
            Some(SimFault::LateCompletion) => {
                if let MailboxEntry::Done { tag, outcome } = entry {
                    st.late.push(Late {
                        tag,
                        address,
                        outcome,
                        since: now,
                    });
                }
            }
            Some(SimFault::SpuriousInterrupt) => {
                st.spurious_pending += 1;
                st.post(now, address, entry, false);
            }
            _ => st.post(now, address, entry, false),
        }
    }
}
