//! Part of the composition root: `mod_wsgi.server_metrics()`'s view of Apache's scoreboard.
//! The python layer gets a reader function (it knows nothing of Apache); and when a daemon
//! group asks for the scoreboard (`server-metrics=on`) on Apache's first start, the daemon
//! manager is forked only once the MPM has created the scoreboard (in a pre_mpm hook, as
//! mod_wsgi does), so the daemons inherit its shared memory. On a restart the scoreboard
//! is kept, and daemons start from post_config as always.

use std::os::raw::c_int;
use std::sync::Mutex;

use crate::apache::pool::Pool;
use crate::apache::scoreboard;
use crate::apache::virtual_host::VirtualHost;
use crate::ffi;
use crate::module::panic_guard::guard;
use crate::python::{ScoreboardProcess, ScoreboardWorker, ServerScoreboard};

fn seconds(us: i64) -> f64 {
    us as f64 / 1e6
}

/// The scoreboard in the python layer's terms.
fn read_for_python() -> Option<ServerScoreboard> {
    let board = scoreboard::read()?;
    Some(ServerScoreboard {
        server_limit: i64::from(board.server_limit),
        thread_limit: i64::from(board.thread_limit),
        running_generation: i64::from(board.running_generation),
        restart_time: seconds(board.restart_time_us),
        processes: board
            .processes
            .into_iter()
            .map(|p| ScoreboardProcess {
                pid: i64::from(p.pid),
                generation: i64::from(p.generation),
                quiescing: p.quiescing,
                workers: p
                    .workers
                    .into_iter()
                    .map(|w| ScoreboardWorker {
                        thread_num: i64::from(w.thread_num),
                        generation: i64::from(w.generation),
                        status: scoreboard::status_letter(w.status),
                        access_count: w.access_count,
                        bytes_served: w.bytes_served,
                        start_time: seconds(w.start_time_us),
                        stop_time: seconds(w.stop_time_us),
                        last_used: seconds(w.last_used_us),
                        client: w.client,
                        request: w.request,
                        vhost: w.vhost,
                    })
                    .collect(),
            })
            .collect(),
    })
}

/// Gives the python layer its way to read the scoreboard (`mod_wsgi.server_metrics()`).
pub(crate) fn install_scoreboard_reader() {
    crate::python::set_scoreboard_reader(read_for_python);
}

/// What starts the daemons once the scoreboard exists.
type Launch = fn(Pool, VirtualHost) -> c_int;

/// pconf, the main server and the launch, kept for the deferred start (as addresses: the
/// hook runs on the same thread in the Apache parent, while both are alive).
static DEFERRED: Mutex<Option<(usize, usize, Launch)>> = Mutex::new(None);

/// Called by post_config: true when the daemons are to be started later, from pre_mpm by
/// `launch`, because a group wants the scoreboard (`wanted`) and it does not exist yet
/// (Apache's first start). Called in the real configuration pass only.
pub(crate) fn defer_until_scoreboard(
    pool: Pool,
    main: VirtualHost,
    wanted: bool,
    launch: Launch,
) -> bool {
    if !wanted || scoreboard::exists() {
        return false;
    }
    *DEFERRED.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((pool.as_ptr() as usize, main.as_ptr() as usize, launch));
    // SAFETY: registering a hook function during post_config, as mod_wsgi does for the same
    // reason; the MPM runs pre_mpm hooks (scoreboard creation first) before it forks.
    unsafe {
        ffi::ap_hook_pre_mpm(
            Some(start_after_scoreboard),
            std::ptr::null(),
            std::ptr::null(),
            ffi::APR_HOOK_REALLY_LAST,
        )
    };
    true
}

unsafe extern "C" fn start_after_scoreboard(
    _p: *mut ffi::apr_pool_t,
    _sb_type: ffi::ap_scoreboard_e,
) -> c_int {
    guard("pre_mpm", ffi::HTTP_INTERNAL_SERVER_ERROR, || {
        let Some((pool, main, launch)) = DEFERRED.lock().unwrap_or_else(|e| e.into_inner()).take()
        else {
            return ffi::OK;
        };
        // SAFETY: the pconf pool saved by post_config, alive until the generation ends.
        let Some(pool) = (unsafe { Pool::from_raw(pool as *mut ffi::apr_pool_t) }) else {
            return ffi::OK;
        };
        // SAFETY: the main server saved by post_config, alive as long as pconf.
        let Some(main) = (unsafe { VirtualHost::from_raw(main as *mut ffi::server_rec) }) else {
            return ffi::OK;
        };
        launch(pool, main)
    })
}
