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
    // SAFETY: the scoreboard exists (checked above); the global record lives in shared
    // memory for the life of the process. Apache's processes update it concurrently, so
    // it is copied with a volatile read, as a snapshot.
    let global = unsafe {
        let ptr = ffi::ap_get_scoreboard_global();
        if ptr.is_null() {
            return None;
        }
        std::ptr::read_volatile(ptr)
    };
    let mut processes = Vec::new();
    for i in 0..global.server_limit.max(0) {
        // SAFETY: i < server_limit, the bound of the process records.
        let process = unsafe {
            let ptr = ffi::ap_get_scoreboard_process(i);
            if ptr.is_null() {
                continue;
            }
            std::ptr::read_volatile(ptr)
        };
        let mut workers = Vec::new();
        for j in 0..global.thread_limit.max(0) {
            // SAFETY: i < server_limit and j < thread_limit, the bounds of the worker
            // records; copied as above.
            let w = unsafe {
                let ptr = ffi::ap_get_scoreboard_worker_from_indexes(i, j);
                if ptr.is_null() {
                    continue;
                }
                std::ptr::read_volatile(ptr)
            };
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
