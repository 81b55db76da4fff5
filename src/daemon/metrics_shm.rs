//! The memory behind the metrics table (`protocol::metrics_table`): an anonymous shared
//! mapping made by the Apache parent before it forks the daemon manager and its children,
//! so the manager, every daemon and every Apache child of the generation see the same words.

use std::io;
use std::sync::atomic::AtomicU64;

use crate::protocol::metrics_table::{self, MetricsTable};

/// Maps a zeroed shared table for groups of these process counts.
///
/// The mapping is never unmapped: processes forked from this one use it for their whole
/// life, and the Apache parent makes one per configuration generation (a few KB each).
pub fn create(processes: &[usize]) -> io::Result<MetricsTable> {
    let words = metrics_table::words_for(processes).max(1);
    let bytes = words * std::mem::size_of::<AtomicU64>();
    // SAFETY: an anonymous shared mapping with no address hint; the kernel returns fresh
    // zeroed pages or MAP_FAILED, which is checked.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the mapping is `bytes` long, page-aligned (so aligned for AtomicU64), zeroed
    // (a valid AtomicU64 is any bit pattern), never unmapped (so 'static), and only ever
    // accessed through atomics.
    let slice = unsafe { std::slice::from_raw_parts(ptr as *const AtomicU64, words) };
    Ok(MetricsTable::new(slice, processes))
}

/// Where a group's processes count their requests: the generation's table and the group's
/// index in it (set by the Apache parent; the manager picks each process' record).
#[derive(Clone, Copy, Debug)]
pub struct MetricsPlace {
    pub table: MetricsTable,
    pub group: usize,
}

/// Counts this process' requests in `record` of its group's table.
pub fn observe(place: MetricsPlace, record: usize) {
    if let Some(record) = place.table.record(place.group, record) {
        crate::python::set_request_observer(Box::new(TableObserver(record)));
    }
}

struct TableObserver(metrics_table::Record);

fn seconds_between(from_us: u64, to_us: u64) -> f64 {
    to_us.saturating_sub(from_us) as f64 / 1e6
}

impl crate::python::RequestObserver for TableObserver {
    fn began(&self) {
        self.0.began();
    }

    fn ended(&self, s: &crate::python::RequestSummary) {
        if s.resent {
            self.0.abandoned();
            return;
        }
        let t = &s.times;
        let start = if t.request_start_us > 0 {
            t.request_start_us
        } else {
            s.began_us
        };
        let queue_wait = (t.queue_start_us > 0 && t.daemon_start_us > 0)
            .then(|| seconds_between(t.queue_start_us, t.daemon_start_us));
        self.0.ended(&metrics_table::RequestSample {
            status: s.status,
            duration: seconds_between(start, s.ended_us),
            queue_wait,
        });
    }
}

/// µs since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
