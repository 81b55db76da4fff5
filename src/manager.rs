//! Part of the composition root: the Apache parent's side of daemon mode. In the real
//! post_config pass it creates each WSGIDaemonProcess group's socket and forks the daemon
//! manager process (`daemon::manager_process`), which forks and supervises the daemons.
//! The manager is registered with the MPM's "other child" registry, restarted (with
//! backoff) if it dies, and told to stop when the configuration generation ends: SIGINT on
//! a graceful restart (daemons drain, nobody waits), SIGTERM on stop or hard restart
//! (waited for, up to shutdown-timeout).

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
use crate::daemon::listener;
use crate::daemon::manager_process::{self, GroupPlan};
use crate::daemon::metrics_shm::MetricsPlace;
use crate::daemon::process::DaemonPlan;
use crate::daemon::spawn::{ChildSetup, Identity, ResourceLimits};
use crate::daemon::supervisor::{self, SlotHistory};
use crate::daemon::worker::ServeSettings;
use crate::ffi;
use crate::handler::DaemonTarget;
use crate::module::{SystemAccounts, main_slot};
use crate::python::InterpreterSettings;

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

/// Creates sockets and forks daemons (real start-up pass only).
pub(crate) fn start_daemons(pool: Pool, s: *mut ffi::server_rec) -> Result<(), String> {
    if !state::is_real_config_pass() || crate::server_metrics::defer_until_scoreboard(pool, s) {
        return Ok(());
    }
    start_daemons_now(pool, s)
}

/// [`start_daemons`] once it is time.
pub(crate) fn start_daemons_now(pool: Pool, s: *mut ffi::server_rec) -> Result<(), String> {
    // A generation without daemon groups must not show the previous one's table.
    crate::handler::metrics_endpoint::publish(None, Vec::new());
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
    let mut groups = Vec::new();
    let mut paths = Vec::new();
    let metrics = metrics_table(s, &slot.global);
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
            control_fd: None,
            setup: ChildSetup {
                keep_fds: vec![fd],
                identity: Some(identity),
                umask: spec.umask,
                home,
                lang: spec.lang.clone(),
                locale: spec.locale.clone(),
                display_name: spec.display_name_for(),
                argv_area,
                limits: ResourceLimits {
                    cpu_time: spec.cpu_time_limit.map(|d| d.as_secs()),
                    cpu_time_grace: spec.graceful_timeout.unwrap_or_default().as_secs(),
                    data: spec.memory_limit,
                    address_space: spec.virtual_memory_limit,
                    priority: spec.cpu_priority,
                },
                env_file: spec.env_file.clone(),
                env: spec.env.clone(),
            },
            interpreter: InterpreterSettings {
                // python-home='' means Python's own default, not WSGIPythonHome (mod_wsgi).
                python_home: match spec.python_home.as_deref() {
                    Some("") => None,
                    Some(home) => Some(home.to_string()),
                    None => slot.global.python_home.clone(),
                },
                python_path: if spec.python_path.is_empty() {
                    slot.global.python_path.clone()
                } else {
                    spec.python_path.clone()
                },
                process_group: spec.name.clone(),
                processes: spec.processes,
                processes_given: spec.processes_given,
                threads: spec.threads,
                maximum_requests: u64::from(spec.maximum_requests.unwrap_or(0)),
                header_buffer_size: spec.header_buffer_size as usize,
                apache_version: crate::apache::state::server_version(),
                // As mod_wsgi: WSGIPythonEggs and WSGISwitchInterval are for embedded mode;
                // a daemon group has its own options.
                python_eggs: spec.python_eggs.clone(),
                switch_interval: spec.switch_interval,
                server_metrics: spec.server_metrics,
                ..crate::module::server_python(&slot.global)
            },
            serve: ServeSettings {
                group: spec.name.clone(),
                processes: spec.processes.max(1) as usize,
                threads: spec.threads.max(1) as usize,
                socket_timeout,
                queue_timeout: spec.queue_timeout,
                maximum_requests: u64::from(spec.maximum_requests.unwrap_or(0)),
                maximum_rss: spec.maximum_rss,
                stack_size: spec.stack_size.map(|n| n as usize),
                send_buffer_size: spec.send_buffer_size.map(|n| n as usize),
                receive_buffer_size: spec.receive_buffer_size.map(|n| n as usize),
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
                interrupt_timeout: spec.interrupt_timeout,
                inactivity_timeout: spec.inactivity_timeout,
                restart_interval: spec.restart_interval,
                deadlock_timeout: spec.deadlock_timeout,
                startup_timeout: spec.startup_timeout,
            },
            metrics: metrics.map(|table| MetricsPlace {
                table,
                group: groups.len(),
            }),
            metrics_record: None,
        };
        groups.push(GroupPlan {
            plan,
            processes: spec.processes.max(1) as usize,
        });
        paths.push(path.clone());
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
            response_socket_timeout: spec.effective_response_socket_timeout(),
            response_flush_delay: spec.response_flush_delay,
            response_buffer_size: spec.response_buffer_size as usize,
            script_owner: crate::handler::script_owner::ScriptOwner {
                uid: ids.script_uid,
                gid: ids.script_gid,
            },
        });
        fds.push(fd);
    }
    crate::handler::metrics_endpoint::publish(
        metrics,
        slot.global
            .daemon_groups
            .iter()
            .map(|g| g.name.clone())
            .collect(),
    );
    let generation = pool.alloc_rust(Generation {
        groups,
        socket_paths: paths,
        parent_pid,
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
    spawn_manager(generation, Duration::ZERO);
    let _ = slot.daemons.set(targets);
    *slot.listener_fds.lock().unwrap_or_else(|e| e.into_inner()) = fds;
    Ok(())
}

/// The shared metrics table of this generation's groups (None, logged, if it cannot be
/// mapped: the daemons then serve without it).
fn metrics_table(
    s: *mut ffi::server_rec,
    global: &GlobalConfig,
) -> Option<crate::protocol::metrics_table::MetricsTable> {
    let processes: Vec<usize> = global
        .daemon_groups
        .iter()
        .map(|g| g.processes.max(1) as usize)
        .collect();
    crate::daemon::metrics_shm::create(&processes)
        .map_err(|e| {
            log::startup(
                s,
                Level::Warning,
                &format!("mod_rwsgi: cannot map the metrics table (rwsgi-metrics): {e}"),
            )
        })
        .ok()
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

/// Forks the daemon manager process. In the child this never returns.
fn spawn_manager(generation: *mut Generation, delay: Duration) {
    // SAFETY: the generation lives in pconf; the parent is single-threaded here
    // (post_config or the MPM's maintenance callback).
    let generation_ref = unsafe { &mut *generation };
    let groups = generation_ref.groups.clone();
    let apache_parent = nix::unistd::Pid::from_raw(generation_ref.parent_pid as i32);
    // SAFETY: fork in the single-threaded Apache parent. The child only runs our manager
    // code and leaves through _exit, never returning into Apache.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code =
            std::panic::catch_unwind(move || manager_process::run(groups, apache_parent, delay))
                .unwrap_or(70);
        // SAFETY: _exit skips atexit handlers and pool cleanups that belong to Apache.
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        log::server(
            std::ptr::null(),
            Level::Crit,
            &format!(
                "mod_rwsgi: cannot fork the daemon manager process: {}",
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
    crate::module::guard("daemon manager maintenance", (), || {
        let generation = data.cast::<Generation>();
        // SAFETY: `data` is the Generation registered in spawn_manager, alive until pconf
        // is cleared.
        let generation_ref = unsafe { &mut *generation };
        let status = match process::reason_from_raw(reason, status) {
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
        log::server(
            std::ptr::null(),
            Level::Error,
            &format!(
                "mod_rwsgi: the daemon manager process (pid {dead}) {how}; restarting it and \
                 its daemons{}",
                if delay.is_zero() {
                    String::new()
                } else {
                    format!(" in {} s", delay.as_secs())
                }
            ),
        );
        spawn_manager(generation, delay);
    });
}

/// pconf cleanup: stop the daemon manager (and through it every daemon), remove the
/// sockets and close the parent's copies of them.
unsafe extern "C" fn stop_generation(data: *mut c_void) -> ffi::apr_status_t {
    crate::module::guard("stopping daemons", 0, || {
        // SAFETY: `data` is the Generation registered in start_daemons.
        let generation = unsafe { &mut *data.cast::<Generation>() };
        if std::process::id() != generation.parent_pid {
            return 0; // a forked child clearing its copy of the pool: not ours to stop
        }
        generation.stopping = true;
        let graceful = !generation.hard_stop && !state::mpm_is_stopping();
        let pid = generation.manager_pid;
        if pid > 0 && graceful {
            // Graceful restart: the old daemons stop accepting, finish their requests within
            // graceful-timeout and exit with their manager, while the new generation's
            // daemons start on new sockets. Apache is not held up meanwhile.
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(pid, libc::SIGINT) };
            for g in &generation.groups {
                log::server(
                    std::ptr::null(),
                    Level::Info,
                    &format!(
                        "mod_rwsgi: graceful restart: daemon process group '{}' ({} \
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
                log::server(
                    std::ptr::null(),
                    Level::Warning,
                    &format!(
                        "mod_rwsgi: the daemon manager process (pid {pid}) did not stop within \
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
        for path in &generation.socket_paths {
            let _ = std::fs::remove_file(path);
        }
        for g in &generation.groups {
            // SAFETY: the parent's own copy of a listening socket, no longer used here.
            unsafe { libc::close(g.plan.listener_fd) };
        }
        0
    })
}
