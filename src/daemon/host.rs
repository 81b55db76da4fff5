//! The daemon host: the `rwsgi-daemon` executable's whole life (issue 35, groundwork; the
//! daemon manager does not exec it yet). A daemon started by exec'ing a host built for its
//! group's Python, instead of running on in the manager's forked copy of Apache, gets its
//! plan as JSON on an inherited descriptor (`plan_wire`), sends its log lines to the manager,
//! which logs them through Apache (`host_log`; Apache-format lines on stderr without that
//! pipe), and runs exactly what a forked daemon runs (`manager::run_daemon`).
//!
//! `rwsgi-daemon --plan-fd N` runs the daemon of the plan read from descriptor N;
//! `rwsgi-daemon --probe` prints the plan version and the Python it was built for.

use std::os::fd::RawFd;

use crate::daemon::exit::DaemonExit;
use crate::daemon::manager;
use crate::daemon::metrics_shm::{self, MetricsPlace};
use crate::daemon::plan_wire::{self, HostPlan, ScoreboardWire};
use crate::daemon::serving_daemon::DaemonPlan;
use crate::logging;
use crate::python::InterpreterSettings;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Run { plan_fd: RawFd },
    Probe,
}

fn parse(args: &[String]) -> Result<Command, String> {
    match args {
        [flag] if flag == "--probe" => Ok(Command::Probe),
        [flag, fd] if flag == "--plan-fd" => fd
            .parse::<RawFd>()
            .ok()
            .filter(|fd| *fd > 2)
            .map(|plan_fd| Command::Run { plan_fd })
            .ok_or_else(|| format!("--plan-fd '{fd}': expected a descriptor number above 2")),
        _ => Err(format!(
            "expected '--plan-fd N' or '--probe', got {:?} (this program is started by \
             mod_rwsgi's daemon manager)",
            args.join(" ")
        )),
    }
}

/// What `--probe` prints: the plan version this host reads, the Python it embeds and whether
/// that is a free-threaded build (PEP 703; `free-threaded=yes` for a 3.14t).
pub fn probe_line() -> String {
    let own = InterpreterSettings::default();
    format!(
        "rwsgi-daemon {} plan-version={} python={} free-threaded={} executable={}",
        env!("CARGO_PKG_VERSION"),
        plan_wire::PLAN_VERSION,
        own.build_version,
        if crate::python::FREE_THREADED_BUILD {
            "yes"
        } else {
            "no"
        },
        own.build_executable
    )
}

/// How the host maps Apache's scoreboard for `mod_wsgi.server_metrics()` (the executable's
/// composition root provides it: reading the scoreboard's records is Apache's layer).
pub type AttachScoreboard = fn(&ScoreboardWire) -> Result<(), String>;

/// Runs the host with its arguments (without the program name); returns the exit code for
/// `--probe` and usage errors. A daemon's run ends in `_exit` (as a forked daemon's does),
/// never returning.
pub fn main(args: &[String], attach_scoreboard: AttachScoreboard) -> i32 {
    logging::set_backend(crate::daemon::host_log::backend);
    match parse(args) {
        Ok(Command::Probe) => {
            println!("{}", probe_line());
            0
        }
        Ok(Command::Run { plan_fd }) => {
            let code = std::panic::catch_unwind(|| run(plan_fd, attach_scoreboard))
                .unwrap_or(DaemonExit::Panicked)
                .code();
            // SAFETY: _exit as a forked daemon leaves: the daemon code has shut Python down
            // (or chose not to); no destructor of this process is owed anything.
            unsafe { libc::_exit(code) }
        }
        Err(e) => {
            logging::log(logging::Level::Crit, &format!("RW0290: rwsgi-daemon: {e}"));
            DaemonExit::Unprepared.code()
        }
    }
}

fn run(plan_fd: RawFd, attach_scoreboard: AttachScoreboard) -> DaemonExit {
    // SAFETY: the descriptor was named on the command line by the manager, which opened it
    // for this process alone; nothing else here uses it.
    let host = match unsafe { HostPlan::read_from(plan_fd) } {
        Ok(host) => host,
        Err(e) => {
            logging::log(
                logging::Level::Crit,
                &format!("RW0291: rwsgi-daemon (pid {}): {e}", std::process::id()),
            );
            return DaemonExit::Unprepared;
        }
    };
    logging::set_max_level(host.max_log_level);
    if let Some(fd) = host.log_fd {
        crate::daemon::host_log::relay_to(fd);
    }
    if let Some(wire) = &host.scoreboard {
        if let Err(e) = attach_scoreboard(wire) {
            logging::warning(&format!(
                "RW0294: daemon process '{}' (pid {}): cannot map Apache's scoreboard from \
                 descriptor {}: {e}; mod_wsgi.server_metrics() answers None",
                host.plan.group,
                std::process::id(),
                wire.fd
            ));
        }
        // SAFETY: the descriptor was passed for this process alone; a mapping outlives it.
        unsafe { libc::close(wire.fd) };
    }
    let argv_area = own_argv_area();
    if host.plan.setup.display_name.is_none() {
        crate::daemon::spawn::show_command_line(&host.command_line, argv_area);
    }
    let mut plan = into_plan(host);
    plan.setup.argv_area = argv_area;
    manager::run_daemon(plan)
}

/// This process' argv memory (start, length), from /proc/self/stat (`arg_start`, `arg_end`:
/// its 48th and 49th fields), so a display name can replace the host's command line.
fn own_argv_area() -> Option<(usize, usize)> {
    argv_area_of(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn argv_area_of(stat: &str) -> Option<(usize, usize)> {
    // The command name (field 2) may contain spaces and parentheses: count after its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let start: usize = fields.get(48 - 3)?.parse().ok()?;
    let end: usize = fields.get(49 - 3)?.parse().ok()?;
    (end > start).then_some((start, end - start))
}

/// The daemon plan as this host runs it: its own Python build's facts replace the module's,
/// and the metrics table is mapped from its descriptor (without it, the daemon serves
/// uncounted, as when the parent could not map the table).
pub(crate) fn into_plan(host: HostPlan) -> DaemonPlan {
    let mut plan = host.plan;
    let own = InterpreterSettings::default();
    plan.interpreter.build_executable = own.build_executable;
    plan.interpreter.build_version = own.build_version;
    if let Some(m) = host.metrics {
        // SAFETY: the manager passed the generation's metrics memory as this descriptor,
        // for this process alone, with this layout.
        match unsafe { metrics_shm::attach(m.fd, &m.processes) } {
            Ok(table) => {
                plan.metrics = Some(MetricsPlace {
                    table,
                    group: m.group,
                    memory_fd: None,
                })
            }
            Err(e) => {
                logging::warning(&format!(
                    "RW0292: daemon process '{}' (pid {}): cannot map the metrics table from \
                     descriptor {}: {e}; serving without it",
                    plan.group,
                    std::process::id(),
                    m.fd
                ));
                plan.metrics_record = None;
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_command_line_is_a_plan_descriptor_or_a_probe() {
        assert_eq!(
            parse(&args(&["--plan-fd", "7"])),
            Ok(Command::Run { plan_fd: 7 })
        );
        assert_eq!(parse(&args(&["--probe"])), Ok(Command::Probe));
        for bad in [
            &["--plan-fd", "2"][..],
            &["--plan-fd", "x"],
            &[],
            &["serve"],
        ] {
            let err = parse(&args(bad)).unwrap_err();
            assert!(err.contains("--plan-fd"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_argv_area_is_read_from_proc_stat() {
        let mut stat = String::from("123 (a ) b) S");
        for field in 4..=52 {
            stat.push_str(&format!(
                " {}",
                if field == 48 {
                    1000
                } else if field == 49 {
                    1064
                } else {
                    field
                }
            ));
        }
        assert_eq!(argv_area_of(&stat), Some((1000, 64)));
        assert_eq!(argv_area_of("123 (x) S 1 2"), None);
        let (start, len) = own_argv_area().expect("this process' argv area");
        assert!(start > 0 && len > 0);
    }

    #[test]
    fn a_host_runs_on_its_own_python_build() {
        let mut plan = crate::daemon::serving_daemon::DaemonPlan {
            group: "g".into(),
            listener_fd: -1,
            control_fd: None,
            setup: Default::default(),
            interpreter: InterpreterSettings {
                build_executable: "/opt/other/bin/python3.99".into(),
                build_version: "3.99".into(),
                ..InterpreterSettings::default()
            },
            serve: crate::daemon::dispatcher::ServeSettings {
                group: "g".into(),
                processes: 1,
                threads: 1,
                socket_timeout: std::time::Duration::from_secs(1),
                queue_timeout: None,
                maximum_requests: 0,
                maximum_rss: None,
                stack_size: None,
                send_buffer_size: None,
                receive_buffer_size: None,
            },
            preload: Vec::new(),
            asgi_startup: Vec::new(),
            start_delay: Default::default(),
            shutdown_timeout: Default::default(),
            graceful_timeout: Default::default(),
            eviction_timeout: Default::default(),
            timers: Default::default(),
            metrics: None,
            metrics_record: Some(0),
            telemetry: None,
        };
        let own = InterpreterSettings::default();
        let got = into_plan(HostPlan::new(plan.clone(), None));
        assert_eq!(got.interpreter.build_version, own.build_version);
        assert_eq!(got.interpreter.build_executable, own.build_executable);
        // A metrics descriptor that is no shared memory: logged, served uncounted.
        let (r, _w) = nix::unistd::pipe().unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(r);
        plan.metrics_record = Some(0);
        let wire = plan_wire::MetricsWire {
            fd,
            processes: vec![1],
            group: 0,
        };
        let got = into_plan(HostPlan::new(plan, Some(wire)));
        assert!(got.metrics.is_none() && got.metrics_record.is_none());
    }

    #[test]
    fn a_table_attached_from_its_descriptor_shares_the_words() {
        // SAFETY: memfd_create with a valid name; the result is checked.
        let fd = unsafe { libc::memfd_create(c"rwsgi-test".as_ptr(), 0) };
        assert!(fd >= 0);
        let processes = [2usize, 1];
        let bytes = crate::metrics::table::words_for(&processes) * 8;
        // SAFETY: `fd` is the memfd just made.
        assert_eq!(unsafe { libc::ftruncate(fd, bytes as libc::off_t) }, 0);
        // SAFETY: dup of an open descriptor; each table owns its own.
        let (a, b) = (unsafe { libc::dup(fd) }, unsafe { libc::dup(fd) });
        // SAFETY: memfd descriptors of the right size, owned by these calls.
        let first = unsafe { metrics_shm::attach(a, &processes) }.unwrap();
        // SAFETY: as above.
        let second = unsafe { metrics_shm::attach(b, &processes) }.unwrap();
        let taken = first.allocate(1, 4, 1).expect("a free record");
        let next = second.allocate(1, 4, 1).expect("a free record");
        assert_ne!(taken, next, "the other mapping sees the first record taken");
        second.release(1, next);
        first.release(1, taken);
        assert_eq!(second.allocate(1, 4, 1), Some(taken), "and released");
        // SAFETY: closing the memfd this test opened (the mappings stay).
        unsafe { libc::close(fd) };
    }
}
