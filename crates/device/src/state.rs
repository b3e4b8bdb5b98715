//! The mutable state of a logical unit, kept under one mutex (`LogicalUnit::state`).
//!
//! Lock order: the state mutex is a leaf lock. Nothing else is locked and no backend call
//! is made while it is held.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::mode::ModePages;
use crate::pr::PrState;
use crate::request::ItNexus;
use crate::sense::Asc;

/// How many unit attentions one I_T nexus can have queued; older ones of lower
/// precedence are dropped beyond this (the newest condition is what matters).
pub(crate) const MAX_QUEUED_UA: usize = 8;

/// How many I_T nexuses the unit-attention table remembers.
pub(crate) const MAX_KNOWN_NEXUS: usize = 4096;

/// Unit attention conditions queued per I_T nexus (SAM-5 5.14).
#[derive(Debug, Default)]
pub(crate) struct UaQueue {
    queue: VecDeque<Asc>,
}

impl UaQueue {
    /// Queues `asc` unless it is already queued. A reset condition (29h) has the
    /// highest precedence and supersedes everything pending: the reset restored the
    /// state the older conditions described.
    pub(crate) fn push(&mut self, asc: Asc) {
        if asc.asc == 0x29 {
            self.queue.clear();
            self.queue.push_front(asc);
        } else if !self.queue.contains(&asc) {
            self.queue.push_back(asc);
        }
        while self.queue.len() > MAX_QUEUED_UA {
            self.queue.pop_back();
        }
    }

    /// Takes the condition to report next.
    pub(crate) fn pop(&mut self) -> Option<Asc> {
        self.queue.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

/// Everything about a logical unit that commands change.
#[derive(Debug)]
pub(crate) struct LuState {
    /// Current mode page values.
    pub mode: ModePages,
    /// Saved mode page values (in memory only).
    pub saved: ModePages,
    /// Every I_T nexus seen, with its pending unit attentions.
    pub nexus: BTreeMap<ItNexus, UaQueue>,
    /// The holder of a SCSI-2 (RESERVE(6)/(10)) reservation.
    pub scsi2: Option<ItNexus>,
    /// Persistent reservation state.
    pub pr: PrState,
    /// I_T nexuses that sent PREVENT ALLOW MEDIUM REMOVAL with PREVENT = 1.
    pub prevent: BTreeSet<ItNexus>,
    /// Started (START STOP UNIT); a stopped unit is NOT READY for media access.
    pub started: bool,
    /// Initiator port names given by the front end, for TransportIDs.
    pub initiator_names: BTreeMap<u64, String>,
}

impl LuState {
    pub(crate) fn new() -> Self {
        Self {
            mode: ModePages::defaults(),
            saved: ModePages::defaults(),
            nexus: BTreeMap::new(),
            scsi2: None,
            pr: PrState::default(),
            prevent: BTreeSet::new(),
            started: true,
            initiator_names: BTreeMap::new(),
        }
    }

    /// Records that `nexus` exists. The table is bounded: past [`MAX_KNOWN_NEXUS`]
    /// entries, nexuses with nothing pending are forgotten (a forgotten nexus misses
    /// only reset unit attentions, as a brand-new one does).
    pub(crate) fn touch(&mut self, nexus: ItNexus) -> &mut UaQueue {
        if !self.nexus.contains_key(&nexus) && self.nexus.len() >= MAX_KNOWN_NEXUS {
            self.nexus.retain(|_, q| q.len() > 0);
        }
        self.nexus.entry(nexus).or_default()
    }

    /// Queues `asc` for every known I_T nexus except `except`.
    pub(crate) fn ua_all(&mut self, asc: Asc, except: Option<ItNexus>) {
        for (n, q) in self.nexus.iter_mut() {
            if Some(*n) != except {
                q.push(asc);
            }
        }
    }

    /// Queues `asc` for one I_T nexus (creating its entry if needed).
    pub(crate) fn ua_one(&mut self, nexus: ItNexus, asc: Asc) {
        self.touch(nexus).push(asc);
    }

    /// Total unit attentions queued, for the lock-free fast-path hint.
    pub(crate) fn ua_count(&self) -> usize {
        self.nexus.values().map(UaQueue::len).sum()
    }

    /// Whether any reservation (SCSI-2 or persistent) is in effect.
    pub(crate) fn any_reservation(&self) -> bool {
        self.scsi2.is_some() || self.pr.reservation.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ua_queue_reset_supersedes_pending_and_dedups() {
        let mut q = UaQueue::default();
        q.push(Asc::MODE_PARAMETERS_CHANGED);
        q.push(Asc::BUS_DEVICE_RESET);
        q.push(Asc::POWER_ON_OCCURRED);
        q.push(Asc::MODE_PARAMETERS_CHANGED);
        q.push(Asc::MODE_PARAMETERS_CHANGED);
        assert_eq!(q.pop(), Some(Asc::POWER_ON_OCCURRED));
        assert_eq!(q.pop(), Some(Asc::MODE_PARAMETERS_CHANGED));
        assert_eq!(q.pop(), None);
        for i in 0..20 {
            q.push(Asc::new(0x2A, i));
        }
        assert_eq!(q.len(), MAX_QUEUED_UA);
    }
}
