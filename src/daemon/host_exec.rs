//! The daemon manager's side of a daemon host (issue 35): in a daemon it has just forked,
//! hand the plan to the group's `rwsgi-daemon` executable (`daemon::host`) on a memfd and
//! exec it. Every daemon starts this way.

use std::os::fd::RawFd;

use crate::daemon::exit::DaemonExit;
use crate::daemon::host_log::RelayPipes;
use crate::daemon::plan_wire::{HostPlan, MetricsWire, ScoreboardWire};
use crate::daemon::serving_daemon::DaemonPlan;
use crate::logging;

/// The environment variable (of Apache's parent) that names the daemon host to use instead
/// of the one installed beside the module: a test hook (the tests run the host cargo built).
pub const TEST_HOST_VARIABLE: &str = "RWSGI_TEST_DAEMON_HOST";

/// In a daemon just forked by the manager: replaces this process with the daemon host
/// `host`, handing it `plan` on a memfd. Returns only when that fails (logged), with the
/// exit of a daemon that could not be prepared.
///
/// `layout` is every group's record count (processes), which the metrics table was made
/// for; `scoreboard` Apache's scoreboard memory, passed to a group with server-metrics=on;
/// `relay` the pipes the host's log lines and stderr go to (the manager logs them).
pub fn exec_host(
    host: &std::ffi::CStr,
    mut plan: DaemonPlan,
    layout: &[usize],
    scoreboard: Option<ScoreboardWire>,
    relay: Option<RelayPipes>,
) -> DaemonExit {
    let group = plan.group.clone();
    let log_fd = match relay.map(RelayPipes::pass_to_host).transpose() {
        Ok(fd) => fd,
        Err(e) => {
            logging::warning(&format!(
                "RW0271: daemon process '{group}' (pid {}): cannot pass the log pipe to the \
                 daemon host: {e}; it writes its lines to the error log itself",
                std::process::id()
            ));
            None
        }
    };
    match prepare_exec(&mut plan, layout, scoreboard, log_fd).and_then(|(fd, argv0)| {
        let argv = [
            argv0,
            c"--plan-fd".to_owned(),
            std::ffi::CString::new(fd.to_string()).unwrap_or_default(),
        ];
        nix::unistd::execv(host, &argv).map_err(|e| e.to_string())
    }) {
        Ok(never) => match never {},
        Err(e) => {
            logging::log(
                logging::Level::Crit,
                &format!(
                    "RW0293: daemon process '{group}' (pid {}): cannot start the daemon host \
                     {}: {e}",
                    std::process::id(),
                    host.to_string_lossy()
                ),
            );
            DaemonExit::Unprepared
        }
    }
}

/// Writes the plan into a memfd the host inherits and lets the plan's descriptors cross
/// exec; returns the memfd's number and the host's argv[0] (the display name).
fn prepare_exec(
    plan: &mut DaemonPlan,
    layout: &[usize],
    scoreboard: Option<ScoreboardWire>,
    log_fd: Option<RawFd>,
) -> Result<(RawFd, std::ffi::CString), String> {
    use std::io::{Seek, Write};
    let metrics = plan.metrics.take().and_then(|place| {
        let fd = place.memory_fd?;
        crate::daemon::listener::set_cloexec(fd, false).ok()?;
        Some(MetricsWire {
            fd,
            processes: layout.to_vec(),
            group: place.group,
        })
    });
    if metrics.is_none() {
        plan.metrics_record = None;
    }
    let argv0 = plan
        .setup
        .display_name
        .clone()
        .unwrap_or_else(|| "rwsgi-daemon".into());
    let argv0 = std::ffi::CString::new(argv0).map_err(|e| e.to_string())?;
    let scoreboard = scoreboard
        .filter(|_| plan.interpreter.server_metrics)
        .filter(|s| crate::daemon::listener::set_cloexec(s.fd, false).is_ok());
    // The host's start-up closes every descriptor it was not told to keep.
    plan.setup.keep_fds.extend(log_fd);
    let mut host_plan = HostPlan::new(plan.clone(), metrics);
    host_plan.scoreboard = scoreboard;
    host_plan.log_fd = log_fd;
    let document = host_plan.encode()?;
    // SAFETY: memfd_create with a valid name and no flags (the host inherits it); the
    // result is checked.
    let fd = unsafe { libc::memfd_create(c"rwsgi-plan".as_ptr(), 0) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just created and is ours; ManuallyDrop keeps it open for the host.
    let mut file = std::mem::ManuallyDrop::new(unsafe {
        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd)
    });
    file.write_all(&document)
        .and_then(|()| file.rewind())
        .map_err(|e| format!("cannot write the plan: {e}"))?;
    for fd in std::iter::once(plan.listener_fd)
        .chain(plan.control_fd)
        .filter(|fd| *fd >= 0)
    {
        crate::daemon::listener::set_cloexec(fd, false)
            .map_err(|e| format!("cannot pass descriptor {fd}: {e}"))?;
    }
    Ok((fd, argv0))
}
