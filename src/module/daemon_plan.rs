//! What the configuration becomes for the processes that run Python: the server-wide
//! interpreter settings, the scripts to load before serving, and for each WSGIDaemonProcess
//! group what the daemon manager runs (processes, threads, identity, socket, Python
//! settings, timers) and what Apache children need to reach it. Pure: no Apache, no Python,
//! no system calls; the facts about the running Apache and the system's accounts come in
//! as arguments (`daemon_launch.rs` gathers them), so it is tested on its own.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{DaemonGroupSpec, GlobalConfig, Host, ResolvedIds, ServerConfig};
use crate::daemon::dispatcher::ServeSettings;
use crate::daemon::manager::GroupPlan;
use crate::daemon::serving_daemon::{DaemonPlan, Timers};
use crate::daemon::spawn::{ChildSetup, Identity, ResourceLimits};
use crate::daemon::telemetry::TelemetryPlan;
use crate::handler::DaemonTarget;
use crate::handler::script_owner::ScriptOwner;

// websocket-max-message-size= may not exceed what a WsMsg frame carries.
const _: () =
    assert!(crate::config::WEBSOCKET_MAX_MESSAGE_SIZE_LIMIT == crate::protocol::WS_MESSAGE_MAX);
use crate::python::InterpreterSettings;

/// The Python settings every process of this configuration shares (server-wide
/// directives); daemon groups and embedded mode add their own on top.
pub(crate) fn server_python(global: &GlobalConfig) -> InterpreterSettings {
    InterpreterSettings {
        python_home: global.python_home.clone(),
        python_path: global.python_path.clone(),
        restrict_stdout: global.restrict_stdout,
        restrict_stdin: global.restrict_stdin,
        restrict_signal: global.restrict_signal,
        per_interpreter_gil: global.per_interpreter_gil,
        optimize: global.python_optimize,
        dont_write_bytecode: global.dont_write_bytecode,
        warnings: global.python_warnings.clone(),
        hash_seed: global.python_hash_seed,
        python_eggs: global.python_eggs.clone(),
        switch_interval: global.switch_interval,
        destroy_interpreter: global.destroy_interpreter,
        // Embedded mode's: the sections with process-group=%{GLOBAL} (or none) apply.
        free_threading: crate::config::resolve_free_threading(
            &global.interpreter_options,
            "",
            global.free_threading,
        ),
        server_metrics: global.server_metrics,
        case_sensitivity: global.case_sensitivity,
        interpreter_options: global.interpreter_options.clone(),
        ..InterpreterSettings::default()
    }
}

/// A script a daemon group loads before serving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Preload {
    pub group: String,
    pub script: String,
    pub application_group: String,
    /// `interface=asgi`: the callable whose lifespan.startup runs before the daemon serves.
    pub asgi_callable: Option<String>,
}

/// Scripts to load before serving: WSGIImportScript, and WSGIScriptAlias with both groups
/// literal (as mod_wsgi); `servers` are the main server's and every virtual host's
/// configurations. Group "" (`process-group=%{GLOBAL}`): each Apache child loads it.
pub(crate) fn preloads<'a>(
    global: &GlobalConfig,
    servers: impl IntoIterator<Item = &'a ServerConfig>,
) -> Vec<Preload> {
    let mut out = Vec::new();
    for import in &global.import_scripts {
        if import.process_group.is_literal() && import.application_group.is_literal() {
            let group = import.process_group.literal_name().unwrap_or("");
            let app = import.application_group.literal_name().unwrap_or("");
            out.push(Preload {
                group: group.to_string(),
                script: import.script.clone(),
                application_group: app.to_string(),
                asgi_callable: None,
            });
        }
    }
    for server in servers {
        for alias in &server.script_aliases {
            if alias.preload() && !alias.is_match {
                let group = alias.literal_process_group().unwrap_or("");
                let app = alias
                    .application_group
                    .as_ref()
                    .and_then(|a| a.literal_name())
                    .unwrap_or("");
                out.push(Preload {
                    group: group.to_string(),
                    script: alias.script.clone(),
                    application_group: app.to_string(),
                    asgi_callable: (alias.interface == crate::config::Interface::Asgi).then(|| {
                        alias
                            .callable_object
                            .clone()
                            .unwrap_or_else(|| "application".to_string())
                    }),
                });
            }
        }
    }
    out
}

/// Facts about the running Apache that a daemon group's plan depends on.
#[derive(Clone, Debug)]
pub(crate) struct ApacheFacts {
    /// The uid and gid of Apache's children (`User`, `Group`).
    pub child_uid: u32,
    pub child_gid: u32,
    /// The Apache parent's pid (part of the socket path).
    pub parent_pid: u32,
    /// WSGISocketPrefix made absolute, or the default under Apache's runtime directory.
    pub socket_prefix: String,
    /// Apache's `Timeout` (to the microsecond: `Timeout 500ms` is 0.5 s): socket-timeout's
    /// default.
    pub default_socket_timeout: Duration,
    /// Apache's argv memory (start, length), overwritten with `display-name`.
    pub argv_area: Option<(usize, usize)>,
    /// The running Apache's version (major, minor, patch).
    pub apache_version: (u32, u32, u32),
    /// The running MPM's name ("event", "worker", "prefork").
    pub mpm_name: String,
}

/// One daemon group, planned: the socket to create, what the daemon manager runs and
/// what Apache children use to reach it.
#[derive(Clone, Debug)]
pub(crate) struct PlannedGroup {
    pub socket: SocketPlan,
    /// The group for the daemon manager; its listener is set by [`PlannedGroup::bind`].
    pub daemons: GroupPlan,
    /// How Apache children reach the group.
    pub target: DaemonTarget,
}

/// The listening socket of one daemon group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SocketPlan {
    pub path: PathBuf,
    pub backlog: i32,
    /// `socket-user=`, else Apache's User.
    pub owner_uid: u32,
    pub gid: u32,
}

impl PlannedGroup {
    /// The group's plan with its listening socket `fd`, which every daemon keeps.
    pub fn bind(mut self, fd: i32) -> (GroupPlan, DaemonTarget) {
        self.daemons.plan.listener_fd = fd;
        self.daemons.plan.setup.keep_fds = vec![fd];
        (self.daemons, self.target)
    }
}

/// What the telemetry directives ask of each process that serves WSGI requests (daemon
/// processes, and Apache children in embedded mode); None without WSGITelemetryService.
/// `apache_version` and `mpm_name` are the running Apache's (see [`ApacheFacts`]).
pub(crate) fn telemetry_plan(
    global: &GlobalConfig,
    apache_version: (u32, u32, u32),
    mpm_name: &str,
) -> Option<TelemetryPlan> {
    let (major, minor, patch) = apache_version;
    global.telemetry().map(|t| TelemetryPlan {
        socket: t.socket.into(),
        interval: Duration::from_secs_f64(t.interval),
        slow_threshold: t.slow_threshold.map(Duration::from_secs_f64),
        capture_user_agent: t.capture_user_agent,
        apache_version: format!("Apache/{major}.{minor}.{patch}"),
        mpm_name: mpm_name.to_owned(),
    })
}

/// What one WSGIDaemonProcess group becomes. Errors: a user or group that does not
/// resolve (`apache2 -t` reports these first, through `GlobalConfig::check`).
pub(crate) fn plan_group(
    spec: &DaemonGroupSpec,
    global: &GlobalConfig,
    facts: &ApacheFacts,
    preloads: &[Preload],
    accounts: &dyn Host,
) -> Result<PlannedGroup, String> {
    let ids = spec.resolve_ids(accounts).map_err(|errs| {
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let socket = socket_plan(spec, &ids, facts);
    let socket_timeout = socket_timeout(spec, facts)?;
    let maximum_requests = u64::from(spec.maximum_requests.unwrap_or(0));
    let plan = DaemonPlan {
        group: spec.name.clone(),
        // Set by PlannedGroup::bind once the socket exists.
        listener_fd: -1,
        control_fd: None,
        setup: child_setup(spec, &ids, facts, accounts),
        interpreter: daemon_interpreter(spec, global, facts, maximum_requests),
        serve: serve_settings(spec, socket_timeout, maximum_requests),
        preload: preloads
            .iter()
            .filter(|p| p.group == spec.name)
            .map(|p| (p.script.clone().into(), p.application_group.clone()))
            .collect(),
        asgi_startup: preloads
            .iter()
            .filter(|p| p.group == spec.name)
            .filter_map(|p| {
                let callable = p.asgi_callable.clone()?;
                Some((
                    p.script.clone().into(),
                    p.application_group.clone(),
                    callable,
                ))
            })
            .collect(),
        start_delay: Duration::ZERO,
        shutdown_timeout: spec.shutdown_timeout.unwrap_or(Duration::ZERO),
        graceful_timeout: spec.graceful_timeout.unwrap_or(Duration::ZERO),
        eviction_timeout: spec.effective_eviction_timeout().unwrap_or(Duration::ZERO),
        timers: Timers {
            request_timeout: spec.request_timeout,
            interrupt_timeout: spec.interrupt_timeout,
            inactivity_timeout: spec.inactivity_timeout,
            restart_interval: spec.restart_interval,
            deadlock_timeout: spec.deadlock_timeout,
            startup_timeout: spec.startup_timeout,
        },
        // Placed by the launcher once the generation's metrics table is mapped.
        metrics: None,
        metrics_record: None,
        telemetry: telemetry_plan(global, facts.apache_version, &facts.mpm_name),
    };
    let target = daemon_target(spec, &ids, socket.path.clone(), socket_timeout);
    Ok(PlannedGroup {
        socket,
        daemons: GroupPlan {
            plan,
            processes: spec.processes.max(1) as usize,
            // Placed by the launcher (`daemon_hosts`).
            host: None,
        },
        target,
    })
}

/// The group's listening socket: its path, backlog and owner.
fn socket_plan(spec: &DaemonGroupSpec, ids: &ResolvedIds, facts: &ApacheFacts) -> SocketPlan {
    // The path stays the same across graceful restarts (like WSGISocketRotation Off):
    // Apache children of the old generation still finishing requests then reach the new
    // generation's daemons. It is keyed by group name, so a changed config never sends a
    // request to another group's daemons.
    let path = PathBuf::from(format!(
        "{}.{}.{}.sock",
        facts.socket_prefix,
        facts.parent_pid,
        socket_name(&spec.name)
    ));
    SocketPlan {
        path,
        backlog: i32::try_from(spec.listen_backlog).unwrap_or(i32::MAX),
        owner_uid: ids.socket_uid.unwrap_or(facts.child_uid),
        gid: facts.child_gid,
    }
}

/// socket-timeout=, else Apache's Timeout; an error if that is zero.
fn socket_timeout(spec: &DaemonGroupSpec, facts: &ApacheFacts) -> Result<Duration, String> {
    let socket_timeout = spec.socket_timeout.unwrap_or(facts.default_socket_timeout);
    if socket_timeout.is_zero() {
        // A zero timeout would make every connection to the daemons fail at once.
        return Err(format!(
            "WSGIDaemonProcess {}: socket-timeout is not set and Apache's Timeout is 0; a \
             connection to the daemon processes cannot work without a timeout: set \
             socket-timeout= or a nonzero Timeout",
            spec.name
        ));
    }
    Ok(socket_timeout)
}

/// How a daemon process prepares itself after fork: identity, home, locale, names, limits,
/// environment.
fn child_setup(
    spec: &DaemonGroupSpec,
    ids: &ResolvedIds,
    facts: &ApacheFacts,
    accounts: &dyn Host,
) -> ChildSetup {
    let identity = identity(spec, ids, facts, accounts);
    let home = spec.home.clone().or_else(|| {
        (identity.uid != facts.child_uid)
            .then(|| accounts.home_of_uid(identity.uid))
            .flatten()
    });
    ChildSetup {
        keep_fds: Vec::new(),
        identity: Some(identity),
        umask: spec.umask,
        home,
        lang: spec.lang.clone(),
        locale: spec.locale.clone(),
        display_name: spec.display_name_for(),
        argv_area: facts.argv_area,
        limits: ResourceLimits {
            cpu_time: spec.cpu_time_limit.map(|d| d.as_secs()),
            cpu_time_grace: spec.graceful_timeout.unwrap_or_default().as_secs(),
            data: spec.memory_limit,
            address_space: spec.virtual_memory_limit,
            priority: spec.cpu_priority,
        },
        env_file: spec.env_file.clone(),
        env: spec.env.clone(),
    }
}

/// The group's Python settings: its own options over the server-wide ones.
fn daemon_interpreter(
    spec: &DaemonGroupSpec,
    global: &GlobalConfig,
    facts: &ApacheFacts,
    maximum_requests: u64,
) -> InterpreterSettings {
    InterpreterSettings {
        // python-home='' means Python's own default, not WSGIPythonHome (mod_wsgi).
        python_home: match spec.python_home.as_deref() {
            Some("") => None,
            Some(home) => Some(home.to_string()),
            None => global.python_home.clone(),
        },
        python_path: if spec.python_path.is_empty() {
            global.python_path.clone()
        } else {
            spec.python_path.clone()
        },
        process_group: spec.name.clone(),
        processes: spec.processes,
        processes_given: spec.processes_given,
        threads: spec.threads,
        maximum_requests,
        header_buffer_size: spec.header_buffer_size as usize,
        apache_version: facts.apache_version,
        // As mod_wsgi: WSGIPythonEggs and WSGISwitchInterval are for embedded mode;
        // a daemon group has its own options.
        python_eggs: spec.python_eggs.clone(),
        switch_interval: spec.switch_interval,
        server_metrics: spec.server_metrics,
        asgi_blocked_loop_timeout: spec
            .asgi_blocked_loop_timeout
            .map_or(crate::python::ASGI_BLOCKED_LOOP_TIMEOUT, |d| {
                d.as_secs_f64()
            }),
        free_threading: crate::config::resolve_free_threading(
            &global.interpreter_options,
            &spec.name,
            global.free_threading,
        ),
        ..server_python(global)
    }
}

/// How the group's daemons serve requests: threads, timeouts, limits, buffers.
fn serve_settings(
    spec: &DaemonGroupSpec,
    socket_timeout: Duration,
    maximum_requests: u64,
) -> ServeSettings {
    ServeSettings {
        group: spec.name.clone(),
        processes: spec.processes.max(1) as usize,
        threads: spec.threads.max(1) as usize,
        socket_timeout,
        queue_timeout: spec.queue_timeout,
        maximum_requests,
        maximum_rss: spec.maximum_rss,
        stack_size: spec.stack_size.map(|n| n as usize),
        send_buffer_size: spec.send_buffer_size.map(|n| n as usize),
        receive_buffer_size: spec.receive_buffer_size.map(|n| n as usize),
    }
}

/// How Apache children reach the group's daemons at `socket_path`.
fn daemon_target(
    spec: &DaemonGroupSpec,
    ids: &ResolvedIds,
    socket_path: PathBuf,
    socket_timeout: Duration,
) -> DaemonTarget {
    DaemonTarget {
        group: spec.name.clone(),
        socket_path,
        connect_timeout: spec.connect_timeout,
        socket_timeout,
        queue_timeout: spec.queue_timeout,
        // With interrupt-timeout the daemon raises RequestTimeout into the request and the
        // application's own handling decides the answer, as in mod_wsgi: Apache then waits
        // for it (bounded by socket-timeout) rather than answering 504 first.
        request_timeout: spec
            .request_timeout
            .filter(|_| spec.interrupt_timeout.is_none()),
        response_socket_timeout: spec.effective_response_socket_timeout(),
        response_flush_delay: spec.response_flush_delay,
        response_buffer_size: spec.response_buffer_size as usize,
        websocket_max_message_size: spec.websocket_max_message_size as usize,
        websocket_idle_timeout: spec.websocket_idle_timeout.unwrap_or(socket_timeout),
        script_owner: ScriptOwner {
            uid: ids.script_uid,
            gid: ids.script_gid,
        },
        serves_requests: spec.threads > 0,
        // Named by the launcher: only Apache knows virtual hosts' final names.
        server_name: None,
    }
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

/// Who the group's daemons run as: `user=`/`group=`, else Apache's User/Group.
fn identity(
    spec: &DaemonGroupSpec,
    ids: &ResolvedIds,
    facts: &ApacheFacts,
    accounts: &dyn Host,
) -> Identity {
    let uid = ids.uid.unwrap_or(facts.child_uid);
    let gid = ids.gid.unwrap_or(facts.child_gid);
    Identity {
        uid,
        gid,
        user_name: accounts
            .user_name_of_uid(uid)
            .unwrap_or_else(|| uid.to_string()),
        supplementary: ids.supplementary_gids.clone(),
        configured: spec.user.is_some() || spec.group.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FakeHost, parse_directive};

    fn global(lines: &[(&str, &str)]) -> GlobalConfig {
        let mut g = GlobalConfig::default();
        for (i, (name, raw)) in lines.iter().enumerate() {
            let d = parse_directive(name, raw).unwrap_or_else(|e| panic!("{e}"));
            g.apply(d, &format!("t.conf:{}", i + 1))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        g
    }

    fn server(lines: &[&str]) -> ServerConfig {
        let mut s = ServerConfig::default();
        for raw in lines {
            let d = parse_directive("WSGIScriptAlias", raw).unwrap_or_else(|e| panic!("{e}"));
            s.apply(d).unwrap();
        }
        s
    }

    fn facts() -> ApacheFacts {
        ApacheFacts {
            child_uid: 33,
            child_gid: 33,
            parent_pid: 4242,
            socket_prefix: "/run/apache2/rwsgi".into(),
            default_socket_timeout: Duration::from_secs(300),
            argv_area: Some((0x1000, 64)),
            apache_version: (2, 4, 62),
            mpm_name: "event".into(),
        }
    }

    fn plan(g: &GlobalConfig, preloads: &[Preload]) -> Vec<PlannedGroup> {
        g.daemon_groups
            .iter()
            .map(|spec| plan_group(spec, g, &facts(), preloads, &FakeHost).unwrap())
            .collect()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Issue 29 item 9: sub-second timeouts keep their precision on both sides of the
    /// socket, and a zero one, which could never work, is refused.
    #[test]
    fn socket_timeouts_keep_sub_second_precision_and_zero_is_refused() {
        let g = global(&[(
            "WSGIDaemonProcess",
            "g socket-timeout=0.5 connect-timeout=1.25 queue-timeout=0.75",
        )]);
        let [p] = &plan(&g, &[])[..] else {
            panic!("one group")
        };
        let half = Duration::from_millis(500);
        assert_eq!(p.daemons.plan.serve.socket_timeout, half);
        assert_eq!(p.target.socket_timeout, half);
        assert_eq!(p.target.connect_timeout, Duration::from_millis(1250));
        assert_eq!(p.target.queue_timeout, Some(Duration::from_millis(750)));
        assert_eq!(
            p.daemons.plan.serve.queue_timeout,
            Some(Duration::from_millis(750))
        );
        // Apache's Timeout as socket-timeout's default is not rounded either.
        let g = global(&[("WSGIDaemonProcess", "g")]);
        let spec = &g.daemon_groups[0];
        let facts_with = |t: Duration| ApacheFacts {
            default_socket_timeout: t,
            ..facts()
        };
        let p = plan_group(spec, &g, &facts_with(half), &[], &FakeHost).unwrap();
        assert_eq!(p.target.socket_timeout, half);
        let err = plan_group(spec, &g, &facts_with(Duration::ZERO), &[], &FakeHost)
            .err()
            .unwrap();
        assert!(
            err.contains("WSGIDaemonProcess g") && err.contains("Timeout is 0"),
            "{err}"
        );
    }

    /// Issue 31: the daemons' telemetry names the Apache and MPM they were forked from.
    #[test]
    fn telemetry_plan_names_apache_and_its_mpm() {
        let g = global(&[
            ("WSGIDaemonProcess", "g"),
            ("WSGITelemetryService", "unix:/run/t.sock"),
        ]);
        let [p] = &plan(&g, &[])[..] else {
            panic!("one group")
        };
        let t = p.daemons.plan.telemetry.as_ref().expect("telemetry plan");
        assert_eq!(t.apache_version, "Apache/2.4.62");
        assert_eq!(t.mpm_name, "event");
    }

    #[test]
    fn defaults_run_as_apache_user_on_a_per_group_socket() {
        let g = global(&[("WSGIDaemonProcess", "webware")]);
        let [p] = &plan(&g, &[])[..] else {
            panic!("one group")
        };
        assert_eq!(
            p.socket,
            SocketPlan {
                path: "/run/apache2/rwsgi.4242.webware.sock".into(),
                backlog: 100,
                owner_uid: 33,
                gid: 33,
            }
        );
        let d = &p.daemons;
        assert_eq!(d.processes, 1);
        assert_eq!(d.plan.listener_fd, -1);
        assert!(d.plan.setup.keep_fds.is_empty());
        let id = d.plan.setup.identity.as_ref().unwrap();
        assert_eq!(
            (id.uid, id.gid, id.user_name.as_str()),
            (33, 33, "www-data")
        );
        assert!(!id.configured);
        assert_eq!(id.supplementary, None);
        // Apache's own user: its home is not looked up.
        assert_eq!(d.plan.setup.home, None);
        assert_eq!(d.plan.setup.argv_area, Some((0x1000, 64)));
        assert_eq!(d.plan.setup.display_name, None);
        assert_eq!((d.plan.serve.processes, d.plan.serve.threads), (1, 15));
        assert_eq!(d.plan.serve.socket_timeout, secs(300));
        assert_eq!(d.plan.serve.maximum_requests, 0);
        assert_eq!(d.plan.interpreter.process_group, "webware");
        assert_eq!(d.plan.interpreter.apache_version, (2, 4, 62));
        assert_eq!(d.plan.interpreter.header_buffer_size, 32768);
        assert!(!d.plan.interpreter.processes_given);
        assert_eq!(d.plan.graceful_timeout, secs(15));
        assert_eq!(d.plan.eviction_timeout, secs(15));
        assert_eq!(d.plan.shutdown_timeout, secs(5));
        assert_eq!(d.plan.timers.deadlock_timeout, Some(secs(300)));
        assert_eq!(d.plan.timers.request_timeout, None);
        assert_eq!(d.plan.start_delay, Duration::ZERO);
        let t = &p.target;
        assert_eq!(t.group, "webware");
        assert_eq!(t.socket_path, p.socket.path);
        assert_eq!(t.connect_timeout, secs(15));
        assert_eq!(t.socket_timeout, secs(300));
        assert_eq!(t.response_socket_timeout, None);
        assert_eq!(t.response_flush_delay, Duration::from_millis(5));
        assert_eq!(t.response_buffer_size, 8 * 1024 * 1024);
        assert!(!t.script_owner.is_set());
    }

    #[test]
    fn options_reach_the_daemons_and_the_apache_side() {
        let g = global(&[(
            "WSGIDaemonProcess",
            "g user=alice group=staff supplementary-groups=www-data socket-user=www-data \
             script-group=staff processes=3 threads=7 umask=0027 lang=C.UTF-8 \
             locale=C.UTF-8 display-name=%{GROUP} listen-backlog=50 socket-timeout=20 \
             queue-timeout=9 request-timeout=30 interrupt-timeout=2 inactivity-timeout=600 \
             restart-interval=3600 startup-timeout=10 graceful-timeout=8 eviction-timeout=4 \
             shutdown-timeout=6 maximum-requests=1000 maximum-rss=64 cpu-time-limit=120 \
             cpu-priority=5 memory-limit=1000000 virtual-memory-limit=2000000 \
             stack-size=524288 send-buffer-size=8192 receive-buffer-size=16384 \
             header-buffer-size=65536 response-buffer-size=131072 \
             response-socket-timeout=11 response-flush-delay=0 connect-timeout=3 \
             env=A=1 env-file=/srv/.env python-eggs=/tmp/eggs switch-interval=0.01",
        )]);
        let [p] = &plan(&g, &[])[..] else {
            panic!("one group")
        };
        assert_eq!(
            (p.socket.owner_uid, p.socket.gid, p.socket.backlog),
            (33, 33, 50)
        );
        let plan = &p.daemons.plan;
        assert_eq!(p.daemons.processes, 3);
        let id = plan.setup.identity.as_ref().unwrap();
        assert_eq!((id.uid, id.gid, id.user_name.as_str()), (1000, 50, "alice"));
        assert_eq!(id.supplementary, Some(vec![33]));
        assert!(id.configured);
        // Another user than Apache's: the daemons start in that user's home.
        assert_eq!(plan.setup.home.as_deref(), Some("/home/alice"));
        assert_eq!(plan.setup.umask, Some(0o027));
        assert_eq!(plan.setup.lang.as_deref(), Some("C.UTF-8"));
        assert_eq!(plan.setup.locale.as_deref(), Some("C.UTF-8"));
        assert_eq!(plan.setup.display_name.as_deref(), Some("(wsgi:g)"));
        assert_eq!(
            plan.setup.limits,
            ResourceLimits {
                cpu_time: Some(120),
                cpu_time_grace: 8,
                data: Some(1_000_000),
                address_space: Some(2_000_000),
                priority: 5,
            }
        );
        assert_eq!(plan.setup.env, [("A".to_string(), "1".to_string())]);
        assert_eq!(plan.setup.env_file.as_deref(), Some("/srv/.env"));
        let serve = &plan.serve;
        assert_eq!((serve.processes, serve.threads), (3, 7));
        assert_eq!(serve.socket_timeout, secs(20));
        assert_eq!(serve.queue_timeout, Some(secs(9)));
        assert_eq!(serve.maximum_requests, 1000);
        assert_eq!(serve.maximum_rss, Some(64 << 20));
        assert_eq!(serve.stack_size, Some(524288));
        assert_eq!(serve.send_buffer_size, Some(8192));
        assert_eq!(serve.receive_buffer_size, Some(16384));
        let py = &plan.interpreter;
        assert_eq!(
            (py.processes, py.threads, py.maximum_requests),
            (3, 7, 1000)
        );
        assert!(py.processes_given);
        assert_eq!(py.header_buffer_size, 65536);
        assert_eq!(py.python_eggs.as_deref(), Some("/tmp/eggs"));
        assert_eq!(py.switch_interval, Some(0.01));
        assert_eq!(plan.graceful_timeout, secs(8));
        assert_eq!(plan.eviction_timeout, secs(4));
        assert_eq!(plan.shutdown_timeout, secs(6));
        let timers = &plan.timers;
        assert_eq!(timers.request_timeout, Some(secs(30)));
        assert_eq!(timers.interrupt_timeout, Some(secs(2)));
        assert_eq!(timers.inactivity_timeout, Some(secs(600)));
        assert_eq!(timers.restart_interval, Some(secs(3600)));
        assert_eq!(timers.startup_timeout, Some(secs(10)));
        let t = &p.target;
        assert_eq!(t.connect_timeout, secs(3));
        assert_eq!(t.socket_timeout, secs(20));
        // interrupt-timeout is set: the daemon's RequestTimeout decides, Apache waits.
        assert_eq!(t.request_timeout, None);
        assert_eq!(t.response_socket_timeout, Some(secs(11)));
        assert_eq!(t.response_flush_delay, Duration::ZERO);
        assert_eq!(t.response_buffer_size, 131072);
        assert_eq!((t.script_owner.uid, t.script_owner.gid), (None, Some(50)));
    }

    #[test]
    fn socket_user_owns_the_socket_and_names_are_escaped() {
        let g = global(&[("WSGIDaemonProcess", "'a.b%c' socket-user=alice")]);
        let [p] = &plan(&g, &[])[..] else {
            panic!("one group")
        };
        assert_eq!(
            p.socket.path,
            PathBuf::from("/run/apache2/rwsgi.4242.a%2eb%25c.sock")
        );
        assert_eq!(p.socket.owner_uid, 1000);
    }

    #[test]
    fn python_home_and_path_fall_back_to_the_server_wide_ones() {
        let g = global(&[
            ("WSGIPythonHome", "/srv/venv"),
            ("WSGIPythonPath", "/srv/lib"),
            ("WSGIPythonOptimize", "1"),
            ("WSGIPythonEggs", "/var/eggs"),
            ("WSGIDaemonProcess", "inherit"),
            (
                "WSGIDaemonProcess",
                "own python-home=/opt/venv python-path=/a:/b",
            ),
            ("WSGIDaemonProcess", "default python-home=''"),
        ]);
        let planned = plan(&g, &[]);
        let py = |i: usize| &planned[i].daemons.plan.interpreter;
        assert_eq!(py(0).python_home.as_deref(), Some("/srv/venv"));
        assert_eq!(py(0).python_path, ["/srv/lib"]);
        assert_eq!(py(1).python_home.as_deref(), Some("/opt/venv"));
        assert_eq!(py(1).python_path, ["/a", "/b"]);
        // python-home='' is Python's own default, not WSGIPythonHome (mod_wsgi).
        assert_eq!(py(2).python_home, None);
        for i in 0..3 {
            // Server-wide settings reach every group; WSGIPythonEggs is embedded mode's.
            assert_eq!(py(i).optimize, 1);
            assert_eq!(py(i).python_eggs, None);
        }
        let embedded = server_python(&g);
        assert_eq!(embedded.python_home.as_deref(), Some("/srv/venv"));
        assert_eq!(embedded.python_eggs.as_deref(), Some("/var/eggs"));
        assert_eq!(embedded.optimize, 1);
    }

    #[test]
    fn unresolvable_users_are_named() {
        let g = global(&[("WSGIDaemonProcess", "g user=bob group=nogrp")]);
        let e = plan_group(&g.daemon_groups[0], &g, &facts(), &[], &FakeHost).unwrap_err();
        assert!(e.contains("option 'user=bob': no such user"), "{e}");
        assert!(e.contains("; "), "{e}");
        assert!(e.contains("option 'group=nogrp': no such group"), "{e}");
    }

    #[test]
    fn preloads_are_literal_imports_and_aliases_per_group() {
        let g = global(&[
            ("WSGIDaemonProcess", "a"),
            ("WSGIDaemonProcess", "b"),
            (
                "WSGIImportScript",
                "/srv/a.wsgi process-group=a application-group=%{GLOBAL}",
            ),
            (
                "WSGIImportScript",
                "/srv/e.wsgi process-group=%{GLOBAL} application-group=e",
            ),
        ]);
        let main = server(&[
            "/b /srv/b.wsgi process-group=b application-group=app",
            "/any /srv/any.wsgi process-group=b",
        ]);
        let vhost = server(&["/v /srv/v.wsgi process-group=a application-group=v"]);
        let preloads = preloads(&g, [&main, &vhost]);
        let expect = |group: &str, script: &str, app: &str| Preload {
            asgi_callable: None,
            group: group.into(),
            script: script.into(),
            application_group: app.into(),
        };
        assert_eq!(
            preloads,
            [
                expect("a", "/srv/a.wsgi", ""),
                expect("", "/srv/e.wsgi", "e"),
                expect("b", "/srv/b.wsgi", "app"),
                expect("a", "/srv/v.wsgi", "v"),
            ]
        );
        let planned = plan(&g, &preloads);
        assert_eq!(
            planned[0].daemons.plan.preload,
            [
                ("/srv/a.wsgi".into(), String::new()),
                ("/srv/v.wsgi".into(), "v".to_string())
            ]
        );
        assert_eq!(
            planned[1].daemons.plan.preload,
            [("/srv/b.wsgi".into(), "app".to_string())]
        );
    }

    #[test]
    fn apache_answers_504_at_request_timeout_only_without_interrupt_timeout() {
        for (options, expected) in [
            ("g request-timeout=30", Some(secs(30))),
            ("g request-timeout=30 interrupt-timeout=2", None),
            ("g", None),
        ] {
            let g = global(&[("WSGIDaemonProcess", options)]);
            let p = plan(&g, &[]).remove(0);
            assert_eq!(p.target.request_timeout, expected, "{options}");
            assert_eq!(
                p.daemons.plan.timers.request_timeout,
                options.contains("request-timeout").then(|| secs(30)),
                "{options}"
            );
        }
    }

    #[test]
    fn bind_gives_every_daemon_the_listener() {
        let g = global(&[("WSGIDaemonProcess", "g")]);
        let p = plan(&g, &[]).remove(0);
        let (group, target) = p.bind(17);
        assert_eq!(group.plan.listener_fd, 17);
        assert_eq!(group.plan.setup.keep_fds, [17]);
        assert_eq!(target.group, "g");
    }

    /// Issue 35: a plan made from a configuration using every daemon option crosses exec
    /// into a daemon host unchanged (apart from Apache's argv area, which is memory).
    #[test]
    fn a_plan_with_every_daemon_option_survives_the_host_encoding() {
        use crate::daemon::plan_wire::{HostPlan, MetricsWire};
        let g = global(&[
            (
                "WSGIDaemonProcess",
                "g user=alice group=staff supplementary-groups=www-data socket-user=www-data \
                 script-group=staff processes=3 threads=7 umask=0027 lang=C.UTF-8 \
                 locale=C.UTF-8 display-name=%{GROUP} listen-backlog=50 socket-timeout=20 \
                 queue-timeout=9 request-timeout=30 interrupt-timeout=2 inactivity-timeout=600 \
                 restart-interval=3600 startup-timeout=10 graceful-timeout=8 eviction-timeout=4 \
                 shutdown-timeout=6 deadlock-timeout=60 maximum-requests=1000 maximum-rss=64 \
                 cpu-time-limit=120 cpu-priority=5 memory-limit=1000000 \
                 virtual-memory-limit=2000000 stack-size=524288 send-buffer-size=8192 \
                 receive-buffer-size=16384 header-buffer-size=65536 \
                 response-buffer-size=131072 response-socket-timeout=11 \
                 response-flush-delay=0 connect-timeout=3 env=A=1 env-file=/srv/.env \
                 python-eggs=/tmp/eggs switch-interval=0.01 python-home=/srv/venv \
                 python-path=/srv/a:/srv/b server-metrics=On home=/srv",
            ),
            ("WSGITelemetryService", "unix:/run/ingest.sock"),
        ]);
        let [p] = &plan(
            &g,
            &[Preload {
                group: "g".into(),
                script: "/srv/app.wsgi".into(),
                application_group: String::new(),
                asgi_callable: Some("app".into()),
            }],
        )[..] else {
            panic!("one group")
        };
        let (group, _) = p.clone().bind(7);
        let mut sent = group.plan;
        assert!(sent.setup.argv_area.is_some() && sent.telemetry.is_some());
        assert_eq!(sent.preload.len(), 1);
        let wire = MetricsWire {
            fd: 12,
            processes: vec![3],
            group: 0,
        };
        let host = HostPlan::new(sent.clone(), Some(wire.clone()));
        let got = HostPlan::decode(&host.encode().unwrap()).unwrap();
        assert_eq!(got.metrics, Some(wire));
        assert_eq!(got.max_log_level, host.max_log_level);
        sent.setup.argv_area = None;
        assert_eq!(format!("{:?}", got.plan), format!("{sent:?}"));
    }

    /// Issue 35, free-threaded Python: WSGIFreeThreading per process group (through
    /// `<WSGIInterpreterOptions process-group=...>`, over the top-level directive) crosses exec
    /// in the plan each group's daemon host reads, and reaches the interpreter settings the
    /// host initialises Python with (`interpreter::init_from_config` sets PyConfig.enable_gil
    /// from it on a free-threaded build).
    #[test]
    fn free_threading_per_process_group_reaches_the_exec_d_host() {
        use crate::config::InterpreterOptions;
        use crate::daemon::plan_wire::HostPlan;
        let section = |selector: &str, value: &str| {
            let mut s = InterpreterOptions::open(selector, "t.conf:9").unwrap();
            s.apply("WSGIFreeThreading", value).unwrap();
            s
        };
        let in_host = |g: &GlobalConfig| -> Vec<(String, bool)> {
            plan(g, &[])
                .into_iter()
                .map(|p| {
                    let (group, _) = p.bind(7);
                    let sent = HostPlan::new(group.plan, None).encode().unwrap();
                    let got = crate::daemon::host::into_plan(HostPlan::decode(&sent).unwrap());
                    (got.group, got.interpreter.free_threading)
                })
                .collect()
        };
        let groups = [
            (
                "WSGIDaemonProcess",
                "ft threads=2 python-home=/srv/venv-3.14t",
            ),
            (
                "WSGIDaemonProcess",
                "gil threads=2 python-home=/srv/venv-3.14",
            ),
        ];
        let mut g = global(&groups);
        g.interpreter_options
            .push(section("process-group=ft>", "On"));
        assert_eq!(
            in_host(&g),
            [("ft".to_string(), true), ("gil".to_string(), false)]
        );
        // Server-wide On, a group's section turns it Off.
        let mut g = global(&[groups[0], groups[1], ("WSGIFreeThreading", "On")]);
        g.interpreter_options
            .push(section("process-group=gil>", "Off"));
        assert_eq!(
            in_host(&g),
            [("ft".to_string(), true), ("gil".to_string(), false)]
        );
        // Embedded mode keeps the top-level setting and the %{GLOBAL} sections.
        assert!(server_python(&g).free_threading);
    }
}
