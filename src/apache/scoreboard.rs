//! Apache's scoreboard (the shared memory where the parent and its children record every
//! worker's state), read into plain values. The MPM creates it in a pre_mpm hook on
//! Apache's first start and keeps it across restarts; a process forked after that has it:
//! Apache children, and the daemons of a configuration that asks for it
//! (`server-metrics=on`), whose manager is then forked only once it exists. Elsewhere
//! [`read`] returns None.

use crate::ffi;

/// A worker's state letter, as mod_status and mod_wsgi's `server_metrics()` show it.
pub fn status_letter(status: u8) -> &'static str {
    match status {
        0 => ".",
        1 => "S",
        2 => "_",
        3 => "R",
        4 => "W",
        5 => "K",
        6 => "L",
        7 => "D",
        8 => "C",
        9 => "G",
        10 => "I",
        _ => "?",
    }
}

#[derive(Clone, Debug)]
pub struct Scoreboard {
    pub server_limit: i32,
    pub thread_limit: i32,
    pub running_generation: i32,
    /// µs since the Unix epoch.
    pub restart_time_us: i64,
    pub processes: Vec<ProcessScore>,
}

#[derive(Clone, Debug)]
pub struct ProcessScore {
    pub pid: i32,
    pub generation: i32,
    pub quiescing: bool,
    pub workers: Vec<WorkerScore>,
}

#[derive(Clone, Debug)]
pub struct WorkerScore {
    pub thread_num: i32,
    pub generation: i32,
    pub status: u8,
    pub access_count: u64,
    pub bytes_served: u64,
    /// µs since the Unix epoch (0 = never).
    pub start_time_us: i64,
    pub stop_time_us: i64,
    pub last_used_us: i64,
    pub client: Vec<u8>,
    pub request: Vec<u8>,
    pub vhost: Vec<u8>,
}

/// The bytes of a fixed C char array up to its first NUL.
fn c_field(field: &[std::os::raw::c_char]) -> Vec<u8> {
    field
        .iter()
        .map(|c| *c as u8)
        .take_while(|b| *b != 0)
        .collect()
}

/// Whether this process has a scoreboard (the MPM makes it on Apache's first start,
/// after post_config).
pub fn exists() -> bool {
    // SAFETY: ap_exists_scoreboard_image only reads a global pointer.
    unsafe { ffi::ap_exists_scoreboard_image() != 0 }
}

/// The scoreboard now, or None where this process has none.
pub fn read() -> Option<Scoreboard> {
    if !exists() {
        return None;
    }
    // SAFETY: the scoreboard exists (checked above): the global record and, for indexes
    // within its limits, the process and worker records Apache's accessors return live in
    // shared memory for the life of the process.
    unsafe {
        read_records(
            ffi::ap_get_scoreboard_global(),
            |i| ffi::ap_get_scoreboard_process(i),
            |i, j| ffi::ap_get_scoreboard_worker_from_indexes(i, j),
        )
    }
}

/// Copies the scoreboard out of its records.
///
/// # Safety
/// `global` is null or points at a readable global record; `process(i)` and `worker(i, j)`
/// return null or readable records for every `i` below its `server_limit` and `j` below
/// its `thread_limit`. Apache's processes update them concurrently, so each is copied
/// with a volatile read, as a snapshot.
unsafe fn read_records(
    global: *const ffi::global_score,
    process: impl Fn(i32) -> *const ffi::process_score,
    worker: impl Fn(i32, i32) -> *const ffi::worker_score,
) -> Option<Scoreboard> {
    if global.is_null() {
        return None;
    }
    // SAFETY: the caller's promise: readable.
    let global = unsafe { std::ptr::read_volatile(global) };
    let mut processes = Vec::new();
    for i in 0..global.server_limit.max(0) {
        let ptr = process(i);
        if ptr.is_null() {
            continue;
        }
        // SAFETY: i < server_limit: the caller's promise.
        let process = unsafe { std::ptr::read_volatile(ptr) };
        let mut workers = Vec::new();
        for j in 0..global.thread_limit.max(0) {
            let ptr = worker(i, j);
            if ptr.is_null() {
                continue;
            }
            // SAFETY: i < server_limit and j < thread_limit: the caller's promise.
            let w = unsafe { std::ptr::read_volatile(ptr) };
            let client = match c_field(&w.client64) {
                c if c.is_empty() => c_field(&w.client),
                c => c,
            };
            workers.push(WorkerScore {
                thread_num: w.thread_num,
                generation: w.generation,
                status: w.status,
                access_count: w.access_count,
                bytes_served: u64::try_from(w.bytes_served).unwrap_or(0),
                start_time_us: w.start_time,
                stop_time_us: w.stop_time,
                last_used_us: w.last_used,
                client,
                request: c_field(&w.request),
                vhost: c_field(&w.vhost),
            });
        }
        processes.push(ProcessScore {
            pid: process.pid,
            generation: process.generation,
            quiescing: process.quiescing != 0,
            workers,
        });
    }
    Some(Scoreboard {
        server_limit: global.server_limit,
        thread_limit: global.thread_limit,
        running_generation: global.running_generation,
        restart_time_us: global.restart_time,
        processes,
    })
}

/// Where each record lies in the scoreboard's memory, as Apache lays it out
/// (`ap_init_scoreboard`): the global record, then `server_limit` process records, then
/// each process' `thread_limit` worker records. Offsets from the global record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    server_limit: usize,
    thread_limit: usize,
}

impl Layout {
    fn of(global: &ffi::global_score) -> Option<Layout> {
        Some(Layout {
            server_limit: usize::try_from(global.server_limit).ok()?,
            thread_limit: usize::try_from(global.thread_limit).ok()?,
        })
    }

    fn process(&self, i: usize) -> usize {
        size_of::<ffi::global_score>() + i * size_of::<ffi::process_score>()
    }

    fn worker(&self, i: usize, j: usize) -> usize {
        self.process(self.server_limit)
            + (i * self.thread_limit + j) * size_of::<ffi::worker_score>()
    }

    /// Bytes from the global record to the end of the last worker record.
    fn size(&self) -> usize {
        self.worker(self.server_limit, 0)
    }
}

/// Apache's scoreboard memory as a program started by exec (a daemon host) can map it: a
/// read-only descriptor of the shared memory and where the global record is in it.
#[derive(Debug)]
pub struct Shared {
    pub fd: std::os::fd::OwnedFd,
    /// Of the global record from the start of the memory.
    pub offset: usize,
    /// Of the whole mapping.
    pub len: usize,
}

/// Opens this process' scoreboard memory for a daemon host: Apache makes it anonymous
/// shared memory (APR's `mmap(MAP_SHARED|MAP_ANONYMOUS)`), or a file with ScoreBoardFile;
/// either way the kernel names the mapping in /proc/self/map_files, which root (the
/// Apache parent and the daemon manager) can open. Checks first that the records lie
/// where [`Layout`] says, so a host reads exactly what Apache's accessors return.
pub fn share() -> Result<Shared, String> {
    if !exists() {
        return Err("Apache has no scoreboard yet".into());
    }
    // SAFETY: the scoreboard exists; its global record lives for the process' life.
    let global_ptr = unsafe { ffi::ap_get_scoreboard_global() };
    if global_ptr.is_null() {
        return Err("Apache has no scoreboard yet".into());
    }
    // SAFETY: non-null, readable (above).
    let global = unsafe { std::ptr::read_volatile(global_ptr) };
    let layout = Layout::of(&global).ok_or("its limits are negative")?;
    let base = global_ptr as usize;
    let last = (
        global.server_limit.max(1) - 1,
        global.thread_limit.max(1) - 1,
    );
    // SAFETY: indexes within the limits Apache's accessors are made for.
    let (first_process, last_process, first_worker, last_worker) = unsafe {
        (
            ffi::ap_get_scoreboard_process(0) as usize,
            ffi::ap_get_scoreboard_process(last.0) as usize,
            ffi::ap_get_scoreboard_worker_from_indexes(0, 0) as usize,
            ffi::ap_get_scoreboard_worker_from_indexes(last.0, last.1) as usize,
        )
    };
    let expected = (
        base + layout.process(0),
        base + layout.process(last.0 as usize),
        base + layout.worker(0, 0),
        base + layout.worker(last.0 as usize, last.1 as usize),
    );
    if (first_process, last_process, first_worker, last_worker) != expected {
        return Err("its records are not laid out as this build expects".into());
    }
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| format!("cannot read /proc/self/maps: {e}"))?;
    let (range, start, end) = maps
        .lines()
        .filter_map(|line| {
            let range = line.split_whitespace().next()?;
            let (a, b) = range.split_once('-')?;
            let a = usize::from_str_radix(a, 16).ok()?;
            let b = usize::from_str_radix(b, 16).ok()?;
            (a <= base && base < b).then(|| (range.to_owned(), a, b))
        })
        .next()
        .ok_or("its memory is not in /proc/self/maps")?;
    if base + layout.size() > end {
        return Err("its records run past its mapping".into());
    }
    let path = format!("/proc/self/map_files/{range}");
    let file = std::fs::File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
    Ok(Shared {
        fd: file.into(),
        offset: base - start,
        len: end - start,
    })
}

/// A scoreboard mapped read-only from a [`Shared`] descriptor (in a daemon host).
#[derive(Debug)]
pub struct Mapped {
    /// The global record.
    global: *const u8,
    /// Bytes readable from `global`.
    len: usize,
}

// SAFETY: a read-only shared mapping that is never unmapped: any thread may read it.
unsafe impl Send for Mapped {}
// SAFETY: as above.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps `len` bytes of `fd` (a [`Shared`] descriptor; this keeps no reference to it)
    /// read-only, for the life of the process.
    pub fn map(
        fd: std::os::fd::BorrowedFd<'_>,
        offset: usize,
        len: usize,
    ) -> Result<Mapped, String> {
        use std::os::fd::AsRawFd;
        if offset.saturating_add(size_of::<ffi::global_score>()) > len {
            return Err(format!("offset {offset} is beyond its {len} bytes"));
        }
        // SAFETY: a fresh read-only shared mapping of a descriptor we were given; the
        // result is checked. It is never unmapped.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Mapped {
            // SAFETY: offset < len (checked above), inside the mapping.
            global: unsafe { (ptr as *const u8).add(offset) },
            len: len - offset,
        })
    }

    /// The scoreboard now, or None if its limits say it is larger than the mapping.
    pub fn read(&self) -> Option<Scoreboard> {
        let global = self.global as *const ffi::global_score;
        // SAFETY: `map` checked that a global record fits; the memory is mapped for good.
        let layout = Layout::of(&unsafe { std::ptr::read_volatile(global) })?;
        if layout.size() > self.len {
            return None;
        }
        let base = self.global;
        // SAFETY: every record below the limits lies within `len` bytes of `global`
        // (checked against the layout just above).
        unsafe {
            read_records(
                global,
                |i| base.wrapping_add(layout.process(i as usize)) as *const ffi::process_score,
                |i, j| {
                    base.wrapping_add(layout.worker(i as usize, j as usize))
                        as *const ffi::worker_score
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_scoreboard_reads_the_records_where_apache_lays_them_out() {
        let layout = Layout {
            server_limit: 2,
            thread_limit: 3,
        };
        let offset = 16;
        let len = offset + layout.size();
        // SAFETY: memfd_create with a valid name; the result is checked.
        let fd = unsafe { libc::memfd_create(c"rwsgi-test-sb".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: `fd` is ours; OwnedFd closes it.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let file = std::fs::File::from(fd);
        file.set_len(len as u64).unwrap();
        let mut memory = vec![0u8; len];
        let global = ffi::global_score {
            server_limit: 2,
            thread_limit: 3,
            running_generation: 4,
            restart_time: 5_000_000,
            ..Default::default()
        };
        let process = ffi::process_score {
            pid: 4242,
            generation: 4,
            ..Default::default()
        };
        let mut worker = ffi::worker_score {
            thread_num: 7,
            status: 4,
            access_count: 9,
            ..Default::default()
        };
        for (b, c) in worker.request.iter_mut().zip(b"GET /x HTTP/1.1\0") {
            *b = *c as std::os::raw::c_char;
        }
        fn put<T: Copy>(memory: &mut [u8], at: usize, value: &T) {
            // SAFETY: copies a plain C record's bytes into a buffer it fits in (asserted).
            let bytes = unsafe {
                std::slice::from_raw_parts(value as *const T as *const u8, size_of::<T>())
            };
            memory[at..at + bytes.len()].copy_from_slice(bytes);
        }
        put(&mut memory, offset, &global);
        put(&mut memory, offset + layout.process(1), &process);
        put(&mut memory, offset + layout.worker(1, 2), &worker);
        std::os::unix::fs::FileExt::write_all_at(&file, &memory, 0).unwrap();

        let mapped = Mapped::map(std::os::fd::AsFd::as_fd(&file), offset, len).unwrap();
        let board = mapped.read().expect("a scoreboard");
        assert_eq!((board.server_limit, board.thread_limit), (2, 3));
        assert_eq!(board.running_generation, 4);
        assert_eq!(board.restart_time_us, 5_000_000);
        assert_eq!(board.processes.len(), 2);
        assert_eq!(board.processes[1].pid, 4242);
        let w = &board.processes[1].workers[2];
        assert_eq!((w.thread_num, w.status, w.access_count), (7, 4, 9));
        assert_eq!(w.request, b"GET /x HTTP/1.1");
        assert_eq!(board.processes[0].workers.len(), 3);

        // Limits that claim more records than the memory holds are not read.
        let mut big = global;
        big.server_limit = 1000;
        let mut bytes = vec![0u8; size_of::<ffi::global_score>()];
        put(&mut bytes, 0, &big);
        std::os::unix::fs::FileExt::write_all_at(&file, &bytes, offset as u64).unwrap();
        assert!(mapped.read().is_none());
        // An offset beyond the memory is refused.
        assert!(Mapped::map(std::os::fd::AsFd::as_fd(&file), len, len).is_err());
    }
}
