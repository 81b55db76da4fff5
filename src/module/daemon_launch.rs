//! Part of the composition root: the Apache parent's side of daemon mode. In the real
//! post_config pass it creates each WSGIDaemonProcess group's socket and forks the daemon
//! manager process (`daemon::manager`), which forks and supervises the daemons.
//! The manager is registered with the MPM's "other child" registry, restarted (with
//! backoff) if it dies, and told to stop when the configuration generation ends: SIGINT on
//! a graceful restart (daemons drain, nobody waits), SIGTERM on stop or hard restart
//! (waited for, up to shutdown-timeout).

use std::ffi::c_void;
use std::os::raw::c_int;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::apache::log::{self, Level};
use crate::apache::other_child::{self, OtherChild, Reason};
use crate::apache::pool::Pool;
use crate::apache::scoreboard;
use crate::apache::server_process;
use crate::apache::state;
use crate::apache::virtual_host::VirtualHost;
use crate::config::GlobalConfig;
use crate::daemon::exit::ManagerExit;
use crate::daemon::listener;
use crate::daemon::manager::{self, GroupPlan};
use crate::daemon::metrics_shm::{self, MetricsPlace};
use crate::daemon::supervisor::{self, SlotHistory};
use crate::ffi;
use crate::handler::DaemonTarget;
use crate::handler::metrics_endpoint;
use crate::metrics::table::MetricsTable;
use crate::module::accounts::SystemAccounts;
use crate::module::daemon_plan::{self, ApacheFacts, Preload};
use crate::module::panic_guard::guard;
use crate::module::slot::{main_slot, server_slot};

/// The daemon side of one configuration generation, owned by the configuration pool.
struct Generation {
    groups: Vec<GroupPlan>,
    socket_paths: Vec<PathBuf>,
    parent_pid: u32,
    manager_pid: i32,
    history: SlotHistory,
    registration: OtherChild,
    pool: Pool,
    stopping: bool,
    /// Set when the MPM announced a stop or hard restart (APR_OC_REASON_RESTART); a
    /// graceful restart sends no such notice.
    hard_stop: bool,
}

/// What post_config keeps from starting the daemons: how Apache children reach each
/// group, and the parent's listening sockets (closed in each child).
pub(crate) struct StartedDaemons {
    pub targets: Vec<DaemonTarget>,
    pub listener_fds: Vec<i32>,
}

/// Creates each daemon group's socket and forks the daemon manager (only if there are
/// daemon groups; otherwise `Ok(None)`). Call it in the real start-up pass only (see
/// `state::is_real_config_pass`), from post_config or the pre_mpm that follows it. `main` is the main
/// server of the configuration `global` was read from; `preloads` are the scripts the
/// groups load before serving.
pub(crate) fn start_daemons(
    pool: Pool,
    main: VirtualHost,
    global: &GlobalConfig,
    preloads: &[Preload],
) -> Result<Option<StartedDaemons>, String> {
    // A generation without daemon groups must not show the previous one's table.
    metrics_endpoint::publish(None, Vec::new());
    if global.daemon_groups.is_empty() {
        return Ok(None);
    }
    let (child_uid, child_gid) = server_process::child_user();
    let facts = ApacheFacts {
        child_uid,
        child_gid,
        parent_pid: std::process::id(),
        socket_prefix: socket_prefix(pool, global),
        default_socket_timeout: main.timeout().unwrap_or(Duration::from_secs(60)),
        argv_area: server_process::argv_area(main),
        apache_version: state::server_version(),
        mpm_name: state::mpm_name(),
    };
    let mut started = StartedDaemons {
        targets: Vec::new(),
        listener_fds: Vec::new(),
    };
    let mut groups = Vec::new();
    let mut paths = Vec::new();
    let hosts = super::daemon_hosts::hosts(global).map_err(|errors| errors.join("; "))?;
    let metrics = metrics_table(pool, main, global);
    for (index, spec) in global.daemon_groups.iter().enumerate() {
        let mut planned = daemon_plan::plan_group(spec, global, &facts, preloads, &SystemAccounts)?;
        planned.daemons.host = hosts[index].clone();
        planned.target.server_name = spec.virtual_host.map(|id| {
            main.iter()
                .find(|v| v.as_ptr() as usize == id)
                .map(|v| v.hostname())
                .unwrap_or_default()
        });
        planned.daemons.plan.metrics = metrics.map(|(table, memory_fd)| MetricsPlace {
            table,
            group: index,
            memory_fd,
        });
        let socket = &planned.socket;
        let fd = listener::create(&socket.path, socket.backlog, socket.owner_uid, socket.gid)
            .map_err(|e| {
                format!(
                    "cannot create the socket of daemon process group '{}' at {}: {e} (check \
                     WSGISocketPrefix and that its directory exists and is writable by root)",
                    spec.name,
                    socket.path.display()
                )
            })?;
        let fd = std::os::fd::IntoRawFd::into_raw_fd(fd);
        paths.push(socket.path.clone());
        log::startup(
            main,
            Level::Info,
            &format!(
                "RW0001: mod_rwsgi: started daemon process group '{}' ({} process(es) x {} threads) on {}",
                spec.name,
                spec.processes,
                spec.threads,
                socket.path.display()
            ),
        );
        let (group, target) = planned.bind(fd);
        groups.push(group);
        started.targets.push(target);
        started.listener_fds.push(fd);
    }
    metrics_endpoint::publish(
        metrics.map(|(table, _)| table),
        global
            .daemon_groups
            .iter()
            .map(|g| g.name.clone())
            .collect(),
    );
    let generation = pool.alloc_rust(Generation {
        groups,
        socket_paths: paths,
        parent_pid: facts.parent_pid,
        manager_pid: 0,
        history: SlotHistory::new(Instant::now()),
        registration: OtherChild::new(pool),
        pool,
        stopping: false,
        hard_stop: false,
    });
    // SAFETY: `generation` lives in pconf until the pool is cleared; the cleanup registered
    // after it runs before its Drop (cleanups run last-in first-out).
    unsafe {
        ffi::apr_pool_cleanup_register(
            pool.as_ptr(),
            generation as *const c_void,
            Some(stop_generation),
            Some(ffi::apr_pool_cleanup_null),
        );
    }
    // SAFETY: `generation` was just allocated in pconf; post_config runs in the
    // single-threaded parent and holds no other reference to it.
    unsafe { spawn_manager(generation, Duration::ZERO) };
    Ok(Some(started))
}

/// The shared metrics table of this generation's groups (None, logged, if it cannot be
/// mapped: the daemons then serve without it). Its mapping is unmapped in this process when
/// `pool` (pconf) is cleared, so graceful restarts do not pile up mappings in the parent;
/// its cleanup is registered before the generation's, so it runs after them.
/// Also the descriptor of its memory, for daemon hosts.
fn metrics_table(
    pool: Pool,
    main: VirtualHost,
    global: &GlobalConfig,
) -> Option<(MetricsTable, Option<i32>)> {
    let processes: Vec<usize> = global
        .daemon_groups
        .iter()
        .map(|g| g.processes.max(1) as usize)
        .collect();
    // SAFETY: the mapping is dropped with pconf, after the generation (which holds the
    // table in its plans) and after `GenerationMetrics` withdrew the published copy: nothing
    // in this process uses the table after that.
    let (table, mapping) = unsafe { metrics_shm::create(&processes) }
        .map_err(|e| {
            log::startup(
                main,
                Level::Warning,
                &format!("RW0121: mod_rwsgi: cannot map the metrics table (rwsgi-metrics): {e}"),
            )
        })
        .ok()?;
    let memory_fd = mapping.memory_fd();
    pool.alloc_rust(GenerationMetrics { _mapping: mapping });
    Some((table, memory_fd))
}

/// The parent's mapping of a generation's metrics table, freed with pconf.
struct GenerationMetrics {
    _mapping: metrics_shm::Mapping,
}

impl Drop for GenerationMetrics {
    fn drop(&mut self) {
        // The endpoint's copy of the table goes first; the mapping is unmapped after this.
        metrics_endpoint::publish(None, Vec::new());
    }
}

/// WSGISocketPrefix (ServerRoot-relative), or `<DefaultRuntimeDir>/rwsgi`.
fn socket_prefix(pool: Pool, global: &GlobalConfig) -> String {
    match &global.socket_prefix {
        Some(p) => pool.absolute_or_server_root(p),
        None => pool
            .runtime_dir_relative("rwsgi")
            .unwrap_or_else(|| "/tmp/rwsgi".into()),
    }
}

/// Forks the daemon manager process. In the child this never returns.
///
/// # Safety
/// `generation` is the live Generation allocated in pconf by `start_daemons`, and no other
/// reference to it is in use: call only from the single-threaded Apache parent
/// (post_config, or the MPM's maintenance callback after its own borrow ended).
unsafe fn spawn_manager(generation: *mut Generation, delay: Duration) {
    // SAFETY: the caller's promise: live, and exclusively ours for this call.
    let generation_ref = unsafe { &mut *generation };
    let groups = generation_ref.groups.clone();
    let apache_parent = nix::unistd::Pid::from_raw(generation_ref.parent_pid as i32);
    // SAFETY: fork in the single-threaded Apache parent. The child only runs our manager
    // code and leaves through _exit, never returning into Apache.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = std::panic::catch_unwind(move || {
            let scoreboard = super::scoreboard::share_for_hosts(&groups);
            manager::manage_daemons(groups, apache_parent, delay, scoreboard)
        })
        .unwrap_or(ManagerExit::Panicked.code());
        // SAFETY: _exit skips atexit handlers and pool cleanups that belong to Apache.
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        log::process(
            Level::Crit,
            &format!(
                "RW0002: mod_rwsgi: cannot fork the daemon manager process: {}",
                std::io::Error::last_os_error()
            ),
        );
        return;
    }
    generation_ref.manager_pid = pid;
    // The manager has no start-up work of its own: it counts as ready at once.
    generation_ref.history.on_start(Instant::now());
    generation_ref.history.on_ready(Instant::now());
    // SAFETY: the generation outlives the registration (both in pconf); `maintenance`
    // catches panics.
    unsafe {
        generation_ref.registration.register(
            pid,
            maintenance,
            generation.cast(),
            generation_ref.pool,
        )
    };
}

/// Called by the MPM (in the parent) when the manager dies or Apache restarts.
unsafe extern "C" fn maintenance(reason: c_int, data: *mut c_void, status: c_int) {
    guard("daemon manager maintenance", (), || {
        let generation = data.cast::<Generation>();
        // SAFETY: `data` is the Generation registered in spawn_manager, alive until pconf
        // is cleared.
        let generation_ref = unsafe { &mut *generation };
        let status = match other_child::reason_from_raw(reason, status) {
            Reason::Death(status) => status,
            Reason::Restart => {
                generation_ref.hard_stop = true;
                return;
            }
            _ => return,
        };
        // SAFETY: removes this registration; APR calls back with UNREGISTER, ignored above.
        unsafe { OtherChild::unregister(data) };
        let dead = generation_ref.manager_pid;
        generation_ref.manager_pid = 0;
        let how = supervisor::describe_death(status);
        if generation_ref.stopping || state::mpm_is_stopping() {
            return;
        }
        let delay = generation_ref.history.on_death(Instant::now(), false);
        log::process(
            Level::Error,
            &format!(
                "RW0003: mod_rwsgi: the daemon manager process (pid {dead}) {how}; restarting it and \
                 its daemons{}",
                if delay.is_zero() {
                    String::new()
                } else {
                    format!(" in {} s", delay.as_secs())
                }
            ),
        );
        // SAFETY: the MPM calls back in the single-threaded parent; `generation_ref` is
        // not used after this point.
        unsafe { spawn_manager(generation, delay) };
    });
}

/// pconf cleanup: stop the daemon manager (and through it every daemon), remove the
/// sockets and close the parent's copies of them.
unsafe extern "C" fn stop_generation(data: *mut c_void) -> ffi::apr_status_t {
    guard("stopping daemons", 0, || {
        // SAFETY: `data` is the Generation registered in start_daemons.
        let generation = unsafe { &mut *data.cast::<Generation>() };
        if std::process::id() != generation.parent_pid {
            return 0; // a forked child clearing its copy of the pool: not ours to stop
        }
        generation.stopping = true;
        // First, so no Apache child connects to a socket whose daemons are stopping: from
        // here until the next generation binds its sockets, children retry the connect.
        for path in &generation.socket_paths {
            let _ = std::fs::remove_file(path);
        }
        for g in &generation.groups {
            // SAFETY: the parent's own copy of a listening socket, no longer used here.
            unsafe { libc::close(g.plan.listener_fd) };
        }
        let graceful = !generation.hard_stop && !state::mpm_is_stopping();
        let pid = generation.manager_pid;
        if pid > 0 && graceful {
            // Graceful restart: the old daemons stop accepting, finish their requests within
            // graceful-timeout and exit with their manager, while the new generation's
            // daemons start on new sockets. Apache is not held up meanwhile.
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(pid, libc::SIGINT) };
            for g in &generation.groups {
                log::process(
                    Level::Info,
                    &format!(
                        "RW0004: mod_rwsgi: graceful restart: daemon process group '{}' ({} \
                         process(es)) drains within graceful-timeout={} s",
                        g.plan.group,
                        g.processes,
                        g.plan.graceful_timeout.as_secs()
                    ),
                );
            }
        } else if pid > 0 {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let window = generation
                .groups
                .iter()
                .map(|g| g.plan.shutdown_timeout)
                .max()
                .unwrap_or(Duration::ZERO)
                + Duration::from_secs(3);
            let deadline = Instant::now() + window;
            let mut gone = false;
            while !gone && Instant::now() < deadline {
                // SAFETY: non-blocking wait for our own child.
                gone = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } != 0;
                if !gone {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            if !gone {
                log::process(
                    Level::Warning,
                    &format!(
                        "RW0005: mod_rwsgi: the daemon manager process (pid {pid}) did not stop within \
                         {} s; killing it (its daemons follow it)",
                        window.as_secs()
                    ),
                );
                // SAFETY: as above.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
            generation.manager_pid = 0;
        }
        0
    })
}

// ---------------------------------------------------------------------------------------
// When: from post_config, or, on Apache's first start when a group asks for the scoreboard
// (`server-metrics=on`), only once the MPM has created it (in a pre_mpm hook, as mod_wsgi
// does), so the daemons inherit its shared memory. On a restart the scoreboard is kept,
// and daemons start from post_config as always.

/// Starts the daemon groups of the configuration just read (post_config, or pre_mpm when
/// a group waits for the scoreboard) and keeps what Apache children need to reach them.
pub(super) fn launch_daemons(pool: Pool, main: VirtualHost) -> c_int {
    let Some(slot) = main_slot() else {
        return ffi::OK;
    };
    let servers = main.iter().filter_map(server_slot).map(|v| &v.server);
    let preloads = daemon_plan::preloads(&slot.global, servers);
    match start_daemons(pool, main, &slot.global, &preloads) {
        Ok(Some(started)) => {
            let _ = slot.daemons.set(started.targets);
            *slot.listener_fds.lock().unwrap_or_else(|e| e.into_inner()) = started.listener_fds;
            ffi::OK
        }
        Ok(None) => ffi::OK,
        Err(msg) => {
            log::startup(main, Level::Emerg, &format!("RW0007: mod_rwsgi: {msg}"));
            ffi::HTTP_INTERNAL_SERVER_ERROR
        }
    }
}

/// pconf and the main server, kept for the deferred start (as addresses: the hook runs on
/// the same thread in the Apache parent, while both are alive).
static DEFERRED: Mutex<Option<(usize, usize)>> = Mutex::new(None);

/// Called by post_config: true when the daemons are to be started later, from pre_mpm by
/// `launch_daemons`, because a group wants the scoreboard (`wanted`) and it does not exist yet
/// (Apache's first start). Called in the real configuration pass only.
pub(super) fn defer_until_scoreboard(pool: Pool, main: VirtualHost, wanted: bool) -> bool {
    if !wanted || scoreboard::exists() {
        return false;
    }
    *DEFERRED.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((pool.as_ptr() as usize, main.as_ptr() as usize));
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
        let Some((pool, main)) = DEFERRED.lock().unwrap_or_else(|e| e.into_inner()).take() else {
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
        launch_daemons(pool, main)
    })
}
