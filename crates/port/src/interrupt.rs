//! The adapter's interrupt line.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// What an interrupt line is wired to (the adapter).
pub(crate) trait InterruptTarget: Send + Sync {
    /// Note the interrupt and make sure the deferred stage runs; true if it ran on this thread.
    fn raise_interrupt(&self) -> bool;
    /// The same for message-signaled interrupt `message_id` (see [`InterruptLine::messages`]).
    fn raise_message(&self, message_id: u32) -> bool;
}

/// Most message-signaled interrupts (and concurrent channels) an adapter may have.
pub const MAX_MESSAGES: u32 = 64;

static NEXT_PROCESSOR: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static PROCESSOR: Cell<Option<u32>> = const { Cell::new(None) };
}

/// `KeGetCurrentProcessorNumber` of this user-space port: the calling thread's "processor", which
/// picks its concurrent channel (`channel = processor % channels`) and the message-signaled
/// interrupt it polls. A thread gets the next number (0, 1, 2, ...) the first time it asks,
/// unless it chose one with [`set_current_processor`].
pub fn current_processor() -> u32 {
    PROCESSOR.with(|p| match p.get() {
        Some(n) => n,
        None => {
            let n = NEXT_PROCESSOR.fetch_add(1, Ordering::Relaxed);
            p.set(Some(n));
            n
        }
    })
}

/// Binds the calling thread to "processor" `n` (as pinning a thread to a CPU does): a
/// submitting thread that wants its own concurrent channel picks a distinct number.
pub fn set_current_processor(n: u32) {
    PROCESSOR.with(|p| p.set(Some(n)));
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
    /// For a message line: its message id and the adapter's line (which holds the target).
    message: Option<(u32, InterruptLine)>,
    /// The adapter's message lines ([`InterruptLine::messages`]).
    messages: OnceLock<Box<[InterruptLine]>>,
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
                message: None,
                messages: OnceLock::new(),
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

    /// Message-signaled interrupts (MSI-X): `count` lines (at most [`MAX_MESSAGES`]) besides
    /// this one, message ids `0..count`. Raising message `m` makes the port call the
    /// miniport's `StorportMiniport::message_interrupt` with `m` (`HwMSInterruptRoutine`); on
    /// a SCSI Port adapter it is the plain interrupt. Created once: later calls return the
    /// same lines (whatever `count` they pass). For `find_adapter`.
    ///
    /// With message lines, [`take_interrupt`](Self::take_interrupt) on this line waits on the
    /// message of the calling thread's processor ([`current_processor`] `% count`): a thread
    /// polls the channel it submits on.
    pub fn messages(&self, count: u32) -> Vec<InterruptLine> {
        let lines = self.inner.messages.get_or_init(|| {
            (0..count.clamp(1, MAX_MESSAGES))
                .map(|id| InterruptLine {
                    inner: Arc::new(LineInner {
                        message: Some((id, self.clone())),
                        messages: OnceLock::new(),
                        target: OnceLock::new(),
                        wait: OnceLock::new(),
                        raised_before_connect: AtomicBool::new(false),
                        raised: AtomicU64::new(0),
                    }),
                })
                .collect()
        });
        lines.to_vec()
    }

    /// The message id of a message line (`None` for an adapter's line).
    pub fn message_id(&self) -> Option<u32> {
        self.inner.message.as_ref().map(|(id, _)| *id)
    }

    /// [`raise`](Self::raise); true if the deferred stage ran on this thread.
    fn raise_here(&self) -> bool {
        if let Some((id, parent)) = &self.inner.message {
            self.inner.raised.fetch_add(1, Ordering::Relaxed);
            return match parent.inner.target.get().and_then(Weak::upgrade) {
                Some(t) => t.raise_message(*id),
                // Not connected yet: deliver it as the adapter's interrupt when it is.
                None => parent.raise_here(),
            };
        }
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
        if let Some(lines) = self.inner.messages.get()
            && !lines.is_empty()
        {
            let own = &lines[current_processor() as usize % lines.len()];
            return own.take_interrupt(timeout);
        }
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
