//! The garbage-collector side of telemetry, as mod_wsgi 6 reports it: a snapshot of the
//! `gc` module's figures each tick, and one pause event per collection. An entry appended
//! once to `gc.callbacks` (when telemetry is turned on, before the process serves) records
//! each collection: its start and end time, generation, collected and uncollectable counts
//! into a bounded queue (when full, the oldest event is dropped and counted), its results
//! into running totals, and the counts, thresholds, enabled flag and freeze count as they
//! stand after it. The reporter reads all of this without the GIL ([`gc_snapshot`],
//! [`gc_events`]).
//!
//! Each sub-interpreter gets the same entry when it is set up (its collector is its own):
//! its collections are events and add to the totals, as in mod_wsgi 6.
//!
//! Cost: one call per collection, in the thread that collects; nothing on requests that do
//! not trigger a collection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use pyo3::prelude::*;
use pyo3::types::{PyModule, PyString};

use super::request::lock;
use crate::util::now_us;

/// At most this many events wait for the reporter.
const QUEUE_LIMIT: usize = 256;

/// One collection.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GcEvent {
    /// When it began, µs since the epoch.
    pub start_us: u64,
    pub duration_us: u64,
    pub generation: u8,
    pub collected: u64,
    pub uncollectable: u64,
}

/// The `gc` module's figures, per generation where the module has them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GcSnapshot {
    /// `gc.get_count()` as it stood after the latest collection.
    pub count: [u64; 3],
    pub threshold: [u64; 3],
    /// Totals since the interpreter started (`gc.get_stats()`).
    pub collections: [u64; 3],
    pub collected: [u64; 3],
    pub uncollectable: [u64; 3],
    pub is_enabled: bool,
    pub freeze_count: u64,
}

#[derive(Default)]
struct GcState {
    count: [AtomicU64; 3],
    threshold: [AtomicU64; 3],
    collections: [AtomicU64; 3],
    collected: [AtomicU64; 3],
    uncollectable: [AtomicU64; 3],
    is_enabled: AtomicU64,
    freeze_count: AtomicU64,
    /// Start of the collection under way (collections do not overlap: they hold the GIL).
    pending_start_us: AtomicU64,
    events: Mutex<VecDeque<GcEvent>>,
    /// Events dropped since the reporter last drained the queue.
    dropped: AtomicU64,
}

static GC: OnceLock<GcState> = OnceLock::new();
/// The `gc` module, imported once when the callback is installed.
static GC_MODULE: OnceLock<Py<PyModule>> = OnceLock::new();

fn as_u64(v: &Bound<'_, PyAny>) -> u64 {
    v.extract::<u64>().unwrap_or(0)
}

/// Three values of a sequence (`get_count()`, `get_threshold()`), 0 where missing.
fn store_three(cells: &[AtomicU64; 3], seq: PyResult<Bound<'_, PyAny>>) {
    let Ok(seq) = seq else {
        return;
    };
    for (i, cell) in cells.iter().enumerate() {
        let v = seq.get_item(i).map(|v| as_u64(&v)).unwrap_or(0);
        cell.store(v, Ordering::Relaxed);
    }
}

/// Reads the figures that change without a collection (counts, thresholds, flags).
fn refresh(gc: &Bound<'_, PyModule>, s: &GcState) {
    store_three(&s.count, gc.call_method0("get_count"));
    store_three(&s.threshold, gc.call_method0("get_threshold"));
    if let Ok(v) = gc.call_method0("isenabled") {
        let on = v.is_truthy().unwrap_or(false);
        s.is_enabled.store(u64::from(on), Ordering::Relaxed);
    }
    if let Ok(v) = gc.call_method0("get_freeze_count") {
        s.freeze_count.store(as_u64(&v), Ordering::Relaxed);
    }
}

/// Installs the `gc.callbacks` entry (once per process; later calls do nothing). Call it
/// with Python initialised and before the process serves. `Err`: why it could not be
/// installed (the process reports no GC figures).
pub(crate) fn install() -> Result<(), String> {
    if GC.get().is_some() {
        return Ok(());
    }
    // SAFETY: Py_IsInitialized only reads a flag; it may be called without the GIL.
    if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
        return Err("Python is not running".into());
    }
    // Before the process serves, so no thread has entered an own-GIL sub-interpreter yet:
    // a plain attach reaches the main interpreter (see `subinterp::attach_main`).
    Python::attach(|py| -> PyResult<()> {
        let gc = py.import("gc")?;
        let state = GcState::default();
        // The totals so far: the callback adds each later collection to them.
        for (g, d) in gc
            .call_method0("get_stats")?
            .try_iter()?
            .take(3)
            .enumerate()
        {
            let d = d?;
            let get = |key: &str| d.get_item(key).map(|v| as_u64(&v)).unwrap_or(0);
            state.collections[g].store(get("collections"), Ordering::Relaxed);
            state.collected[g].store(get("collected"), Ordering::Relaxed);
            state.uncollectable[g].store(get("uncollectable"), Ordering::Relaxed);
        }
        refresh(&gc, &state);
        let _ = GC_MODULE.set(gc.clone().unbind());
        let _ = GC.set(state);
        let callback = wrap_pyfunction!(_rwsgi_gc_callback, py)?;
        gc.getattr("callbacks")?
            .call_method1("append", (callback,))?;
        Ok(())
    })
    .map_err(|e| e.to_string())
}

/// Adds the `gc.callbacks` entry to the current sub-interpreter (each interpreter has its own
/// collector, as mod_wsgi 6 reports them all): its collections join the process's events and
/// totals. Nothing when telemetry's callback is not installed. Call attached, with the
/// sub-interpreter's state current, while it is set up.
pub(crate) fn install_in_sub_interpreter(py: Python<'_>) -> PyResult<()> {
    if GC.get().is_none() {
        return Ok(());
    }
    let callback = wrap_pyfunction!(_rwsgi_gc_callback, py)?;
    py.import("gc")?
        .getattr("callbacks")?
        .call_method1("append", (callback,))?;
    Ok(())
}

/// The `gc.callbacks` entry: `phase` is "start" or "stop", `info` a dict with the
/// generation and the collected and uncollectable counts. It never raises (an exception
/// here would be reported on every collection).
#[pyfunction]
fn _rwsgi_gc_callback(phase: &Bound<'_, PyAny>, info: &Bound<'_, PyAny>) -> PyResult<()> {
    super::native_class::catch_panic("the gc callback", || {
        gc_callback(phase, info);
        Ok(())
    })
}

/// [`_rwsgi_gc_callback`]'s body.
fn gc_callback(phase: &Bound<'_, PyAny>, info: &Bound<'_, PyAny>) {
    let Some(s) = GC.get() else {
        return;
    };
    let Ok(phase) = phase.cast::<PyString>() else {
        return;
    };
    let Ok(phase) = phase.to_str() else {
        return;
    };
    if phase == "start" {
        s.pending_start_us.store(now_us(), Ordering::Relaxed);
        return;
    }
    if phase != "stop" {
        return;
    }
    let end_us = now_us();
    let get = |key: &str| {
        info.get_item(key)
            .ok()
            .and_then(|v| v.extract::<i64>().ok())
    };
    let Some(generation) = get("generation").and_then(|g| u8::try_from(g).ok()) else {
        return;
    };
    let value = |key: &str| get(key).and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
    let start_us = s.pending_start_us.load(Ordering::Relaxed);
    let event = GcEvent {
        start_us,
        duration_us: end_us.saturating_sub(start_us),
        generation,
        collected: value("collected"),
        uncollectable: value("uncollectable"),
    };
    let g = usize::from(generation);
    if g < 3 {
        s.collections[g].fetch_add(1, Ordering::Relaxed);
        s.collected[g].fetch_add(event.collected, Ordering::Relaxed);
        s.uncollectable[g].fetch_add(event.uncollectable, Ordering::Relaxed);
    }
    // The counts, thresholds and flags are the main interpreter's (its `gc` module); a
    // sub-interpreter's collections add to the events and totals only.
    if let Some(gc) = GC_MODULE
        .get()
        .filter(|_| super::interp_state::in_main_interpreter(info.py()))
    {
        refresh(gc.bind(info.py()), s);
    }
    let mut q = lock(&s.events);
    if q.len() >= QUEUE_LIMIT {
        q.pop_front();
        s.dropped.fetch_add(1, Ordering::Relaxed);
    }
    q.push_back(event);
}

fn load3(cells: &[AtomicU64; 3]) -> [u64; 3] {
    [0, 1, 2].map(|i| cells[i].load(Ordering::Relaxed))
}

/// The figures now; None when the callback is not installed. Takes no GIL.
pub fn gc_snapshot() -> Option<GcSnapshot> {
    let s = GC.get()?;
    Some(GcSnapshot {
        count: load3(&s.count),
        threshold: load3(&s.threshold),
        collections: load3(&s.collections),
        collected: load3(&s.collected),
        uncollectable: load3(&s.uncollectable),
        is_enabled: s.is_enabled.load(Ordering::Relaxed) != 0,
        freeze_count: s.freeze_count.load(Ordering::Relaxed),
    })
}

/// Takes at most `max` of the waiting events (oldest first; the rest wait for the next
/// call), and the number dropped since the last call. Takes no GIL.
pub fn gc_events(max: usize) -> (Vec<GcEvent>, u64) {
    let Some(s) = GC.get() else {
        return (Vec::new(), 0);
    };
    let mut q = lock(&s.events);
    let n = q.len().min(max);
    let events = q.drain(..n).collect();
    (events, s.dropped.swap(0, Ordering::Relaxed))
}
