//! The adapter's interrupt line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// What an interrupt line is wired to (the adapter).
pub(crate) trait InterruptTarget: Send + Sync {
    /// Note the interrupt and make sure the deferred stage runs; true if it ran on this thread.
    fn raise_interrupt(&self) -> bool;
}

/// What a miniport's "hardware" offers a thread that has nothing to do but wait for the
/// adapter's completions: a way to wait for the hardware itself (an io_uring completion
/// queue, a device's doorbell), so that thread can take the interrupt
/// ([`InterruptLine::take_interrupt`]) instead of sleeping until another thread — the one the
/// hardware normally interrupts — has run the interrupt routine and the deferred stage and
/// woken it. Registered with [`InterruptLine::set_wait`].
pub trait InterruptWait: Send + Sync {
    /// Blocks the calling thread (no adapter lock held) for at most `timeout` until the
    /// hardware has, or may have, work for the interrupt routine. Returns `None` at once when
    /// waiting makes no sense now (nothing in flight); otherwise `Some(raise)`: whether the
    /// line should be raised on this thread.
    fn wait(&self, timeout: Duration) -> Option<bool>;
}

/// What [`InterruptLine::take_interrupt`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakenInterrupt {
    /// No wait: the hardware offers none, or has nothing in flight. Sleep another way.
    Unavailable,
    /// Waited the whole timeout; the hardware had nothing.
    Idle,
    /// The hardware had work: the line was raised and the interrupt routine and the deferred
    /// stage ran on this thread (whatever they completed for this thread's sink is there).
    Here,
    /// The hardware had work and the line was raised, but another thread is running the
    /// deferred stage: it delivers the completions and wakes the sinks. Polling again at once
    /// would only find the work that thread is about to reap.
    Elsewhere,
}

struct LineInner {
    target: OnceLock<Weak<dyn InterruptTarget>>,
    wait: OnceLock<Arc<dyn InterruptWait>>,
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
                wait: OnceLock::new(),
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
        self.raise_here();
    }

    /// [`raise`](Self::raise); true if the deferred stage ran on this thread.
    fn raise_here(&self) -> bool {
        self.inner.raised.fetch_add(1, Ordering::Relaxed);
        if self.inner.target.get().is_none() {
            self.inner
                .raised_before_connect
                .store(true, Ordering::Release);
            if self.inner.target.get().is_none() {
                return false;
            }
            self.inner
                .raised_before_connect
                .store(false, Ordering::Release);
        }
        self.raise_connected()
    }

    fn raise_connected(&self) -> bool {
        match self.inner.target.get().and_then(Weak::upgrade) {
            Some(t) => t.raise_interrupt(),
            None => false,
        }
    }

    /// Registers the hardware's wait (once; later calls are ignored). For the miniport's
    /// hardware side, at `find_adapter` or `initialize`.
    pub fn set_wait(&self, wait: Arc<dyn InterruptWait>) {
        let _ = self.inner.wait.set(wait);
    }

    /// Polled completion: a thread that would otherwise sleep until its completions arrive
    /// waits for the adapter's hardware (at most `timeout`) and, when the hardware has work,
    /// raises the line itself — so the interrupt routine and the deferred stage run on this
    /// thread (if no other thread is running them) and its completions reach its sink here,
    /// without a thread hop, as fio reaps its own io_uring.
    ///
    /// Returns at once with [`TakenInterrupt::Unavailable`] when the hardware offers no wait
    /// ([`set_wait`](Self::set_wait)) or has nothing in flight: the caller then sleeps its own
    /// way (its sink wakes it). Another thread may deliver this thread's completions while it
    /// waits; keep `timeout` short (a millisecond or so) if nothing else would end the wait.
    pub fn take_interrupt(&self, timeout: Duration) -> TakenInterrupt {
        let Some(wait) = self.inner.wait.get() else {
            return TakenInterrupt::Unavailable;
        };
        match wait.wait(timeout) {
            None => TakenInterrupt::Unavailable,
            Some(false) => TakenInterrupt::Idle,
            Some(true) if self.raise_here() => TakenInterrupt::Here,
            Some(true) => TakenInterrupt::Elsewhere,
        }
    }

    /// How many times the line was raised (for statistics and tests).
    pub fn raised_count(&self) -> u64 {
        self.inner.raised.load(Ordering::Relaxed)
    }
}
