//! Part of the composition root: `mod_wsgi.server_metrics()`'s view of Apache's scoreboard.
//! The python layer gets a reader function (it knows nothing of Apache). The daemons'
//! deferred start, for groups that read the scoreboard, is in `daemon_launch`.

use crate::apache::scoreboard;
use crate::daemon::plan_wire::ScoreboardWire;
use crate::python::{ScoreboardProcess, ScoreboardWorker, ServerScoreboard};

fn seconds(us: i64) -> f64 {
    us as f64 / 1e6
}

/// The scoreboard in the python layer's terms.
fn read_for_python() -> Option<ServerScoreboard> {
    scoreboard::read().map(for_python)
}

fn for_python(board: scoreboard::Scoreboard) -> ServerScoreboard {
    ServerScoreboard {
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
    }
}

/// Gives the python layer its way to read the scoreboard (`mod_wsgi.server_metrics()`).
pub(crate) fn install_scoreboard_reader() {
    crate::python::set_scoreboard_reader(read_for_python);
}

/// Apache's scoreboard memory for the daemon manager to pass to daemon hosts, when a group
/// run by one has server-metrics=on (forked daemons read Apache's mapping; None otherwise, or logged when it cannot be opened: those
/// groups' `server_metrics()` then answer None). Called in the forked manager, which owns
/// the descriptor.
pub(crate) fn share_for_hosts(
    groups: &[crate::daemon::manager::GroupPlan],
) -> Option<ScoreboardWire> {
    let wanted: Vec<&str> = groups
        .iter()
        .filter(|g| g.host.is_some() && g.plan.interpreter.server_metrics)
        .map(|g| g.plan.group.as_str())
        .collect();
    if wanted.is_empty() {
        return None;
    }
    match scoreboard::share() {
        Ok(shared) => Some(ScoreboardWire {
            fd: std::os::fd::IntoRawFd::into_raw_fd(shared.fd),
            offset: shared.offset,
            len: shared.len,
        }),
        Err(e) => {
            crate::logging::warning(&format!(
                "RW0295: mod_rwsgi: cannot pass Apache's scoreboard to the daemons of {}: {e}; \
                 their mod_wsgi.server_metrics() answers None",
                wanted.join(", ")
            ));
            None
        }
    }
}

static MAPPED: std::sync::OnceLock<scoreboard::Mapped> = std::sync::OnceLock::new();

fn read_mapped_for_python() -> Option<ServerScoreboard> {
    MAPPED.get()?.read().map(for_python)
}

/// In a daemon host: maps the scoreboard its manager passed and lets `server_metrics()`
/// read it (before the daemon serves).
pub fn attach_scoreboard(wire: &ScoreboardWire) -> Result<(), String> {
    // SAFETY: the descriptor was passed to this process by its manager and is open until
    // the host closes it after this call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(wire.fd) };
    let mapped = scoreboard::Mapped::map(fd, wire.offset, wire.len)?;
    MAPPED
        .set(mapped)
        .map_err(|_| "a scoreboard is already mapped".to_string())?;
    crate::python::set_scoreboard_reader(read_mapped_for_python);
    Ok(())
}
