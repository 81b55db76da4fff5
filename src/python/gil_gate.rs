//! Admission to Python for a daemon's request threads when the GIL is contended.
//!
//! Every request thread that waits to take the GIL at the start of its request blocks in
//! `PyGILState_Ensure`; each one queued there costs context switches at every hand-off of
//! the GIL (docs/PERFORMANCE.md, "Thread count"). With many threads and CPU-bound requests,
//! that cost grows with the number of threads. So an idle worker thread, before it looks
//! for new work, waits here while [`GilGate::limit`] request threads already wait for the
//! GIL: the new request then waits in its socket instead, at no cost, and is taken as soon
//! as the queue for the GIL is short again.
//!
//! Only threads *waiting* for the GIL count. A request that runs Python holds it; one that
//! waits on I/O (a database, `time.sleep`) has released it. Neither counts, so an I/O-bound
//! application still uses every thread (throughput = threads / wait time).
//!
//! A worker whose request has finished its Python work will be back for new work in a
//! moment (it only sends the response's end and re-arms its connection): it counts as
//! *returning* from then until it next calls [`GilGate::admit`], and a place in the queue
//! that frees up meanwhile is left to it rather than to a parked thread. So with CPU-bound
//! requests the same few running threads take turns, and the parked ones are not woken
//! only to park again.
//!
//! Likewise while a worker waits for new work ([`GilGate::looking`]): the next request
//! goes to it, so no parked thread is woken to wait beside it.
//!
//! The queue alone does not bound how many requests are *inside* Python at once: a request
//! that has had the GIL once releases and re-takes it mid-request (its own file or socket
//! I/O, `wsgi.input` and `write()`, the interpreter's forced switches every 5 ms), and those
//! re-takes do not count as queued. So with CPU-bound requests, many threads end up inside,
//! taking turns at the GIL (docs/PERFORMANCE.md, "Requests inside Python"). A worker
//! therefore also waits while [`GilGate::inside_cap`] requests are inside *and the GIL is
//! busy*: over the last [`SAMPLE_EVERY`] the process used between [`BUSY_CORES`] of a core
//! (the GIL lets its threads run Python on one core at a time, so a process near one core
//! is bound by it; well above one, its threads evidently run at once: interpreters with
//! their own GIL, or work that releases it). Requests inside that wait on I/O with the
//! GIL released use no CPU: the signal lapses, and they hold no place (one parked thread,
//! the watcher, re-checks every [`BUSY_WINDOW`], and each thread let go lets the next go).
//! Nor does a request inside for longer than [`YOUNG`] (one stuck on I/O while others keep
//! the GIL busy, or a long one, for which turns at the GIL cost little), nor one waiting
//! for its body ([`waiting_for_body`]: uploads keep a process busy copying, not in Python).
//!
//! How long a request's first take of the GIL waited says little: on a page that is mostly
//! Python (the Webware page) most first takes are quick (the holder is between two of its
//! own I/O calls), and on one that mostly sleeps as many are slow (a wake-up delayed by
//! the OS); docs/PERFORMANCE.md, "The busy signal", has the measurements.
//!
//! Pure logic over std: no Python needed (unit-tested with plain threads below).

use std::cell::Cell;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Request threads that may wait for the GIL before idle threads stop taking new work: 2
/// keeps a successor queued behind the next holder, so a released GIL always has a taker,
/// while the queue (and its context switches) stays short. Independent of cores and
/// `threads=` (docs/PERFORMANCE.md, "Thread count (issue 36)", has the measurements).
pub const DEFAULT_LIMIT: usize = 2;

/// Requests inside Python (from their first take of the GIL to the end of their Python
/// work) beyond which, while the GIL is busy, idle threads stop taking new work: one
/// holding the GIL and one ready to take it when the holder waits on I/O; more only take
/// turns (docs/PERFORMANCE.md, "The busy signal").
pub const DEFAULT_INSIDE: usize = 2;

/// The process's CPU use, in cores over one sample, that means its GIL is busy: from the
/// first (near one core: the threads take turns at one GIL) up to the second (beyond it
/// they run at once).
pub const BUSY_CORES: (f64, f64) = (0.6, 1.5);

/// How often the process's CPU time is read (by a request taking the GIL for the first
/// time, or by the watcher): one clock read per this, whatever the request rate.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// How long a busy sample counts as "the GIL is busy" if no later sample says otherwise, and
/// how often the watcher (one parked thread) re-checks: requests inside that all went to
/// wait on I/O stop holding their places within about this.
pub const BUSY_WINDOW: Duration = Duration::from_millis(20);

/// Only requests inside for less than this hold a place under the cap.
pub const YOUNG: Duration = Duration::from_millis(100);

/// Threads whose request's entry time is kept (per gate); a request on a thread beyond
/// these always counts as young.
const SLOTS: usize = 1024;

/// A parked thread looks at the count again after this long even if not woken. Each drop
/// of the count below the limit wakes one parked thread (one place freed, one thread
/// goes; its request, once it enters Python, wakes the next); this lets the others go
/// too once the queue stays short, e.g. when no new work arrives.
const RECHECK: Duration = Duration::from_millis(200);

/// One per process, shared by the request threads (which count themselves while they wait
/// for the GIL) and the dispatcher's idle threads (which [`admit`](GilGate::admit) before
/// they take new work).
pub struct GilGate {
    limit: usize,
    /// Request threads between [`GilGate::queue`] and getting the GIL.
    queued: AtomicUsize,
    /// Threads inside `admit`'s wait (so a leaving thread knows whether to wake one).
    parked: AtomicUsize,
    /// Workers between [`GilGate::request_done`] and their next `admit`: each will take a
    /// place in the queue itself, so a freed place is not handed to a parked thread.
    returning: AtomicUsize,
    /// Workers waiting for new work ([`GilGate::looking`]): the next request goes to one of
    /// them, so a freed place is not handed to a parked thread either.
    looking: AtomicUsize,
    /// Requests between their first take of the GIL and the end of their Python work.
    inside: AtomicUsize,
    inside_cap: usize,
    /// Until when (ns since `epoch`) the GIL counts as busy: a busy sample's time plus
    /// `busy_window`.
    busy_until: AtomicU64,
    /// When the process's CPU time was last read (ns since `epoch`, 0: never), and what it
    /// was (ns).
    sampled_at: AtomicU64,
    cpu_at_sample: AtomicU64,
    /// The process's CPU time (ns); a stand-in in the unit tests.
    process_cpu: CpuClock,
    epoch: Instant,
    busy_window: Duration,
    /// A parked thread re-checks every `busy_window` (the others every `recheck`).
    watcher: AtomicBool,
    /// When (ns since `epoch`, 0: none) the request of the thread with that slot
    /// ([`SLOT`]) entered; threads beyond `SLOTS` count in `unslotted`.
    entered: Box<[AtomicU64]>,
    unslotted: AtomicUsize,
    young: Duration,
    /// Set once the process stops taking work: nobody parks any more.
    closed: AtomicBool,
    recheck: Duration,
    /// Notifications sent by `leave` (tests check who gets woken).
    #[cfg(test)]
    notified: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

/// Reads a process's CPU time in ns.
type CpuClock = Box<dyn Fn() -> u64 + Send + Sync>;

/// This process's CPU time (all threads), in ns; 0 if it cannot be read (the GIL then never
/// counts as busy).
fn process_cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(|t| {
            u64::try_from(t.tv_sec())
                .unwrap_or(0)
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::try_from(t.tv_nsec()).unwrap_or(0))
        })
        .unwrap_or(0)
}

impl Default for GilGate {
    fn default() -> GilGate {
        GilGate::new(DEFAULT_LIMIT)
    }
}

impl GilGate {
    /// `limit` is clamped to at least 1: with 0, no thread would ever be admitted.
    pub fn new(limit: usize) -> GilGate {
        GilGate::with_recheck(limit, RECHECK)
    }

    fn with_recheck(limit: usize, recheck: Duration) -> GilGate {
        GilGate::with_params(
            limit,
            DEFAULT_INSIDE,
            recheck,
            Box::new(process_cpu_ns),
            BUSY_WINDOW,
        )
    }

    fn with_params(
        limit: usize,
        inside_cap: usize,
        recheck: Duration,
        process_cpu: CpuClock,
        busy_window: Duration,
    ) -> GilGate {
        GilGate {
            recheck,
            inside: AtomicUsize::new(0),
            inside_cap: inside_cap.max(1),
            busy_until: AtomicU64::new(0),
            sampled_at: AtomicU64::new(0),
            cpu_at_sample: AtomicU64::new(0),
            process_cpu,
            epoch: Instant::now(),
            busy_window,
            watcher: AtomicBool::new(false),
            entered: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            unslotted: AtomicUsize::new(0),
            young: YOUNG,
            #[cfg(test)]
            notified: AtomicUsize::new(0),
            limit: limit.max(1),
            queued: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            returning: AtomicUsize::new(0),
            looking: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn inside_cap(&self) -> usize {
        self.inside_cap
    }

    /// A request thread is about to take the GIL: it counts as queued until the returned
    /// guard is dropped or [entered](Queued::enter) (do that as the first thing once
    /// attached). Dropped on any path, including a panic, so the count cannot leak and leave
    /// threads parked.
    pub fn queue(&self) -> Queued<'_> {
        self.queued.fetch_add(1, SeqCst);
        Queued { gate: self }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The last sample found the process near one core, within the last `busy_window`.
    fn busy(&self) -> bool {
        self.nanos(Instant::now()) < self.busy_until.load(SeqCst)
    }

    /// Reads the process's CPU time if the last read is [`SAMPLE_EVERY`] old (one thread
    /// does, the others return at once) and sets or clears the busy signal from its use
    /// since then.
    fn sample(&self, now: Instant) {
        let at = self.nanos(now).max(1);
        let last = self.sampled_at.load(SeqCst);
        let every = u64::try_from(SAMPLE_EVERY.as_nanos()).unwrap_or(u64::MAX);
        if (last != 0 && at.saturating_sub(last) < every)
            || self
                .sampled_at
                .compare_exchange(last, at, SeqCst, SeqCst)
                .is_err()
        {
            return;
        }
        let cpu = (self.process_cpu)();
        let before = self.cpu_at_sample.swap(cpu, SeqCst);
        if last == 0 || cpu == 0 {
            return;
        }
        #[allow(clippy::cast_precision_loss)] // ns over seconds: f64 is exact enough
        let cores = cpu.saturating_sub(before) as f64 / (at - last) as f64;
        let until = if (BUSY_CORES.0..=BUSY_CORES.1).contains(&cores) {
            let window = u64::try_from(self.busy_window.as_nanos()).unwrap_or(u64::MAX);
            at.saturating_add(window)
        } else {
            0
        };
        self.busy_until.store(until, SeqCst);
    }

    /// Enough requests inside while the GIL is busy: one more would only take turns.
    /// Requests inside for longer than `young` do not count.
    fn full_inside(&self, coming: usize) -> bool {
        self.inside.load(SeqCst) + coming >= self.inside_cap
            && self.busy()
            && self.young_inside() + coming >= self.inside_cap
    }

    fn young_inside(&self) -> usize {
        let now = self.nanos(Instant::now());
        let young = u64::try_from(self.young.as_nanos()).unwrap_or(u64::MAX);
        let used = NEXT_SLOT.load(SeqCst).min(SLOTS);
        let slotted = self.entered[..used]
            .iter()
            .zip(&WAITING_FOR_BODY)
            .filter(|(entered, waiting)| {
                let at = entered.load(SeqCst);
                at != 0 && now.saturating_sub(at) < young && !waiting.load(SeqCst)
            })
            .count();
        slotted + self.unslotted.load(SeqCst)
    }

    fn contended(&self) -> bool {
        !self.closed.load(SeqCst)
            && (self.queued.load(SeqCst) >= self.limit
                // Workers waiting for work are about to bring a request inside.
                || self.full_inside(self.looking.load(SeqCst)))
    }

    /// A place is free that no worker returning or waiting for work (nor `taking` more)
    /// will take: a parked thread may go.
    fn room(&self, taking: usize) -> bool {
        let coming = self.returning.load(SeqCst) + self.looking.load(SeqCst) + taking;
        self.queued.load(SeqCst) + coming < self.limit && !self.full_inside(coming)
    }

    /// Called by an idle worker before it looks for new work: returns at once unless
    /// `limit` request threads wait for the GIL; then waits until fewer do or the gate is
    /// closed. True if it had to wait.
    ///
    /// A worker that counted as returning ([`GilGate::request_done`]) stops counting here.
    ///
    /// No lost wake-up: a parked thread registers in `parked` and reads `queued` under the
    /// lock; a leaving request thread lowers `queued` before it reads `parked`, then takes and
    /// releases the lock before it notifies (all SeqCst). Either the parker sees the lower
    /// count, or the leaver sees the parker and its notification cannot come before the
    /// parker waits.
    pub fn admit(&self) -> bool {
        WORKER_OF.set(self.id());
        if RETURNING_TO.replace(0) == self.id() {
            // The place `leave` left to this thread is taken now (or, if the queue is full
            // again, none was needed).
            self.returning.fetch_sub(1, SeqCst);
        }
        if !self.contended() {
            return false;
        }
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.parked.fetch_add(1, SeqCst);
        let mut watching = false;
        // Held by the cap of requests inside (not only by the queue for the GIL).
        let mut capped = false;
        loop {
            if watching {
                // Nobody else may be taking the GIL to read the clock: the watcher's own
                // reading decides whether it goes.
                self.sample(Instant::now());
            }
            if !self.contended() {
                break;
            }
            capped = capped || self.queued.load(SeqCst) < self.limit;
            // One parked thread watches for the busy signal to lapse (requests inside that
            // all wait on I/O); the others are woken by freed places or by the watcher.
            watching = watching || !self.watcher.swap(true, SeqCst);
            let wait = if watching {
                self.busy_window.min(self.young).min(self.recheck)
            } else {
                self.recheck
            };
            guard = self
                .wake
                .wait_timeout(guard, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        self.parked.fetch_sub(1, SeqCst);
        drop(guard);
        if watching {
            self.watcher.store(false, SeqCst);
        }
        // A thread held by the cap lets the next parked thread go too if there is room beyond
        // this one (the busy signal lapsed, or the requests inside grew old): no event wakes
        // them for that. (A place freed in the queue wakes one thread each.) Otherwise the
        // next parked thread to wake up takes over watching.
        if capped && self.room(1) {
            self.wake_one();
        }
        true
    }

    /// The process stops taking work (stop, drain, replacement): parked threads return
    /// at once, and `admit` never waits again, so a drain is not held up here.
    pub fn close(&self) {
        self.closed.store(true, SeqCst);
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.wake.notify_all();
    }

    /// The calling thread's request has done its Python work (call it still attached, so
    /// no queued thread can take the GIL before this counts). Only a thread that has been
    /// through [`GilGate::admit`] (a daemon's worker) counts as returning: embedded mode's
    /// threads never come back to the gate.
    ///
    /// Ends the request's time inside (`inside`); a worker counts as returning before it
    /// stops counting inside, so the place it frees is left to it.
    pub fn request_done(&self, inside: Inside<'_>) {
        if WORKER_OF.get() == self.id() && RETURNING_TO.replace(self.id()) != self.id() {
            self.returning.fetch_add(1, SeqCst);
        }
        drop(inside);
    }

    /// An admitted worker waits for new work (in `epoll_wait`) until the returned guard is
    /// dropped (drop it once it has a connection, before its request queues for the GIL).
    pub fn looking(&self) -> Looking<'_> {
        self.looking.fetch_add(1, SeqCst);
        Looking { gate: self }
    }

    fn id(&self) -> usize {
        self as *const GilGate as usize
    }

    fn leave(&self) {
        self.queued.fetch_sub(1, SeqCst);
        // One place freed: one thread goes, unless a worker that waits for work or is on
        // its way back to `admit` will take it, or enough requests are inside while the GIL
        // is busy. If another request queues first, the woken thread finds the gate
        // contended again and waits on.
        if self.room(0) {
            self.wake_one();
        }
    }

    fn exit(&self) {
        self.inside.fetch_sub(1, SeqCst);
        if self.room(0) {
            self.wake_one();
        }
    }

    fn wake_one(&self) {
        if self.parked.load(SeqCst) > 0 {
            // Passing through the lock is what orders this with a parker between its check
            // and its wait; notifying after releasing it spares the woken thread from
            // blocking at once on the lock this thread still holds.
            drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
            self.wake.notify_one();
            #[cfg(test)]
            self.notified.fetch_add(1, SeqCst);
        }
    }

    /// Threads waiting in `admit` now.
    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        self.parked.load(SeqCst)
    }
}

thread_local! {
    /// The gate (its address) this thread has been admitted by: it is one of its workers.
    static WORKER_OF: Cell<usize> = const { Cell::new(0) };
    /// The gate this thread counts as returning to (0: none).
    static RETURNING_TO: Cell<usize> = const { Cell::new(0) };
    /// This thread's index into a gate's `entered` (one thread has one request at a time).
    static SLOT: usize = NEXT_SLOT.fetch_add(1, SeqCst);
}

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// Per thread slot: the thread's request waits for its body, GIL released. One array for
/// every gate: slots are numbered per process.
static WAITING_FOR_BODY: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];

/// The calling thread's request waits for the next part of its body (a round trip to Apache,
/// which reads it from the client) until the returned guard drops: meanwhile it holds no
/// place under the cap of requests inside. Uploads are not bound by the GIL, though the
/// process may be near one core with their copying. (Only this wait: a request's writes
/// rarely block, and a request that wrote would otherwise let one more in each time.)
pub fn waiting_for_body() -> WaitingForBody {
    let slot = SLOT.with(|s| *s);
    if let Some(flag) = WAITING_FOR_BODY.get(slot) {
        flag.store(true, SeqCst);
    }
    WaitingForBody { slot }
}

/// See [`waiting_for_body`].
#[must_use = "the request counts as waiting for its body until this is dropped"]
pub struct WaitingForBody {
    slot: usize,
}

impl Drop for WaitingForBody {
    fn drop(&mut self) {
        if let Some(flag) = WAITING_FOR_BODY.get(self.slot) {
            flag.store(false, SeqCst);
        }
    }
}

/// A worker waiting for new work. Dropping it wakes nobody: the worker either queues for
/// the GIL with the request it found (taking the place left to it) or comes back to
/// [`GilGate::admit`].
#[must_use = "the worker counts as waiting for work until this is dropped"]
pub struct Looking<'a> {
    gate: &'a GilGate,
}

impl Drop for Looking<'_> {
    fn drop(&mut self) {
        self.gate.looking.fetch_sub(1, SeqCst);
    }
}

/// A request thread's place in the queue for the GIL; leaving it (drop) may admit a parked
/// thread.
#[must_use = "the thread counts as waiting for the GIL until this is dropped"]
pub struct Queued<'a> {
    gate: &'a GilGate,
}

impl<'a> Queued<'a> {
    /// The thread has the GIL: it leaves the queue and counts as inside until the returned
    /// guard is dropped (or given to [`GilGate::request_done`]). A daemon's worker reads
    /// the process's CPU time here when the last read is [`SAMPLE_EVERY`] old (embedded
    /// mode's threads never wait at the gate, so they leave the clock alone).
    pub fn enter(self) -> Inside<'a> {
        let gate = self.gate;
        let now = Instant::now();
        if WORKER_OF.get() == gate.id() {
            gate.sample(now);
        }
        let slot = SLOT.with(|s| *s);
        match gate.entered.get(slot) {
            // At least 1: 0 means no request.
            Some(at) => at.store(gate.nanos(now).max(1), SeqCst),
            None => {
                gate.unslotted.fetch_add(1, SeqCst);
            }
        }
        gate.inside.fetch_add(1, SeqCst);
        drop(self);
        Inside { gate, slot }
    }
}

/// A request inside Python (between its first take of the GIL and the end of its Python
/// work); dropping it may admit a parked thread.
#[must_use = "the request counts as inside until this is dropped"]
pub struct Inside<'a> {
    gate: &'a GilGate,
    slot: usize,
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        match self.gate.entered.get(self.slot) {
            Some(at) => at.store(0, SeqCst),
            None => {
                self.gate.unslotted.fetch_sub(1, SeqCst);
            }
        }
        self.gate.exit();
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.gate.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Instant;

    /// Well above any scheduling delay, well below the test's patience.
    const PATIENCE: Duration = Duration::from_secs(5);
    /// So long that a thread only leaves `admit` when woken: a lost wake-up shows as a
    /// thread still parked at PATIENCE.
    const NEVER: Duration = Duration::from_secs(3600);

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Starts `n` threads that call `admit` once; each sends its index when admitted.
    fn parkers(
        gate: &Arc<GilGate>,
        n: usize,
    ) -> (mpsc::Receiver<usize>, Vec<thread::JoinHandle<bool>>) {
        let (tx, rx) = mpsc::channel();
        let handles = (0..n)
            .map(|i| {
                let (gate, tx) = (Arc::clone(gate), tx.clone());
                thread::spawn(move || {
                    let waited = gate.admit();
                    tx.send(i).unwrap();
                    waited
                })
            })
            .collect();
        (rx, handles)
    }

    #[test]
    fn an_uncontended_gate_admits_at_once() {
        let gate = GilGate::with_recheck(2, NEVER);
        assert!(!gate.admit());
        let _one = gate.queue();
        assert!(!gate.admit(), "one queued thread is below the limit of 2");
    }

    #[test]
    fn a_limit_of_zero_is_one() {
        let gate = GilGate::new(0);
        assert_eq!(gate.limit(), 1);
        assert!(!gate.admit());
    }

    #[test]
    fn each_drop_below_the_limit_wakes_one_parked_thread() {
        let gate = Arc::new(GilGate::with_recheck(2, NEVER));
        let (a, b) = (gate.queue(), gate.queue());
        let (admitted, handles) = parkers(&gate, 3);
        wait_until("all three park", || gate.parked() == 3);
        assert!(
            admitted.try_recv().is_err(),
            "admitted while two wait for the GIL"
        );
        drop(a);
        admitted
            .recv_timeout(PATIENCE)
            .expect("a freed place admits a thread");
        wait_until("the admitted thread leaves", || gate.parked() == 2);
        drop(b);
        admitted
            .recv_timeout(PATIENCE)
            .expect("the next freed place admits another");
        wait_until("the second admitted thread leaves", || gate.parked() == 1);
        // The third is let go by its re-check (NEVER here) or by close.
        gate.close();
        admitted
            .recv_timeout(PATIENCE)
            .expect("close admits the last");
        for h in handles {
            assert!(h.join().unwrap(), "each of them had to wait");
        }
        assert_eq!(gate.parked(), 0);
    }

    /// A worker that finished its request's Python work (`request_done`) takes the next
    /// freed place itself when it comes back to `admit`: the parked thread is not woken for
    /// it (it would only park again), and is woken for the next place that nobody returning
    /// will take.
    #[test]
    fn a_freed_place_is_left_to_a_returning_worker() {
        let gate = Arc::new(GilGate::with_recheck(2, NEVER));
        let (to_worker, worker_rx) = mpsc::channel::<()>();
        let (worker_tx, from_worker) = mpsc::channel::<bool>();
        let worker = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || {
                assert!(!gate.admit());
                let inside = gate.queue().enter(); // got the GIL
                gate.request_done(inside); // its Python work is done
                worker_tx.send(true).unwrap();
                worker_rx.recv().unwrap();
                worker_tx.send(gate.admit()).unwrap(); // back for new work
            })
        };
        assert!(from_worker.recv_timeout(PATIENCE).unwrap());
        let (a, b) = (gate.queue(), gate.queue());
        let (admitted, handles) = parkers(&gate, 1);
        wait_until("the thread parks", || gate.parked() == 1);
        drop(a);
        assert_eq!(
            gate.notified.load(SeqCst),
            0,
            "a parked thread was woken for the place the returning worker takes"
        );
        to_worker.send(()).unwrap();
        assert!(
            !from_worker.recv_timeout(PATIENCE).unwrap(),
            "the returning worker goes on at once"
        );
        worker.join().unwrap();
        let _worker_queued = gate.queue(); // the worker's next request
        drop(b);
        admitted
            .recv_timeout(PATIENCE)
            .expect("the next freed place wakes the parked thread");
        handles.into_iter().for_each(|h| assert!(h.join().unwrap()));
    }

    /// While a worker waits for new work, it takes the next request: a freed place wakes no
    /// parked thread to wait beside it. Once none waits, the next freed place does.
    #[test]
    fn a_freed_place_is_left_to_a_worker_waiting_for_work() {
        let gate = Arc::new(GilGate::with_recheck(2, NEVER));
        let (a, b) = (gate.queue(), gate.queue());
        let (admitted, handles) = parkers(&gate, 1);
        wait_until("the thread parks", || gate.parked() == 1);
        let looking = gate.looking();
        drop(a);
        assert_eq!(
            gate.notified.load(SeqCst),
            0,
            "a parked thread was woken while a worker waits for work"
        );
        drop(looking); // it found a request...
        let _its_request = gate.queue(); // ...which queues for the GIL
        drop(b);
        admitted
            .recv_timeout(PATIENCE)
            .expect("a freed place with nobody waiting for work wakes the parked thread");
        handles.into_iter().for_each(|h| assert!(h.join().unwrap()));
    }

    /// Only a daemon's workers (threads that come to `admit`) count as returning: a request
    /// thread that never does (embedded mode's) leaves its freed place to a parked thread.
    #[test]
    fn a_thread_that_never_admits_does_not_count_as_returning() {
        let gate = Arc::new(GilGate::with_recheck(2, NEVER));
        let (a, b) = (gate.queue(), gate.queue());
        let (admitted, handles) = parkers(&gate, 1);
        wait_until("the thread parks", || gate.parked() == 1);
        thread::scope(|s| {
            s.spawn(|| gate.request_done(gate.queue().enter()));
        });
        gate.request_done(gate.queue().enter());
        drop(a);
        admitted
            .recv_timeout(PATIENCE)
            .expect("a freed place wakes the parked thread");
        drop(b);
        handles.into_iter().for_each(|h| assert!(h.join().unwrap()));
    }

    /// A stand-in for the process's CPU clock: it runs at `milli_cores` thousandths of a
    /// core, which the test may change while it runs.
    fn cpu_clock(milli_cores: &Arc<AtomicU64>) -> CpuClock {
        let rate = Arc::clone(milli_cores);
        let clock = Mutex::new((Instant::now(), 1_u64));
        Box::new(move || {
            let mut clock = clock.lock().unwrap();
            let now = Instant::now();
            let ns = u64::try_from(now.duration_since(clock.0).as_nanos()).unwrap();
            clock.1 += ns * rate.load(SeqCst) / 1000;
            clock.0 = now;
            clock.1
        })
    }

    /// A gate whose process runs at `milli_cores` (see [`cpu_clock`]), and that rate.
    fn gate_at(
        limit: usize,
        inside_cap: usize,
        milli_cores: u64,
        busy_window: Duration,
    ) -> (GilGate, Arc<AtomicU64>) {
        let rate = Arc::new(AtomicU64::new(milli_cores));
        let gate = GilGate::with_params(limit, inside_cap, NEVER, cpu_clock(&rate), busy_window);
        (gate, rate)
    }

    /// A gate (limit 2) whose process is at one core, its signal already busy.
    fn busy_gate(
        inside_cap: usize,
        young: Duration,
        busy_window: Duration,
    ) -> (Arc<GilGate>, Arc<AtomicU64>) {
        let (mut gate, rate) = gate_at(2, inside_cap, 1000, busy_window);
        gate.young = young;
        sample_twice(&gate);
        (Arc::new(gate), rate)
    }

    /// Two reads of the clock, a sample apart: the signal then says what the rate is.
    fn sample_twice(gate: &GilGate) {
        gate.sample(Instant::now());
        thread::sleep(SAMPLE_EVERY + Duration::from_millis(1));
        gate.sample(Instant::now());
    }

    /// Requests `n` inside, each entered on its own thread (as requests are).
    fn enter_n(gate: &GilGate, n: usize) -> Vec<Inside<'_>> {
        let queued: Vec<_> = (0..n).map(|_| gate.queue()).collect();
        thread::scope(|s| {
            let entering: Vec<_> = queued.into_iter().map(|q| s.spawn(|| q.enter())).collect();
            entering.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    /// The cap of requests inside holds while the GIL is busy (the process near one core):
    /// a worker parks though nobody queues for the GIL, and one leaving lets it go.
    #[test]
    fn a_worker_waits_while_the_cap_is_inside_and_the_gil_is_busy() {
        let (gate, _rate) = busy_gate(2, NEVER, NEVER);
        let mut inside = enter_n(&gate, 2);
        let (admitted, handles) = parkers(&gate, 1);
        wait_until("the thread parks", || gate.parked() == 1);
        thread::sleep(Duration::from_millis(20));
        assert!(
            admitted.try_recv().is_err(),
            "admitted while 2 requests are inside and the GIL is busy"
        );
        drop(inside.pop());
        admitted
            .recv_timeout(PATIENCE)
            .expect("a request leaving lets the parked thread go");
        handles.into_iter().for_each(|h| assert!(h.join().unwrap()));
    }

    /// Busy means near one core: a process well below it waits on I/O, one well above it
    /// runs its threads at once (own GILs, or work that releases the GIL). A sample that
    /// finds it otherwise ends the signal at once.
    #[test]
    fn the_gil_is_busy_only_while_the_process_is_near_one_core() {
        let (gate, rate) = gate_at(2, 1, 0, NEVER);
        // (thousandths of a core, busy), in turn: each reading sets or ends the signal.
        for (milli_cores, busy) in [
            (200, false),
            (1000, true),
            (3000, false),
            (900, true),
            (0, false),
        ] {
            rate.store(milli_cores, SeqCst);
            sample_twice(&gate);
            assert_eq!(gate.busy(), busy, "at {milli_cores} thousandths of a core");
        }
    }

    /// The clock is read once per sample period, however many requests enter: the reads
    /// in between find the last one too recent.
    #[test]
    fn the_clock_is_read_once_per_sample_period() {
        let reads = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&reads);
        let gate = GilGate::with_params(
            2,
            2,
            NEVER,
            Box::new(move || {
                counted.fetch_add(1, SeqCst);
                1
            }),
            NEVER,
        );
        let start = Instant::now();
        for _ in 0..1000 {
            gate.sample(Instant::now());
        }
        let periods = start.elapsed().as_nanos() / SAMPLE_EVERY.as_nanos() + 1;
        assert!(
            reads.load(SeqCst) as u128 <= periods,
            "{} reads in {periods} periods",
            reads.load(SeqCst)
        );
    }

    /// Requests inside while the process uses little CPU (they wait on I/O with the GIL
    /// released) hold no place, however many.
    #[test]
    fn requests_inside_with_the_gil_free_hold_no_places() {
        let (gate, _rate) = gate_at(2, 2, 50, NEVER);
        sample_twice(&gate);
        let _inside = enter_n(&gate, 5);
        assert!(
            !gate.admit(),
            "parked behind requests that leave the GIL free"
        );
    }

    /// Requests stuck inside: while the process stays near one core the parked threads
    /// stay parked (the watcher's samples keep the signal); once it uses little CPU (they
    /// all wait with the GIL released) the watcher goes and lets the next go, until all
    /// parked have gone, though the requests stay inside.
    #[test]
    fn when_the_busy_signal_lapses_every_parked_thread_goes() {
        let window = Duration::from_millis(30);
        let (gate, rate) = busy_gate(2, NEVER, window);
        let _stuck = enter_n(&gate, 3);
        let (admitted, handles) = parkers(&gate, 4);
        wait_until("all four park", || gate.parked() == 4);
        thread::sleep(window * 4);
        assert!(
            admitted.try_recv().is_err(),
            "went while the process was at one core"
        );
        rate.store(0, SeqCst);
        for _ in 0..4 {
            admitted.recv_timeout(PATIENCE).expect("all four go");
        }
        handles.into_iter().for_each(|h| {
            h.join().unwrap();
        });
        assert_eq!(gate.parked(), 0);
        assert!(!gate.admit());
    }

    /// A request waiting for its body holds no place while it waits, and holds it again once
    /// back in Python.
    #[test]
    fn a_request_waiting_for_its_body_holds_no_place() {
        let (gate, _rate) = busy_gate(2, NEVER, NEVER);
        let (to_request, request_rx) = mpsc::channel::<()>();
        let (request_tx, from_request) = mpsc::channel::<()>();
        let request_gate = Arc::clone(&gate);
        thread::scope(|s| {
            s.spawn(move || {
                let inside = request_gate.queue().enter();
                let reading = waiting_for_body();
                // Timeouts, so that a failing assertion below ends this thread too.
                request_tx.send(()).unwrap();
                let _ = request_rx.recv_timeout(PATIENCE); // the body arrives
                drop(reading);
                let _ = request_tx.send(());
                let _ = request_rx.recv_timeout(PATIENCE);
                drop(inside);
            });
            from_request.recv_timeout(PATIENCE).unwrap();
            let _other = enter_n(&gate, 1);
            assert!(
                !gate.contended(),
                "a request that waits on its body holds a place"
            );
            to_request.send(()).unwrap();
            from_request.recv_timeout(PATIENCE).unwrap();
            assert!(
                gate.contended(),
                "a request back in Python with its body holds no place again"
            );
            to_request.send(()).unwrap();
        });
    }

    /// A request stuck inside (longer than `young`) holds no place while others keep the
    /// GIL busy: with the cap of 2, one stuck and one young request let a worker in.
    #[test]
    fn a_request_inside_for_long_holds_no_place() {
        let (gate, _rate) = busy_gate(2, Duration::from_millis(50), NEVER);
        let _stuck = enter_n(&gate, 1);
        thread::sleep(Duration::from_millis(60));
        let _young = enter_n(&gate, 1);
        let (admitted, handles) = parkers(&gate, 1);
        admitted
            .recv_timeout(PATIENCE)
            .expect("the stuck request still holds a place");
        handles.into_iter().for_each(|h| {
            h.join().unwrap();
        });
    }

    #[test]
    fn close_wakes_threads_parked_by_the_requests_inside() {
        let (gate, _rate) = busy_gate(1, YOUNG, NEVER);
        let _inside = enter_n(&gate, 2);
        let (admitted, handles) = parkers(&gate, 3);
        wait_until("all three park", || gate.parked() == 3);
        gate.close();
        for _ in 0..3 {
            admitted.recv_timeout(PATIENCE).expect("close wakes all");
        }
        handles.into_iter().for_each(|h| assert!(h.join().unwrap()));
    }

    #[test]
    fn a_thread_stays_parked_while_the_queue_is_full() {
        let gate = Arc::new(GilGate::with_recheck(1, Duration::from_millis(5)));
        let held = gate.queue();
        let (admitted, handles) = parkers(&gate, 1);
        wait_until("the thread parks", || gate.parked() == 1);
        // Others come and go, never below the limit while `held` waits: the wake-ups and
        // many re-checks find the gate contended each time.
        for _ in 0..100 {
            let next = gate.queue();
            thread::sleep(Duration::from_micros(200));
            drop(next);
        }
        assert!(
            admitted.try_recv().is_err(),
            "admitted while the queue was full"
        );
        drop(held);
        admitted
            .recv_timeout(PATIENCE)
            .expect("admitted once the queue is empty");
        handles.into_iter().for_each(|h| assert!(h.join().unwrap()));
    }

    #[test]
    fn a_parked_thread_goes_by_its_recheck_once_the_queue_is_short() {
        let gate = Arc::new(GilGate::with_recheck(1, Duration::from_millis(20)));
        let held = gate.queue();
        let (admitted, handles) = parkers(&gate, 2);
        wait_until("both park", || gate.parked() == 2);
        drop(held); // wakes one; the other sees the empty queue at its next re-check
        for _ in 0..2 {
            admitted.recv_timeout(PATIENCE).expect("both admitted");
        }
        handles.into_iter().for_each(|h| assert!(h.join().unwrap()));
    }

    #[test]
    fn close_wakes_every_parked_thread_at_once_and_parks_none_after() {
        let gate = Arc::new(GilGate::with_recheck(1, NEVER));
        let _held_forever = gate.queue();
        let (admitted, handles) = parkers(&gate, 8);
        wait_until("all eight park", || gate.parked() == 8);
        gate.close();
        for _ in 0..8 {
            admitted.recv_timeout(PATIENCE).expect("close wakes all");
        }
        handles.into_iter().for_each(|h| assert!(h.join().unwrap()));
        assert!(!gate.admit(), "a closed gate never parks");
    }

    #[test]
    fn a_panic_while_queued_leaves_the_queue() {
        let gate = GilGate::with_recheck(1, NEVER);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _queued = gate.queue();
            panic!("inside attach");
        }));
        assert!(result.is_err());
        assert!(!gate.admit(), "the count went back down");
    }

    /// Workers that admit, then queue and leave as their request enters Python, then count
    /// as returning until their next admit (what a daemon thread does), alongside request threads that only queue and leave, for a
    /// bounded number of rounds. Only wake-ups let a parked worker go (no re-check): each
    /// leave below the limit (returning workers counted) wakes a parked worker, whose own
    /// request wakes the next, so all finish; a lost wake-up leaves one parked and the test times out.
    #[test]
    fn no_worker_parks_forever_under_churn() {
        // The GIL never counts as busy: only the queue's limit parks.
        churn(Arc::new(gate_at(2, DEFAULT_INSIDE, 0, NEVER).0));
    }

    /// The same with the GIL busy throughout (the process at one core) and no watcher
    /// re-check: the requests inside park workers too, and only their leaving wakes them.
    #[test]
    fn no_worker_parks_forever_under_churn_with_the_gil_busy() {
        churn(busy_gate(3, YOUNG, NEVER).0);
    }

    fn churn(gate: Arc<GilGate>) {
        const ROUNDS: usize = 2_000;
        let requests: Vec<_> = (0..3)
            .map(|_| {
                let gate = Arc::clone(&gate);
                thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        let queued = gate.queue();
                        thread::yield_now();
                        let inside = queued.enter();
                        thread::yield_now();
                        drop(inside);
                    }
                })
            })
            .collect();
        let workers: Vec<_> = (0..6)
            .map(|_| {
                let gate = Arc::clone(&gate);
                thread::spawn(move || {
                    for round in 0..ROUNDS {
                        gate.admit();
                        drop(gate.looking()); // found a request at once
                        let queued = gate.queue();
                        thread::yield_now();
                        let inside = queued.enter();
                        thread::yield_now();
                        // Returning to `admit` for the next round (a worker always comes
                        // back, except when the process stops).
                        if round + 1 < ROUNDS {
                            gate.request_done(inside);
                        }
                    }
                })
            })
            .collect();
        for h in requests {
            h.join().unwrap();
        }
        let deadline = Instant::now() + PATIENCE * 4;
        while !workers.iter().all(|h| h.is_finished()) {
            if Instant::now() > deadline {
                gate.close(); // let the threads end before failing
                panic!("a worker stayed parked ({} parked)", gate.parked());
            }
            thread::sleep(Duration::from_millis(1));
        }
        workers.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(gate.parked(), 0);
    }
}
