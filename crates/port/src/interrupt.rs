//! The adapter's interrupt line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// What an interrupt line is wired to (the adapter).
pub(crate) trait InterruptTarget: Send + Sync {
    /// Note the interrupt and make sure the deferred stage runs.
    fn raise_interrupt(&self);
}

struct LineInner {
    target: OnceLock<Weak<dyn InterruptTarget>>,
    raised_before_connect: AtomicBool,
    raised: AtomicU64,
}

/// The interrupt line of one adapter: the miniport's "hardware" (an io_uring completion thread,
/// a simulated HBA, an eventfd reader) calls [`raise`](InterruptLine::raise) from any thread;
/// the port then calls the miniport's `interrupt` routine under the interrupt lock and runs the
/// deferred stage, on the raising thread if no other thread is already running it.
///
/// Obtained from [`FindAdapterContext::interrupt_line`](crate::FindAdapterContext::interrupt_line)
/// or [`PortContext::interrupt_line`](crate::PortContext::interrupt_line). Cheap to clone.
/// Raising never blocks; raises while the interrupt is already pending coalesce (level
/// triggered: the routine must look at all the work the "hardware" has queued).
#[derive(Clone)]
pub struct InterruptLine {
    inner: Arc<LineInner>,
}

impl std::fmt::Debug for InterruptLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterruptLine")
            .field("raised", &self.inner.raised.load(Ordering::Relaxed))
            .finish()
    }
}

impl InterruptLine {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(LineInner {
                target: OnceLock::new(),
                raised_before_connect: AtomicBool::new(false),
                raised: AtomicU64::new(0),
            }),
        }
    }

    /// Connects the line to its adapter (`IoConnectInterrupt`); a raise that happened before is
    /// delivered now.
    pub(crate) fn connect(&self, target: Weak<dyn InterruptTarget>) {
        let _ = self.inner.target.set(target);
        if self
            .inner
            .raised_before_connect
            .swap(false, Ordering::AcqRel)
        {
            self.raise_connected();
        }
    }

    /// Raises the interrupt. Safe from any thread, never blocks on the interrupt lock.
    pub fn raise(&self) {
        self.inner.raised.fetch_add(1, Ordering::Relaxed);
        if self.inner.target.get().is_none() {
            self.inner
                .raised_before_connect
                .store(true, Ordering::Release);
            if self.inner.target.get().is_none() {
                return;
            }
            self.inner
                .raised_before_connect
                .store(false, Ordering::Release);
        }
        self.raise_connected();
    }

    fn raise_connected(&self) {
        if let Some(t) = self.inner.target.get().and_then(Weak::upgrade) {
            t.raise_interrupt();
        }
    }

    /// How many times the line was raised (for statistics and tests).
    pub fn raised_count(&self) -> u64 {
        self.inner.raised.load(Ordering::Relaxed)
    }
}
