//! The end of a run of `start_io` calls (`Miniport::start_io_batch_done`, the doorbell),
//! batched submission (`Submitter::submit_batch`) and polled completion
//! (`InterruptLine::take_interrupt` with an `InterruptWait`), against a small "doorbell"
//! miniport: `start_io` only queues READs; `start_io_batch_done` either completes them (mode
//! `Doorbell`) or hands them to a simulated device that finishes them at once but raises no
//! interrupt by itself (mode `Device`) — only a thread waiting on the device takes it.

use std::sync::Arc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use port::testing::test_options;
use port::{
    Adapter, Address, CompletionSink, DataDirection, FindAdapterContext, FindAdapterResult,
    HwInitializationData, InterruptLine, InterruptWait, Miniport, PortConfiguration, PortContext,
    Srb, SrbFlags, SrbRef, SrbStatus, StorportMiniport, TakenInterrupt,
};

const LU0: Address = Address::new(0, 0, 0);
const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Start,
    BatchDone(usize),
    Interrupt(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Doorbell,
    Device,
}

/// What the test and the miniport share: the call log and the simulated device.
struct Hw {
    mode: Mode,
    /// Register an `InterruptWait` on the line.
    wait: bool,
    log: Mutex<Vec<Call>>,
    /// Requests the device finished and no interrupt routine has reaped yet.
    finished: Mutex<usize>,
    cv: Condvar,
}

impl Hw {
    fn new(mode: Mode, wait: bool) -> Arc<Hw> {
        Arc::new(Hw {
            mode,
            wait,
            log: Mutex::new(Vec::new()),
            finished: Mutex::new(0),
            cv: Condvar::new(),
        })
    }

    fn reads_log(&self) -> Vec<Call> {
        self.log.lock().clone()
    }
}

/// The device's wait: until it has finished something (`None` when nothing is there and
/// nothing will come: the test submits everything first).
struct DeviceWait(Arc<Hw>);

impl InterruptWait for DeviceWait {
    fn wait(&self, timeout: Duration) -> Option<bool> {
        let mut f = self.0.finished.lock();
        if *f == 0 {
            self.0.cv.wait_for(&mut f, timeout);
        }
        Some(*f > 0)
    }
}

struct DoorbellHba {
    hw: Arc<Hw>,
    queued: Vec<SrbRef>,
    on_device: Vec<SrbRef>,
}

fn complete(port: &mut PortContext<'_, DoorbellHba>, r: SrbRef, status: SrbStatus) {
    if let Some(srb) = port.srb_mut(&r) {
        srb.srb_status = status;
    }
    port.request_complete(r);
}

impl Miniport for DoorbellHba {
    type HwContext = Option<Arc<Hw>>;
    type LuExtension = ();
    type SrbExtension = ();

    fn driver_entry() -> HwInitializationData {
        HwInitializationData {
            tagged_queuing: true,
            auto_request_sense: true,
            multiple_request_per_lu: true,
            ..HwInitializationData::default()
        }
    }

    fn find_adapter(
        hw: &mut Option<Arc<Hw>>,
        ctx: &mut FindAdapterContext,
        config: &mut PortConfiguration,
    ) -> FindAdapterResult<Self> {
        let Some(hw) = hw.take() else {
            return FindAdapterResult::NotFound;
        };
        config.number_of_buses = 1;
        config.maximum_number_of_targets = 1;
        config.maximum_number_of_logical_units = 1;
        if hw.wait {
            ctx.interrupt_line()
                .set_wait(Arc::new(DeviceWait(hw.clone())));
        }
        FindAdapterResult::Found(DoorbellHba {
            hw,
            queued: Vec::new(),
            on_device: Vec::new(),
        })
    }

    fn initialize(&mut self, _port: &mut PortContext<'_, Self>) -> bool {
        true
    }

    fn start_io(&mut self, port: &mut PortContext<'_, Self>, r: SrbRef) -> bool {
        port.next_lu_request(LU0);
        let Some(srb) = port.srb_mut(&r) else {
            return false;
        };
        if srb.address != LU0 {
            complete(port, r, SrbStatus::SELECTION_TIMEOUT);
            return true;
        }
        match srb.cdb.opcode() {
            0x12 => {
                let mut data = [0u8; 36];
                data[2] = 0x02;
                data[3] = 0x02;
                data[4] = 31;
                data[7] = 0x02;
                data[8..16].copy_from_slice(b"SCSIPORT");
                data[16..32].copy_from_slice(b"DOORBELL        ");
                let n = data.len().min(srb.data_slice().len());
                srb.data[..n].copy_from_slice(&data[..n]);
                srb.data_transfer_length = n as u32;
                complete(port, r, SrbStatus::SUCCESS);
            }
            0x28 => {
                self.hw.log.lock().push(Call::Start);
                self.queued.push(r);
            }
            _ => complete(port, r, SrbStatus::SUCCESS),
        }
        true
    }

    fn start_io_batch_done(&mut self, port: &mut PortContext<'_, Self>) {
        if self.queued.is_empty() {
            return;
        }
        self.hw.log.lock().push(Call::BatchDone(self.queued.len()));
        match self.hw.mode {
            Mode::Doorbell => {
                for r in self.queued.drain(..) {
                    complete(port, r, SrbStatus::SUCCESS);
                }
            }
            Mode::Device => {
                let n = self.queued.len();
                self.on_device.append(&mut self.queued);
                *self.hw.finished.lock() += n;
                self.hw.cv.notify_all();
            }
        }
    }

    fn interrupt(&mut self, port: &mut PortContext<'_, Self>) -> bool {
        let n = std::mem::take(&mut *self.hw.finished.lock());
        self.hw.log.lock().push(Call::Interrupt(n));
        for r in self.on_device.drain(..n.min(self.on_device.len())) {
            complete(port, r, SrbStatus::SUCCESS);
        }
        n > 0
    }

    fn reset_bus(&mut self, port: &mut PortContext<'_, Self>, _path_id: u8) -> bool {
        for r in self.queued.drain(..).chain(self.on_device.drain(..)) {
            complete(port, r, SrbStatus::BUS_RESET);
        }
        *self.hw.finished.lock() = 0;
        port.next_request();
        true
    }
}

impl StorportMiniport for DoorbellHba {
    type Shared = ();
    fn shared(&self) -> Arc<()> {
        Arc::new(())
    }
}

/// Collects completions with the thread each was delivered on.
#[derive(Default)]
struct Sink {
    done: Mutex<Vec<(Srb, ThreadId)>>,
    cv: Condvar,
}

impl CompletionSink for Sink {
    fn complete(&self, srb: Srb) {
        self.done.lock().push((srb, std::thread::current().id()));
        self.cv.notify_all();
    }
}

impl Sink {
    fn wait(&self, n: usize) -> Vec<(Srb, ThreadId)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut d = self.done.lock();
        while d.len() < n {
            assert!(
                !self.cv.wait_until(&mut d, deadline).timed_out(),
                "only {} of {n} completed",
                d.len()
            );
        }
        d.clone()
    }
}

fn reads(n: usize) -> Vec<Srb> {
    (0..n)
        .map(|i| {
            let mut srb = Srb::execute_scsi(LU0, &READ10).unwrap().with_data(
                vec![0; 512],
                512,
                DataDirection::In,
            );
            srb.flags.insert(SrbFlags::QUEUE_ACTION_ENABLE);
            srb.original_request = i as u64;
            srb
        })
        .collect()
}

fn adapter(hw: &Arc<Hw>, storport: bool) -> Adapter {
    let ctx = Some(hw.clone());
    let mut adapters = if storport {
        port::initialize_storport::<DoorbellHba>(ctx, test_options())
    } else {
        port::initialize::<DoorbellHba>(ctx, test_options())
    }
    .expect("adapter found");
    assert_eq!(adapters[0].logical_units().len(), 1, "the scan finds LU 0");
    adapters.remove(0)
}

#[test]
fn a_batch_starts_in_one_pass_and_ends_with_one_doorbell() {
    for storport in [false, true] {
        let hw = Hw::new(Mode::Doorbell, false);
        let adapter = adapter(&hw, storport);
        let sink = Arc::new(Sink::default());
        let sub = adapter.submitter(sink.clone());
        let mut batch = reads(8);
        sub.submit_batch(&mut batch);
        assert!(batch.is_empty(), "submit_batch drains the vector");
        let done = sink.wait(8);
        assert!(done.iter().all(|(s, _)| s.srb_status == SrbStatus::SUCCESS));
        let mut want = vec![Call::Start; 8];
        want.push(Call::BatchDone(8));
        assert_eq!(hw.reads_log(), want, "storport: {storport}");
        // One at a time: each start_io is closed by its own doorbell.
        for srb in reads(2) {
            sub.submit(srb);
            sink.wait(done.len() + 1);
        }
        let log = hw.reads_log();
        assert_eq!(
            &log[9..],
            &[
                Call::Start,
                Call::BatchDone(1),
                Call::Start,
                Call::BatchDone(1)
            ]
        );
        adapter.shutdown().unwrap();
    }
}

#[test]
fn a_polling_thread_takes_the_interrupt_and_gets_its_completions_itself() {
    let hw = Hw::new(Mode::Device, true);
    let adapter = adapter(&hw, true);
    let sink = Arc::new(Sink::default());
    let sub = adapter.submitter(sink.clone());
    let line = adapter.interrupt_line();
    sub.submit_batch(&mut reads(4));
    // The device finished them, but raises nothing: nothing completes by itself.
    std::thread::sleep(Duration::from_millis(50));
    assert!(sink.done.lock().is_empty());
    assert_eq!(hw.reads_log().last(), Some(&Call::BatchDone(4)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.done.lock().len() < 4 {
        assert!(Instant::now() < deadline, "polling did not complete them");
        let taken = line.take_interrupt(Duration::from_millis(10));
        assert_ne!(
            taken,
            TakenInterrupt::Unavailable,
            "the device offers a wait"
        );
        assert_ne!(
            taken,
            TakenInterrupt::Elsewhere,
            "no other thread runs the DPC"
        );
    }
    let me = std::thread::current().id();
    let done = sink.wait(4);
    assert!(
        done.iter()
            .all(|(s, t)| s.srb_status == SrbStatus::SUCCESS && *t == me)
    );
    assert!(hw.reads_log().contains(&Call::Interrupt(4)));
    assert_eq!(line.raised_count(), 1);
    adapter.shutdown().unwrap();
}

#[test]
fn take_interrupt_without_a_wait_returns_at_once() {
    let hw = Hw::new(Mode::Doorbell, false);
    let adapter = adapter(&hw, false);
    let line: InterruptLine = adapter.interrupt_line();
    let t = Instant::now();
    assert_eq!(
        line.take_interrupt(Duration::from_secs(5)),
        TakenInterrupt::Unavailable
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(line.raised_count(), 0);
    adapter.shutdown().unwrap();
}
