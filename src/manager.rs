//! Part of the composition root: the Apache parent's side of daemon mode. In the real
//! post_config pass it creates each WSGIDaemonProcess group's socket, forks its processes,
//! registers them with the MPM's "other child" registry, restarts them when they die (with
//! backoff), and stops them in order when the configuration generation ends.

use std::ffi::c_void;
use std::os::raw::c_int;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::apache::log::{self, Level};
use crate::apache::pool::Pool;
use crate::apache::process::{self, OtherChild, Reason};
use crate::apache::server::{self, Server};
use crate::apache::state;
use crate::config::{DaemonGroupSpec, GlobalConfig, Host};
use crate::daemon::process::DaemonPlan;
use crate::daemon::spawn::{ChildSetup, Identity};
use crate::daemon::supervisor::{self, SlotHistory};
use crate::daemon::worker::ServeSettings;
use crate::daemon::{listener, process as daemon_process};
use crate::ffi;
use crate::handler::DaemonTarget;
use crate::module::{SystemAccounts, main_slot};
use crate::python::InterpreterSettings;

/// One process group of this generation, owned by the configuration pool.
struct GroupState {
    plan: DaemonPlan,
    socket_path: PathBuf,
    listener_fd: c_int,
    parent_pid: u32,
    slots: Vec<*mut SlotState>,
    stopping: bool,
    /// Set when the MPM announced a stop or hard restart (APR_OC_REASON_RESTART); a
    /// graceful restart sends no such notice.
    hard_stop: bool,
}

/// One process slot of a group: APR's registration data for the daemon in it.
struct SlotState {
    group: *mut GroupState,
    index: usize,
    pid: i32,
    history: SlotHistory,
    registration: OtherChild,
    pool: Pool,
}

/// Creates sockets and forks daemons (real start-up pass only).
pub(crate) fn start_daemons(pool: Pool, s: *mut ffi::server_rec) -> Result<(), String> {
    if !state::is_real_config_pass() {
        return Ok(());
    }
    let Some(slot) = main_slot() else {
        return Ok(());
    };
    if slot.global.daemon_groups.is_empty() {
        return Ok(());
    }
    let (apache_uid, apache_gid) = server::child_user();
    let prefix = socket_prefix(pool, &slot.global);
    let parent_pid = std::process::id();
    // SAFETY: `s` is the main server of this generation, passed to post_config, live
    // for the whole call.
    let main_rec = unsafe { s.as_ref() };
    let argv_area = main_rec
        .and_then(|srv| process::argv_area(srv.process))
        .map(|(p, n)| (p as usize, n));
    let timeout_us = main_rec.map(|srv| srv.timeout).unwrap_or(60_000_000);
    let default_socket_timeout =
        Duration::from_secs(u64::try_from(timeout_us / 1_000_000).unwrap_or(60));
    let preloads = preloads(&slot.global, s);
    let mut targets = Vec::new();
    let mut fds = Vec::new();
    for spec in slot.global.daemon_groups.iter() {
        // The path stays the same across graceful restarts (like WSGISocketRotation Off):
        // Apache children of the old generation still finishing requests then reach the new
        // generation's daemons. It is keyed by group name, so a changed config never sends a
        // request to another group's daemons.
        let path = PathBuf::from(format!(
            "{prefix}.{parent_pid}.{}.sock",
            socket_name(&spec.name)
        ));
        let ids = spec.resolve_ids(&SystemAccounts).map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let socket_owner = ids.socket_uid.unwrap_or(apache_uid);
        let fd = listener::create(&path, spec.listen_backlog as i32, socket_owner, apache_gid)
            .map_err(|e| {
                format!(
                    "cannot create the socket of daemon process group '{}' at {}: {e} (check \
                     WSGISocketPrefix and that its directory exists and is writable by root)",
                    spec.name,
                    path.display()
                )
            })?;
        let fd = std::os::fd::IntoRawFd::into_raw_fd(fd);
        let socket_timeout = spec.socket_timeout.unwrap_or(default_socket_timeout);
        let identity = identity(spec, &ids, apache_uid, apache_gid);
        let home = spec.home.clone().or_else(|| {
            (identity.uid != apache_uid)
                .then(|| SystemAccounts.home_of_uid(identity.uid))
                .flatten()
        });
        let plan = DaemonPlan {
            group: spec.name.clone(),
            listener_fd: fd,
            setup: ChildSetup {
                keep_fds: vec![fd],
                identity: Some(identity),
                umask: spec.umask,
                home,
                lang: spec.lang.clone(),
                locale: spec.locale.clone(),
                display_name: spec.display_name_for(),
                argv_area,
            },
            interpreter: InterpreterSettings {
                python_home: spec
                    .python_home
                    .clone()
                    .or_else(|| slot.global.python_home.clone()),
                python_path: if spec.python_path.is_empty() {
                    slot.global.python_path.clone()
                } else {
                    spec.python_path.clone()
                },
                build_executable: env!("RWSGI_BUILD_PYTHON_EXECUTABLE").to_string(),
                build_version: env!("RWSGI_BUILD_PYTHON_VERSION").to_string(),
                restrict_stdout: slot.global.restrict_stdout,
                process_group: spec.name.clone(),
                processes: spec.processes,
                processes_given: spec.processes_given,
                threads: spec.threads,
                maximum_requests: u64::from(spec.maximum_requests.unwrap_or(0)),
            },
            serve: ServeSettings {
                group: spec.name.clone(),
                threads: spec.threads.max(1) as usize,
                socket_timeout,
                queue_timeout: spec.queue_timeout,
                maximum_requests: u64::from(spec.maximum_requests.unwrap_or(0)),
            },
            preload: preloads
                .iter()
                .filter(|(g, _, _)| g == &spec.name)
                .map(|(_, s, a)| (s.clone(), a.clone()))
                .collect(),
            start_delay: Duration::ZERO,
            shutdown_timeout: spec.shutdown_timeout.unwrap_or(Duration::ZERO),
            graceful_timeout: spec.graceful_timeout.unwrap_or(Duration::ZERO),
            eviction_timeout: spec.effective_eviction_timeout().unwrap_or(Duration::ZERO),
            // Scripts are checked per request (WSGIScriptReloading is per directory), as
            // mod_wsgi does.
            script_reloading: false,
            timers: crate::daemon::process::Timers {
                request_timeout: spec.request_timeout,
                inactivity_timeout: spec.inactivity_timeout,
                restart_interval: spec.restart_interval,
                deadlock_timeout: spec.deadlock_timeout,
                startup_timeout: spec.startup_timeout,
            },
        };
        let group = pool.alloc_rust(GroupState {
            plan,
            socket_path: path.clone(),
            listener_fd: fd,
            parent_pid,
            slots: Vec::new(),
            stopping: false,
            hard_stop: false,
        });
        // SAFETY: `group` lives in pconf until the pool is cleared; the cleanup registered
        // after it runs before its Drop (cleanups run last-in first-out).
        unsafe {
            ffi::apr_pool_cleanup_register(
                pool.as_ptr(),
                group as *const c_void,
                Some(stop_group),
                Some(ffi::apr_pool_cleanup_null),
            );
        }
        for index in 0..spec.processes.max(1) as usize {
            let slot_state = pool.alloc_rust(SlotState {
                group,
                index,
                pid: 0,
                history: SlotHistory::new(Instant::now()),
                registration: OtherChild::new(pool),
                pool,
            });
            // SAFETY: both live in pconf for the generation; single-threaded parent.
            unsafe { (*group).slots.push(slot_state) };
            spawn(slot_state, Duration::ZERO);
        }
        log::startup(
            s,
            Level::Info,
            &format!(
                "mod_rwsgi: started daemon process group '{}' ({} process(es) x {} threads) on {}",
                spec.name,
                spec.processes,
                spec.threads,
                path.display()
            ),
        );
        targets.push(DaemonTarget {
            group: spec.name.clone(),
            socket_path: path,
            connect_timeout: spec.connect_timeout,
            socket_timeout,
            request_timeout: spec.request_timeout,
        });
        fds.push(fd);
    }
    slot.daemons = targets;
    slot.listener_fds = fds;
    Ok(())
}

/// A group name made safe for a file name (alphanumerics, '-', '_' kept; others hex).
fn socket_name(group: &str) -> String {
    group
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// WSGISocketPrefix (ServerRoot-relative), or `<DefaultRuntimeDir>/rwsgi`.
fn socket_prefix(pool: Pool, global: &GlobalConfig) -> String {
    match &global.socket_prefix {
        Some(p) => pool.server_root_relative(p).unwrap_or_else(|| p.clone()),
        None => pool
            .runtime_dir_relative("rwsgi")
            .unwrap_or_else(|| "/tmp/rwsgi".into()),
    }
}

/// Scripts to load before serving: WSGIImportScript, and WSGIScriptAlias with both groups
/// literal (as mod_wsgi). Returns (group, script, application group).
fn preloads(global: &GlobalConfig, s: *mut ffi::server_rec) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for import in &global.import_scripts {
        if let (Some(group), true) = (
            import.process_group.literal_name(),
            import.application_group.is_literal(),
        ) {
            let app = import
                .application_group
                .literal_name()
                .unwrap_or("")
                .to_string();
            out.push((group.to_string(), import.script.clone(), app));
        }
    }
    // SAFETY: `s` is the main server of this generation.
    if let Some(main) = unsafe { Server::from_raw(s) } {
        for srv in main.iter() {
            let Some(slot) = crate::module::server_slot(srv) else {
                continue;
            };
            for alias in &slot.server.script_aliases {
                if alias.preload() && !alias.is_match {
                    let group = alias.literal_process_group().unwrap_or("").to_string();
                    let app = alias
                        .application_group
                        .as_ref()
                        .and_then(|a| a.literal_name())
                        .unwrap_or("")
                        .to_string();
                    out.push((group, alias.script.clone(), app));
                }
            }
        }
    }
    out
}

fn identity(
    spec: &DaemonGroupSpec,
    ids: &crate::config::ResolvedIds,
    apache_uid: u32,
    apache_gid: u32,
) -> Identity {
    let uid = ids.uid.unwrap_or(apache_uid);
    let gid = ids.gid.unwrap_or(apache_gid);
    let user_name = nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    Identity {
        uid,
        gid,
        user_name,
        supplementary: ids.supplementary_gids.clone(),
        configured: spec.user.is_some() || spec.group.is_some(),
    }
}

/// Forks the daemon of one slot. In the child this never returns.
fn spawn(slot: *mut SlotState, delay: Duration) {
    // SAFETY: slot and its group live in pconf for the generation; the parent is
    // single-threaded here (post_config or the MPM's maintenance callback).
    let (slot_ref, group) = unsafe { (&mut *slot, &mut *(*slot).group) };
    let mut plan = group.plan.clone();
    plan.start_delay = delay;
    // SAFETY: fork in the single-threaded Apache parent. The child only runs our daemon
    // code and leaves through _exit, never returning into Apache.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = std::panic::catch_unwind(move || daemon_process::run(plan)).unwrap_or(70);
        // SAFETY: _exit skips atexit handlers and pool cleanups that belong to Apache.
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        log::server(
            std::ptr::null(),
            Level::Crit,
            &format!(
                "mod_rwsgi: cannot fork a process for daemon group '{}': {}",
                group.plan.group,
                std::io::Error::last_os_error()
            ),
        );
        return;
    }
    slot_ref.pid = pid;
    slot_ref.history.started_at = Instant::now();
    // SAFETY: `slot` outlives the registration (both in pconf); `maintenance` catches panics.
    unsafe {
        slot_ref
            .registration
            .register(pid, maintenance, slot.cast(), slot_ref.pool)
    };
}

/// Called by the MPM (in the parent) when a daemon dies or Apache restarts.
unsafe extern "C" fn maintenance(reason: c_int, data: *mut c_void, status: c_int) {
    crate::module::guard("daemon maintenance", (), || {
        let slot = data.cast::<SlotState>();
        // SAFETY: `data` is the SlotState registered in spawn, alive until pconf is cleared.
        let (slot_ref, group) = unsafe { (&mut *slot, &mut *(*slot).group) };
        let status = match process::reason_from_raw(reason, status) {
            Reason::Death(status) => status,
            Reason::Restart => {
                group.hard_stop = true;
                return;
            }
            _ => return,
        };
        // SAFETY: removes this registration; APR calls back with UNREGISTER, ignored above.
        unsafe { OtherChild::unregister(data) };
        let dead = slot_ref.pid;
        slot_ref.pid = 0;
        let how = supervisor::describe_death(status);
        if group.stopping || state::mpm_is_stopping() {
            log::server(
                std::ptr::null(),
                Level::Info,
                &format!(
                    "mod_rwsgi: daemon process '{}' (pid {dead}) {how}; Apache is stopping",
                    group.plan.group
                ),
            );
            return;
        }
        let planned = status == crate::daemon::process::EXIT_PLANNED_RESTART;
        let delay = slot_ref.history.on_death(Instant::now(), planned);
        log::server(
            std::ptr::null(),
            if delay.is_zero() {
                Level::Info
            } else {
                Level::Error
            },
            &format!(
                "mod_rwsgi: daemon process '{}' #{} (pid {dead}) {how}{}; restarting{}",
                group.plan.group,
                slot_ref.index,
                if planned { " (a planned restart)" } else { "" },
                if delay.is_zero() {
                    String::new()
                } else {
                    format!(
                        " in {} s (it died {} time(s) in a row soon after starting)",
                        delay.as_secs(),
                        slot_ref.history.quick_deaths
                    )
                }
            ),
        );
        spawn(slot, delay);
    });
}

/// pconf cleanup: stop the group's daemons (SIGTERM, then SIGKILL after shutdown-timeout),
/// remove the socket and close the parent's copy of it.
unsafe extern "C" fn stop_group(data: *mut c_void) -> ffi::apr_status_t {
    crate::module::guard("stopping daemons", 0, || {
        // SAFETY: `data` is the GroupState registered in start_daemons.
        let group = unsafe { &mut *data.cast::<GroupState>() };
        if std::process::id() != group.parent_pid {
            return 0; // a forked child clearing its copy of the pool: not ours to stop
        }
        group.stopping = true;
        let graceful = !group.hard_stop && !state::mpm_is_stopping();
        let pids: Vec<i32> = group
            .slots
            .iter()
            // SAFETY: slots live in pconf, cleared after this cleanup.
            .map(|s| unsafe { (**s).pid })
            .filter(|p| *p > 0)
            .collect();
        if graceful {
            // Graceful restart: the old daemons stop accepting, finish their requests within
            // graceful-timeout and exit on their own, while the new generation's daemons
            // start on a new socket. Apache is not held up meanwhile.
            for pid in &pids {
                // SAFETY: signalling our own daemon children by PID.
                unsafe { libc::kill(*pid, libc::SIGINT) };
            }
            log::server(
                std::ptr::null(),
                Level::Info,
                &format!(
                    "mod_rwsgi: graceful restart: daemon process group '{}' ({} process(es)) \
                     drains within graceful-timeout={} s",
                    group.plan.group,
                    pids.len(),
                    group.plan.graceful_timeout.as_secs()
                ),
            );
            let _ = std::fs::remove_file(&group.socket_path);
            // SAFETY: the parent's own copy of the listening socket, no longer used here.
            unsafe { libc::close(group.listener_fd) };
            return 0;
        }
        for pid in &pids {
            // SAFETY: signalling our own daemon children by PID.
            unsafe { libc::kill(*pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + group.plan.shutdown_timeout + Duration::from_secs(1);
        let mut remaining = pids.clone();
        while !remaining.is_empty() && Instant::now() < deadline {
            remaining.retain(|pid| {
                // SAFETY: non-blocking wait for our own child.
                unsafe { libc::waitpid(*pid, std::ptr::null_mut(), libc::WNOHANG) == 0 }
            });
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in &remaining {
            log::server(
                std::ptr::null(),
                Level::Warning,
                &format!(
                    "mod_rwsgi: daemon process '{}' (pid {pid}) did not stop within \
                     shutdown-timeout; killing it",
                    group.plan.group
                ),
            );
            // SAFETY: as above.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
                libc::waitpid(*pid, std::ptr::null_mut(), 0);
            }
        }
        for s in &group.slots {
            // SAFETY: as above; the pids were reaped.
            unsafe { (**s).pid = 0 };
        }
        let _ = std::fs::remove_file(&group.socket_path);
        // SAFETY: the parent's own copy of the listening socket, no longer used.
        unsafe { libc::close(group.listener_fd) };
        0
    })
}
