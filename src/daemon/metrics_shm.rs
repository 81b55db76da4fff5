//! The memory behind the metrics table (`metrics::table`): an anonymous shared
//! mapping made by the Apache parent before it forks the daemon manager and its children,
//! so the manager, every daemon and every Apache child of the generation see the same words.

use std::io;
use std::sync::atomic::AtomicU64;

use crate::metrics::table::{self as metrics_table, MetricsTable};

/// The mapping behind one generation's table, owned by the process that made it (the
/// Apache parent). Dropping it unmaps it there — when the generation's configuration pool
/// is cleared — while every process forked from the parent keeps its own copy of the mapping
/// for its whole life: the daemons and Apache children of the old generation still count
/// into it, the parent of the next generation maps a new one.
pub struct Mapping {
    ptr: *mut libc::c_void,
    bytes: usize,
    owner: u32,
    /// The memory as a descriptor (a memfd, close-on-exec), so a daemon host started by
    /// exec can map it too (`attach`); None where memfd_create is refused.
    memory: Option<std::os::fd::OwnedFd>,
}

impl Mapping {
    /// The descriptor of the table's memory, for a daemon host (see `attach`).
    pub fn memory_fd(&self) -> Option<std::os::fd::RawFd> {
        self.memory.as_ref().map(std::os::fd::AsRawFd::as_raw_fd)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if std::process::id() != self.owner {
            return; // a forked child clearing its copy of the pool: its mapping stays in use
        }
        // SAFETY: `ptr`/`bytes` are exactly what mmap returned in `create`; the owner drops
        // this only once nothing in this process uses the table any more (the caller's
        // contract on `create`).
        unsafe {
            libc::munmap(self.ptr, self.bytes);
        }
    }
}

/// Maps a zeroed shared table for groups of these process counts.
///
/// # Safety
/// The table is handed out as `'static`, but it lives only as long as the [`Mapping`]
/// returned with it in this process: the caller drops the mapping only once nothing in this
/// process uses the table (or a copy of it) any more. Processes forked meanwhile are not
/// affected by the drop.
pub unsafe fn create(processes: &[usize]) -> io::Result<(MetricsTable, Mapping)> {
    let words = metrics_table::words_for(processes).max(1);
    let bytes = words * std::mem::size_of::<AtomicU64>();
    let memory = memory_of(bytes);
    let (flags, fd) = match &memory {
        Some(fd) => (libc::MAP_SHARED, std::os::fd::AsRawFd::as_raw_fd(fd)),
        None => (libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1),
    };
    // SAFETY: a shared mapping, of a memfd of `bytes` or anonymous, with no address hint;
    // the kernel returns zeroed pages or MAP_FAILED, which is checked.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the mapping is `bytes` long, page-aligned (so aligned for AtomicU64), zeroed
    // (a valid AtomicU64 is any bit pattern), and only ever accessed through atomics; it
    // stays mapped while the table is used (this function's contract).
    let slice = unsafe { std::slice::from_raw_parts(ptr as *const AtomicU64, words) };
    let mapping = Mapping {
        ptr,
        bytes,
        owner: std::process::id(),
        memory,
    };
    Ok((MetricsTable::new(slice, processes), mapping))
}

/// A zeroed memfd of `bytes` (close-on-exec), or None if the kernel refuses one.
fn memory_of(bytes: usize) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create with a valid name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"rwsgi-metrics".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let file = std::fs::File::from(owned);
    file.set_len(bytes as u64).ok()?;
    Some(file.into())
}

/// The table of a generation in a daemon host, which got its memory as the descriptor `fd`
/// (`daemon::plan_wire::MetricsWire`) instead of by fork: maps it for the rest of this
/// process' life (the mapping is never unmapped) and closes `fd`.
///
/// # Safety
/// `fd` is an open descriptor this process owns, of shared memory laid out for
/// `processes` (made by the Apache parent for this generation).
pub unsafe fn attach(fd: std::os::fd::RawFd, processes: &[usize]) -> io::Result<MetricsTable> {
    use std::os::fd::FromRawFd;
    // SAFETY: the caller's promise: ours alone; closed when `file` drops (the mapping stays).
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    let words = metrics_table::words_for(processes).max(1);
    let bytes = words * std::mem::size_of::<AtomicU64>();
    if file.metadata()?.len() < bytes as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the metrics memory is smaller than the {bytes} bytes its layout needs"),
        ));
    }
    // SAFETY: a shared mapping of `bytes` of a descriptor at least that long (checked), no
    // address hint; MAP_FAILED is checked.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as in `create`: page-aligned, `words` long, only used through atomics, and
    // mapped until this process ends.
    let slice = unsafe { std::slice::from_raw_parts(ptr as *const AtomicU64, words) };
    Ok(MetricsTable::new(slice, processes))
}

/// Where a group's processes count their requests: the generation's table and the group's
/// index in it (set by the Apache parent; the manager picks each process' record).
#[derive(Clone, Copy, Debug)]
pub struct MetricsPlace {
    pub table: MetricsTable,
    pub group: usize,
    /// The table's memory as a descriptor (`Mapping::memory_fd`), kept open by the daemon
    /// manager for daemon hosts.
    pub memory_fd: Option<std::os::fd::RawFd>,
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

    fn websocket(&self, opened: bool) {
        self.0.websocket(opened);
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
