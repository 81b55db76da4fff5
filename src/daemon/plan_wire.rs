//! A daemon's plan as it crosses `exec` into a daemon host (the `rwsgi-daemon` executable,
//! built for the Python a group runs on): one JSON document, read from a descriptor the host
//! inherits. Everything in a [`DaemonPlan`] is plain data except two values that are memory
//! of the forking process: the metrics table's mapping (it crosses as a descriptor, see
//! [`MetricsWire`]) and Apache's argv area (a host shows its display name as its argv[0]).
//! Descriptors named in the plan (listener, control socket, metrics memory) keep their
//! numbers across exec; the caller clears their close-on-exec flag.

use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};

use serde::{Deserialize, Serialize};

use crate::daemon::serving_daemon::DaemonPlan;
use crate::logging::Level;

/// Raised whenever a field's meaning changes; a host refuses another version, so a module
/// and a host from different builds fail with a clear error instead of misreading.
pub const PLAN_VERSION: u32 = 1;

/// A plan is a few KiB; anything beyond this is not a plan.
pub const MAX_PLAN_BYTES: usize = 4 << 20;

/// What a daemon host needs besides the daemon's plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostPlan {
    pub version: u32,
    pub plan: DaemonPlan,
    /// The group's place in the generation's metrics table, when there is one.
    pub metrics: Option<MetricsWire>,
    /// Apache's scoreboard memory, for a group with server-metrics=on.
    #[serde(default)]
    pub scoreboard: Option<ScoreboardWire>,
    /// The pipe the host's log records go to (`daemon::host_log`): the manager logs them
    /// through Apache. None: the host writes Apache-format lines to its stderr.
    #[serde(default)]
    pub log_fd: Option<RawFd>,
    /// The most verbose level that reaches a log (`logging::enabled`).
    pub max_log_level: Level,
    /// What `ps` shows for a daemon without display-name=: Apache's command line, as a
    /// forked daemon shows it.
    pub command_line: String,
}

/// The metrics table across exec: the descriptor of its shared memory and the layout the
/// table is rebuilt from (`MetricsTable::new`), and the group's index in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsWire {
    pub fd: RawFd,
    pub processes: Vec<usize>,
    pub group: usize,
}

/// Apache's scoreboard across exec (`mod_wsgi.server_metrics()`): a read-only descriptor of
/// its shared memory, the global record's offset in it and the memory's length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreboardWire {
    pub fd: RawFd,
    pub offset: usize,
    pub len: usize,
}

/// This process' command line as `ps` shows it (arguments separated by spaces).
fn own_command_line() -> String {
    std::fs::read("/proc/self/cmdline")
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .trim_end_matches('\0')
                .replace('\0', " ")
        })
        .unwrap_or_default()
}

/// Why a plan could not be read.
#[derive(Debug)]
pub enum PlanError {
    Io(std::io::Error),
    TooLarge,
    Malformed(String),
    Version { found: u32 },
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Io(e) => write!(f, "cannot read the daemon plan: {e}"),
            PlanError::TooLarge => write!(f, "the daemon plan is over {MAX_PLAN_BYTES} bytes"),
            PlanError::Malformed(e) => write!(f, "the daemon plan cannot be decoded: {e}"),
            PlanError::Version { found } => write!(
                f,
                "the daemon plan has version {found}, this daemon host reads version \
                 {PLAN_VERSION}: the host and mod_rwsgi.so come from different builds"
            ),
        }
    }
}

impl HostPlan {
    /// The host plan of `plan`, with this process' log level; `metrics` is the table's
    /// descriptor and layout when the plan has a metrics place.
    pub fn new(plan: DaemonPlan, metrics: Option<MetricsWire>) -> HostPlan {
        HostPlan {
            version: PLAN_VERSION,
            plan,
            metrics,
            scoreboard: None,
            log_fd: None,
            max_log_level: crate::logging::max_level(),
            command_line: own_command_line(),
        }
    }

    /// The document a host reads. Fails only for a value JSON cannot carry (a path that is
    /// not UTF-8), naming it.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|e| format!("cannot encode the daemon plan: {e}"))
    }

    /// Reads a document made by [`HostPlan::encode`] of the same [`PLAN_VERSION`].
    pub fn decode(bytes: &[u8]) -> Result<HostPlan, PlanError> {
        if bytes.len() > MAX_PLAN_BYTES {
            return Err(PlanError::TooLarge);
        }
        // The version first, so another build's plan is named as such, not as malformed.
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let found = serde_json::from_slice::<Versioned>(bytes)
            .map_err(|e| PlanError::Malformed(e.to_string()))?
            .version;
        if found != PLAN_VERSION {
            return Err(PlanError::Version { found });
        }
        serde_json::from_slice(bytes).map_err(|e| PlanError::Malformed(e.to_string()))
    }

    /// Reads the plan from `fd` to its end and closes it.
    ///
    /// # Safety
    /// `fd` is an open descriptor this process owns and nothing else uses.
    pub unsafe fn read_from(fd: RawFd) -> Result<HostPlan, PlanError> {
        // SAFETY: the caller's promise: ours alone; the File closes it.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut bytes = Vec::new();
        file.take(MAX_PLAN_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(PlanError::Io)?;
        HostPlan::decode(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InterpreterOptions;
    use crate::daemon::dispatcher::ServeSettings;
    use crate::daemon::serving_daemon::Timers;
    use crate::daemon::spawn::{ChildSetup, Identity, ResourceLimits};
    use crate::daemon::telemetry::TelemetryPlan;
    use crate::python::InterpreterSettings;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A plan with every field set to something other than its default, written out field
    /// by field: a field added to any of these structs breaks this literal, so it is added
    /// here and checked by the round trip.
    fn every_field() -> HostPlan {
        HostPlan {
            version: PLAN_VERSION,
            plan: DaemonPlan {
                group: "grüppe 'x'".into(),
                listener_fd: 5,
                control_fd: Some(9),
                setup: ChildSetup {
                    keep_fds: vec![5, 9, 11],
                    identity: Some(Identity {
                        uid: 1000,
                        gid: 50,
                        user_name: "alice".into(),
                        supplementary: Some(vec![33, 44]),
                        configured: true,
                    }),
                    umask: Some(0o027),
                    home: Some("/home/alice".into()),
                    lang: Some("C.UTF-8".into()),
                    locale: Some("de_DE.UTF-8".into()),
                    display_name: Some("(wsgi:g)".into()),
                    argv_area: None, // does not cross exec (its own test)
                    limits: ResourceLimits {
                        cpu_time: Some(120),
                        cpu_time_grace: 8,
                        data: Some(1_000_000),
                        address_space: Some(u64::MAX),
                        priority: -5,
                    },
                    env_file: Some("/srv/.env".into()),
                    env: vec![("A".into(), "1 \"two\"\nthree".into())],
                },
                interpreter: InterpreterSettings {
                    python_home: Some("/srv/venv".into()),
                    python_path: vec!["/srv/a".into(), "/srv/b".into()],
                    build_executable: "/usr/bin/python3.13".into(),
                    build_version: "3.13".into(),
                    restrict_stdout: true,
                    process_group: "g".into(),
                    processes: 3,
                    processes_given: true,
                    threads: 7,
                    maximum_requests: 1000,
                    header_buffer_size: 65536,
                    apache_version: (2, 4, 62),
                    restrict_stdin: true,
                    restrict_signal: false,
                    per_interpreter_gil: true,
                    optimize: 2,
                    dont_write_bytecode: true,
                    warnings: vec!["ignore::DeprecationWarning".into()],
                    hash_seed: Some(4_294_967_295),
                    python_eggs: Some("/tmp/eggs".into()),
                    switch_interval: Some(0.1 + 0.2),
                    destroy_interpreter: false,
                    free_threading: true,
                    server_metrics: true,
                    asgi_blocked_loop_timeout: 0.25,
                    case_sensitivity: false,
                    interpreter_options: vec![InterpreterOptions {
                        process_group: Some("g".into()),
                        application_group: Some(String::new()),
                        switch_interval: Some(0.005),
                        python_path: vec!["/srv/c".into()],
                        restrict_stdin: Some(false),
                        restrict_stdout: Some(true),
                        restrict_signal: Some(true),
                        free_threading: Some(false),
                        per_interpreter_gil: Some(false),
                        defined_at: "/etc/apache2/x.conf:12".into(),
                    }],
                },
                serve: ServeSettings {
                    group: "g".into(),
                    processes: 3,
                    threads: 7,
                    socket_timeout: ms(20_500),
                    queue_timeout: Some(ms(9000)),
                    maximum_requests: 1000,
                    maximum_rss: Some(64 << 20),
                    stack_size: Some(524_288),
                    send_buffer_size: Some(8192),
                    receive_buffer_size: Some(16384),
                },
                preload: vec![("/srv/app/wsgi.py".into(), "%{GLOBAL}".into())],
                asgi_startup: vec![("/srv/app/asgi.py".into(), "".into(), "app".into())],
                start_delay: ms(1),
                shutdown_timeout: ms(6000),
                graceful_timeout: ms(8000),
                eviction_timeout: ms(4000),
                timers: Timers {
                    request_timeout: Some(ms(30_000)),
                    interrupt_timeout: Some(ms(2000)),
                    inactivity_timeout: Some(ms(600_000)),
                    restart_interval: Some(ms(3_600_000)),
                    deadlock_timeout: Some(ms(300_000)),
                    startup_timeout: Some(Duration::new(10, 1)),
                },
                metrics: None, // crosses as `HostPlan::metrics`
                metrics_record: Some(2),
                telemetry: Some(TelemetryPlan {
                    socket: "/run/ingest.sock".into(),
                    interval: ms(250),
                    slow_threshold: Some(ms(1500)),
                    capture_user_agent: true,
                    apache_version: "Apache/2.4.62".into(),
                    mpm_name: "event".into(),
                }),
            },
            metrics: Some(MetricsWire {
                fd: 12,
                processes: vec![3, 1],
                group: 0,
            }),
            scoreboard: Some(ScoreboardWire {
                fd: 13,
                offset: 8,
                len: 1 << 20,
            }),
            log_fd: Some(14),
            max_log_level: Level::Info,
            command_line: "/usr/sbin/apache2 -k start".into(),
        }
    }

    #[test]
    fn every_field_survives_the_round_trip() {
        let sent = every_field();
        let got = HostPlan::decode(&sent.encode().unwrap()).unwrap();
        // Debug prints every field (nested ones too): equal text, equal plans.
        assert_eq!(format!("{got:?}"), format!("{sent:?}"));
        assert_eq!(got.plan.interpreter, sent.plan.interpreter);
        assert_eq!(got.plan.setup, sent.plan.setup);
        assert_eq!(got.plan.serve, sent.plan.serve);
        assert_eq!(got.plan.timers, sent.plan.timers);
        assert_eq!(got.plan.telemetry, sent.plan.telemetry);
        assert_eq!(got.metrics, sent.metrics);
        assert_eq!(got.plan.interpreter.switch_interval, Some(0.1 + 0.2));
    }

    #[test]
    fn the_argv_area_is_memory_and_does_not_cross() {
        let mut sent = every_field();
        sent.plan.setup.argv_area = Some((0x1000, 64));
        let got = HostPlan::decode(&sent.encode().unwrap()).unwrap();
        assert_eq!(got.plan.setup.argv_area, None);
        sent.plan.setup.argv_area = None;
        assert_eq!(format!("{got:?}"), format!("{sent:?}"));
    }

    #[test]
    fn another_version_is_named_not_misread() {
        let mut sent = every_field();
        sent.version = PLAN_VERSION + 1;
        let err = HostPlan::decode(&sent.encode().unwrap()).unwrap_err();
        assert!(matches!(err, PlanError::Version { found } if found == PLAN_VERSION + 1));
        assert!(err.to_string().contains("different builds"), "{err}");
    }

    #[test]
    fn truncated_oversized_and_garbage_plans_are_errors() {
        let bytes = every_field().encode().unwrap();
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            let err = HostPlan::decode(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, PlanError::Malformed(_)),
                "cut at {cut}: {err}"
            );
        }
        assert!(matches!(
            HostPlan::decode(&vec![b' '; MAX_PLAN_BYTES + 1]),
            Err(PlanError::TooLarge)
        ));
        assert!(matches!(
            HostPlan::decode(b"{\"version\":1,\"plan\":{}}"),
            Err(PlanError::Malformed(_))
        ));
    }

    #[test]
    fn a_plan_is_read_from_a_descriptor() {
        let bytes = every_field().encode().unwrap();
        let (read, write) = nix::unistd::pipe().unwrap();
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::File::from(write);
            std::io::Write::write_all(&mut f, &bytes).unwrap();
        });
        let fd = std::os::fd::IntoRawFd::into_raw_fd(read);
        // SAFETY: `fd` is the read end just made, owned by nothing else.
        let got = unsafe { HostPlan::read_from(fd) }.unwrap();
        writer.join().unwrap();
        assert_eq!(format!("{got:?}"), format!("{:?}", every_field()));
    }
}
