//! Part of the composition root: `mod_wsgi.server_metrics()`'s view of Apache's scoreboard.
//! The python layer gets a reader function (it knows nothing of Apache). The daemons'
//! deferred start, for groups that read the scoreboard, is in `daemon_launch`.

use crate::apache::scoreboard;
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
