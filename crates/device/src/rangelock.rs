//! LBA range locks that make COMPARE AND WRITE and ORWRITE atomic against writes.
//!
//! Writes hold a *shared* entry for their range while they write; COMPARE AND WRITE and
//! ORWRITE hold an *exclusive* entry for the read-compare-write. A shared entry waits
//! while an overlapping exclusive entry is held; an exclusive entry waits for
//! overlapping entries that are held only for a synchronous backend call.
//!
//! Entries taken by [`crate::LogicalUnit::prepare`] for the asynchronous path stay held
//! until `finish` (they are *long*): an exclusive request that overlaps one does not
//! wait — the thread that would complete it may be the one asking — and the command
//! ends with BUSY, which initiators retry.
//!
//! Lock: one mutex around the table, held only to add or remove an entry.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

#[derive(Debug)]
struct Held {
    id: u64,
    start: u64,
    end: u64,
    exclusive: bool,
    long: bool,
}

#[derive(Debug, Default)]
struct Table {
    held: Vec<Held>,
    next_id: u64,
}

/// The table of held ranges of one logical unit.
#[derive(Debug, Default)]
pub(crate) struct RangeLocks {
    table: Mutex<Table>,
    released: Condvar,
}

/// A held range; dropping it releases the range.
#[derive(Debug)]
pub(crate) struct RangeGuard {
    locks: Arc<RangeLocks>,
    id: u64,
}

impl Drop for RangeGuard {
    fn drop(&mut self) {
        let mut t = self.locks.table.lock();
        t.held.retain(|h| h.id != self.id);
        drop(t);
        self.locks.released.notify_all();
    }
}

/// An exclusive range could not be taken without waiting on asynchronous I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WouldWaitOnAsync;

fn overlaps(h: &Held, start: u64, end: u64) -> bool {
    h.start < end && start < h.end
}

impl RangeLocks {
    fn insert(t: &mut Table, start: u64, end: u64, exclusive: bool, long: bool) -> u64 {
        let id = t.next_id;
        t.next_id += 1;
        t.held.push(Held {
            id,
            start,
            end,
            exclusive,
            long,
        });
        id
    }

    /// Takes a shared entry for `[start, end)`, waiting while an overlapping exclusive
    /// entry is held. `long` marks an entry held across asynchronous I/O.
    pub(crate) fn shared(self: &Arc<Self>, start: u64, end: u64, long: bool) -> RangeGuard {
        let mut t = self.table.lock();
        while t
            .held
            .iter()
            .any(|h| h.exclusive && overlaps(h, start, end))
        {
            self.released.wait(&mut t);
        }
        let id = Self::insert(&mut t, start, end, false, long);
        RangeGuard {
            locks: self.clone(),
            id,
        }
    }

    /// Takes an exclusive entry for `[start, end)`.
    pub(crate) fn exclusive(
        self: &Arc<Self>,
        start: u64,
        end: u64,
    ) -> Result<RangeGuard, WouldWaitOnAsync> {
        let mut t = self.table.lock();
        loop {
            let mut wait = false;
            for h in t.held.iter().filter(|h| overlaps(h, start, end)) {
                if h.long {
                    return Err(WouldWaitOnAsync);
                }
                wait = true;
            }
            if !wait {
                break;
            }
            self.released.wait(&mut t);
        }
        let id = Self::insert(&mut t, start, end, true, false);
        Ok(RangeGuard {
            locks: self.clone(),
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn shared_waits_for_overlapping_exclusive_only() {
        let l = Arc::new(RangeLocks::default());
        let x = l.exclusive(10, 20).unwrap();
        let _disjoint = l.shared(20, 30, false); // no overlap: does not wait
        let done = Arc::new(AtomicBool::new(false));
        let (l2, d2) = (l.clone(), done.clone());
        let t = std::thread::spawn(move || {
            let _g = l2.shared(15, 16, false);
            d2.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !done.load(Ordering::SeqCst),
            "shared entered while exclusive held"
        );
        drop(x);
        t.join().unwrap();
        assert!(done.load(Ordering::SeqCst));
    }

    #[test]
    fn exclusive_refuses_to_wait_on_long_entries() {
        let l = Arc::new(RangeLocks::default());
        let g = l.shared(0, 8, true);
        assert_eq!(l.exclusive(4, 5).unwrap_err(), WouldWaitOnAsync);
        assert!(l.exclusive(8, 9).is_ok());
        drop(g);
        assert!(l.exclusive(4, 5).is_ok());
    }
}
