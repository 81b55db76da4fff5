//! The daemon manager process. The Apache parent forks one per configuration generation;
//! it forks every daemon process of every group (which runs the daemon in the fork, or
//! execs its group's daemon host `rwsgi-daemon` when the group runs on another Python:
//! `daemon::host_exec`), and supervises them. Apache's parent only
//! notices a dead child about once a second and cannot hear a daemon at all, so supervision
//! lives here, in a single-threaded process that never starts Python and reacts at once:
//!
//! - an exec'd daemon host's log lines and stderr come here over pipes and are logged
//!   through Apache (`host_log`), its last ones before the line about its death;
//! - a daemon that dies is replaced immediately (crash-loop backoff aside);
//! - a daemon that must be replaced (touch-to-reload, maximum-requests, restart-interval,
//!   request-timeout, SIGINT, SIGUSR1) asks for it over its control socket and keeps its
//!   place until the replacement has imported the scripts and accepts; only then is it told
//!   to drain (SIGUSR2). Replacements in a group happen one at a time.
//! - SIGINT (Apache restarting gracefully): every daemon drains within graceful-timeout;
//!   SIGTERM (stop, hard restart) or the Apache parent gone: every daemon gets SIGTERM and
//!   whatever is left after shutdown-timeout gets SIGKILL. The manager exits last.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::daemon::control::{self, ControlDecoder, ControlMessage, Script};
use crate::daemon::exit::{DaemonExit, ManagerExit};
use crate::daemon::host_log::{Relay, RelayPipes};
use crate::daemon::plan_wire::ScoreboardWire;
use crate::daemon::service_daemon as service;
use crate::daemon::serving_daemon::{self as daemon_process, DaemonPlan};
use crate::daemon::spawn::{self, ChildSetup};
use crate::daemon::supervisor::SlotHistory;
use crate::logging;
use crate::metrics::table as metrics_table;

/// One group: its daemon template and how many processes it runs.
#[derive(Clone, Debug)]
pub struct GroupPlan {
    pub plan: DaemonPlan,
    pub processes: usize,
    /// The daemon host (`rwsgi-daemon` built for the group's Python) each daemon execs, or
    /// None: the daemon runs in the manager's fork (the module's own Python).
    pub host: Option<std::path::PathBuf>,
}

/// How often the loop wakes without events (parent check, deadlines).
const TICK: Duration = Duration::from_millis(100);

/// Runs the manager; returns its exit code. The caller `_exit`s with it.
///
/// `scoreboard` is Apache's scoreboard memory for daemon hosts of groups with
/// server-metrics=on (kept open here, passed to each such host).
pub fn manage_daemons(
    groups: Vec<GroupPlan>,
    apache_parent: Pid,
    start_delay: Duration,
    scoreboard: Option<ScoreboardWire>,
) -> i32 {
    let mut keep: Vec<RawFd> = groups.iter().map(|g| g.plan.listener_fd).collect();
    keep.extend(scoreboard.as_ref().map(|s| s.fd));
    // The metrics table's memory, for daemon hosts started by exec.
    keep.extend(
        groups
            .first()
            .and_then(|g| g.plan.metrics)
            .and_then(|m| m.memory_fd),
    );
    let _ = spawn::release_inherited(&ChildSetup {
        keep_fds: keep,
        ..ChildSetup::default()
    });
    // Own process group: Apache's MPM signals its whole group on stop and restart, but the
    // daemons are stopped in order by this process, told by the parent.
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    // SAFETY: prctl(PR_SET_PDEATHSIG)/PR_SET_NAME only set attributes of this process; the
    // name is a valid NUL-terminated string.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGTERM as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::prctl(
            libc::PR_SET_NAME,
            c"rwsgi-manager".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    if nix::unistd::getppid() != apache_parent {
        return ManagerExit::Stopped.code(); // the parent died before PDEATHSIG was armed
    }
    if !start_delay.is_zero() {
        std::thread::sleep(start_delay);
    }
    let mask = SigSet::from_iter([
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ]);
    if let Err(e) = mask.thread_block() {
        logging::log(
            logging::Level::Crit,
            &format!("RW0014: mod_rwsgi: daemon manager cannot block signals: {e}"),
        );
        return ManagerExit::Failed.code();
    }
    let signals = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
    {
        Ok(fd) => fd,
        Err(e) => {
            logging::log(
                logging::Level::Crit,
                &format!("RW0015: mod_rwsgi: daemon manager cannot create a signalfd: {e}"),
            );
            return ManagerExit::Failed.code();
        }
    };
    // A manager restarted by the Apache parent inherits records of daemons that are gone.
    if let Some(place) = groups.first().and_then(|g| g.plan.metrics) {
        place.table.release_all();
    }
    let mut manager = Manager::new(groups, apache_parent);
    manager.scoreboard = scoreboard;
    manager.start_all();
    manager.serve(&signals)
}

struct Daemon {
    group: usize,
    slot: usize,
    /// Replaced: waiting for its successor to be ready, then draining. Otherwise it is its
    /// slot's serving (or starting) process.
    retiring: bool,
    control: OwnedFd,
    /// What has arrived on `control` so far; after a message that cannot be decoded the
    /// socket is no longer read.
    inbox: ControlDecoder,
    /// Its record in the metrics table.
    metrics_record: Option<usize>,
    /// An exec'd daemon host's log lines and stderr, logged here through Apache.
    relay: Option<Relay>,
}

struct Slot {
    current: Option<Pid>,
    /// The process that asked to be replaced and waits for `current` to be ready.
    waiting: Option<Pid>,
    history: SlotHistory,
}

struct ReplaceRequest {
    slot: usize,
    pid: Pid,
    reason: String,
    scripts: Vec<Script>,
}

struct Group {
    plan: DaemonPlan,
    /// The daemon host its daemons exec (None: they run in the fork).
    host: Option<std::ffi::CString>,
    slots: Vec<Slot>,
    /// The slot whose replacement is starting, and since when.
    replacing: Option<(usize, Instant)>,
    queue: VecDeque<ReplaceRequest>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopping {
    Graceful,
    Hard,
}

struct Manager {
    groups: Vec<Group>,
    daemons: HashMap<Pid, Daemon>,
    apache_parent: Pid,
    stopping: Option<(Stopping, Instant)>,
    /// Apache's scoreboard for the hosts of groups with server-metrics=on.
    scoreboard: Option<ScoreboardWire>,
}

impl Manager {
    fn new(plans: Vec<GroupPlan>, apache_parent: Pid) -> Manager {
        let now = Instant::now();
        let groups = plans
            .into_iter()
            .map(|g| Group {
                slots: (0..g.processes.max(1))
                    .map(|_| Slot {
                        current: None,
                        waiting: None,
                        history: SlotHistory::new(now),
                    })
                    .collect(),
                plan: g.plan,
                host: g.host.map(|h| {
                    std::ffi::CString::new(h.into_os_string().into_encoded_bytes())
                        .unwrap_or_default()
                }),
                replacing: None,
                queue: VecDeque::new(),
            })
            .collect();
        Manager {
            groups,
            daemons: HashMap::new(),
            apache_parent,
            stopping: None,
            scoreboard: None,
        }
    }

    fn start_all(&mut self) {
        for g in 0..self.groups.len() {
            for s in 0..self.groups[g].slots.len() {
                self.spawn(g, s, Duration::ZERO, &[]);
            }
        }
    }

    /// Forks the daemon of slot `s` in group `g`; it imports `scripts` before serving.
    fn spawn(&mut self, g: usize, s: usize, delay: Duration, scripts: &[Script]) {
        let group = &self.groups[g];
        let (mine, theirs) = match socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        ) {
            Ok(pair) => pair,
            Err(e) => {
                logging::log(
                    logging::Level::Crit,
                    &format!(
                        "RW0016: mod_rwsgi: cannot create a control socket for daemon process '{}': {e}",
                        group.plan.group
                    ),
                );
                return;
            }
        };
        // A daemon host has no Apache to log through: its lines come here (`host_log`).
        let relay = match group.host.as_ref().map(|_| RelayPipes::new()).transpose() {
            Ok(pipes) => pipes,
            Err(e) => {
                logging::warning(&format!(
                    "RW0272: mod_rwsgi: cannot create the log pipes of daemon process '{}': \
                     {e}; its daemon host writes its lines to the error log itself",
                    group.plan.group
                ));
                None
            }
        };
        let mut plan = group.plan.clone();
        plan.start_delay = delay;
        plan.control_fd = Some(theirs.as_raw_fd());
        plan.setup.keep_fds.push(theirs.as_raw_fd());
        let metrics = plan.metrics;
        plan.metrics_record = metrics.and_then(|m| {
            m.table
                .allocate(m.group, plan.serve.threads as u64, crate::util::now_us())
        });
        for script in scripts {
            if !plan.preload.contains(script) {
                plan.preload.push(script.clone());
            }
        }
        // SAFETY: this process is single-threaded; the child runs only the daemon's code and
        // leaves through _exit.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                let host = self.groups[g].host.clone();
                let layout: Vec<usize> = self.groups.iter().map(|g| g.slots.len()).collect();
                let scoreboard = self.scoreboard.clone();
                let code = std::panic::catch_unwind(move || match host {
                    Some(host) => {
                        crate::daemon::host_exec::exec_host(&host, plan, &layout, scoreboard, relay)
                    }
                    None => run_daemon(plan),
                })
                .unwrap_or(DaemonExit::Panicked)
                .code();
                // SAFETY: _exit skips destructors of state copied from the manager.
                unsafe { libc::_exit(code) };
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                drop(theirs);
                if let (Some(m), Some(record)) = (metrics, plan.metrics_record) {
                    m.table
                        .set_pid(m.group, record, u32::try_from(child.as_raw()).unwrap_or(0));
                }
                let slot = &mut self.groups[g].slots[s];
                slot.current = Some(child);
                slot.history.on_start(Instant::now());
                self.daemons.insert(
                    child,
                    Daemon {
                        group: g,
                        slot: s,
                        retiring: false,
                        control: mine,
                        inbox: ControlDecoder::default(),
                        metrics_record: plan.metrics_record,
                        relay: relay.map(|pipes| {
                            pipes.into_relay(&self.groups[g].plan.group, child.as_raw())
                        }),
                    },
                );
            }
            Err(e) => {
                if let (Some(m), Some(record)) = (metrics, plan.metrics_record) {
                    m.table.release(m.group, record);
                }
                logging::log(
                    logging::Level::Crit,
                    &format!(
                        "RW0017: mod_rwsgi: cannot fork a process for daemon group '{}': {e}",
                        self.groups[g].plan.group
                    ),
                )
            }
        }
    }

    fn serve(&mut self, signals: &SignalFd) -> i32 {
        loop {
            // A daemon whose messages could not be decoded is not read any more (it was told
            // to drain); its socket would otherwise stay readable.
            let pids: Vec<Pid> = self
                .daemons
                .iter()
                .filter(|(_, d)| !d.inbox.has_failed())
                .map(|(pid, _)| *pid)
                .collect();
            let mut ready_pids = Vec::new();
            let mut ready_relays = Vec::new();
            let mut signals_ready = false;
            {
                let mut fds = Vec::with_capacity(pids.len() + 1);
                fds.push(PollFd::new(signals.as_fd(), PollFlags::POLLIN));
                for pid in &pids {
                    fds.push(PollFd::new(
                        self.daemons[pid].control.as_fd(),
                        PollFlags::POLLIN,
                    ));
                }
                let mut relays = Vec::new();
                for (pid, daemon) in &self.daemons {
                    for (pipe, fd) in daemon.relay.iter().flat_map(Relay::poll_fds) {
                        fds.push(PollFd::new(fd, PollFlags::POLLIN));
                        relays.push((*pid, pipe));
                    }
                }
                let timeout = PollTimeout::try_from(TICK).unwrap_or(PollTimeout::NONE);
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(_) => {
                        signals_ready = fds[0].any().unwrap_or(false);
                        for (i, pid) in pids.iter().enumerate() {
                            if fds[i + 1].any().unwrap_or(false) {
                                ready_pids.push(*pid);
                            }
                        }
                        for (i, relay) in relays.into_iter().enumerate() {
                            if fds[pids.len() + 1 + i].any().unwrap_or(false) {
                                ready_relays.push(relay);
                            }
                        }
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => {
                        logging::error(&format!(
                            "RW0018: mod_rwsgi: daemon manager: poll failed: {e}"
                        ));
                        std::thread::sleep(TICK);
                    }
                }
            }
            if signals_ready {
                while let Ok(Some(info)) = signals.read_signal() {
                    match Signal::try_from(info.ssi_signo as i32) {
                        Ok(Signal::SIGCHLD) => {}
                        Ok(Signal::SIGTERM) => self.begin_stop(Stopping::Hard, "received SIGTERM"),
                        Ok(Signal::SIGINT) => {
                            self.begin_stop(Stopping::Graceful, "Apache restarts gracefully")
                        }
                        _ => {} // SIGHUP, SIGUSR1/2: Apache's signals to its process group
                    }
                }
            }
            // A host's lines before its death (which reap drains and logs).
            for (pid, pipe) in ready_relays {
                if let Some(relay) = self.daemons.get_mut(&pid).and_then(|d| d.relay.as_mut()) {
                    relay.read(pipe);
                }
            }
            // Deaths are reaped every turn: SIGCHLD coalesces, and a death may race poll.
            self.reap();
            for pid in ready_pids {
                self.read_control(pid);
            }
            if nix::unistd::getppid() != self.apache_parent {
                self.begin_stop(Stopping::Hard, "the Apache parent process is gone");
            }
            self.check_replacement_patience();
            if let Some((_, deadline)) = self.stopping {
                if self.daemons.is_empty() {
                    return ManagerExit::Stopped.code();
                }
                if Instant::now() >= deadline {
                    self.kill_remaining();
                    return ManagerExit::Stopped.code();
                }
            }
        }
    }

    fn begin_stop(&mut self, how: Stopping, why: &str) {
        if !stop_escalates(self.stopping.map(|(current, _)| current), how) {
            return;
        }
        let (signal, window) = match how {
            Stopping::Graceful => (
                Signal::SIGUSR2,
                self.max_over_groups(|p| p.graceful_timeout) + Duration::from_secs(2),
            ),
            Stopping::Hard => (
                Signal::SIGTERM,
                self.max_over_groups(|p| p.shutdown_timeout) + Duration::from_secs(1),
            ),
        };
        logging::info(&format!(
            "RW0019: mod_rwsgi: daemon manager (pid {}) stopping {} daemon process(es): {why}",
            std::process::id(),
            self.daemons.len()
        ));
        self.stopping = Some((how, Instant::now() + window));
        for pid in self.daemons.keys() {
            let _ = nix::sys::signal::kill(*pid, signal);
        }
        // No daemon is started from here on. Letting go of the listening sockets lets the
        // last daemon to stop accepting close them (see Dispatcher::stop_accepting).
        for group in &mut self.groups {
            if group.plan.listener_fd >= 0 {
                // SAFETY: the manager's own copy of the socket, inherited from the parent and
                // used only to start daemons, which no longer happens.
                unsafe { libc::close(group.plan.listener_fd) };
                group.plan.listener_fd = -1;
            }
        }
    }

    fn max_over_groups(&self, f: impl Fn(&DaemonPlan) -> Duration) -> Duration {
        self.groups
            .iter()
            .map(|g| f(&g.plan))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    fn kill_remaining(&mut self) {
        for (pid, d) in &self.daemons {
            logging::warning(&format!(
                "RW0020: mod_rwsgi: daemon process '{}' (pid {pid}) did not stop in time; killing it",
                self.groups[d.group].plan.group
            ));
            let _ = nix::sys::signal::kill(*pid, Signal::SIGKILL);
        }
        for (pid, daemon) in self.daemons.drain() {
            let _ = waitpid(pid, None);
            if let Some(relay) = daemon.relay {
                relay.drain();
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.on_death(pid, Death::Exited(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => self.on_death(pid, Death::Killed(sig)),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    }

    fn on_death(&mut self, pid: Pid, death: Death) {
        let Some(mut daemon) = self.daemons.remove(&pid) else {
            return;
        };
        // Its last lines (a traceback, a crash report) come before the line about its death.
        if let Some(relay) = daemon.relay.take() {
            relay.drain();
        }
        let (g, s) = (daemon.group, daemon.slot);
        let name = self.groups[g].plan.group.clone();
        let metrics = self.groups[g].plan.metrics;
        if let (Some(m), Some(record)) = (metrics, daemon.metrics_record) {
            m.table.release(m.group, record);
        }
        if daemon.retiring {
            let slot = &mut self.groups[g].slots[s];
            if slot.waiting == Some(pid) {
                slot.waiting = None;
            }
            logging::info(&format!(
                "RW0021: mod_rwsgi: daemon process '{name}' #{s} (pid {pid}) {death} after being \
                 replaced"
            ));
            return;
        }
        self.groups[g].slots[s].current = None;
        if self.stopping.is_some() {
            logging::info(&format!(
                "RW0022: mod_rwsgi: daemon process '{name}' (pid {pid}) {death}; Apache is stopping"
            ));
            return;
        }
        // A process waiting for this one to take over must not wait any longer.
        if let Some(old) = self.groups[g].slots[s].waiting.take() {
            self.tell_to_drain(old);
        }
        if self.groups[g].replacing.is_some_and(|(slot, _)| slot == s) {
            self.groups[g].replacing = None;
        }
        let planned = death.is_planned();
        if let Some(m) = metrics {
            m.table
                .count_restart(m.group, metrics_table::reason_index(death.restart_reason()));
        }
        let slot = &mut self.groups[g].slots[s];
        let delay = slot.history.on_death(Instant::now(), planned);
        let quick = slot.history.quick_deaths;
        logging::log(
            if delay.is_zero() {
                logging::Level::Info
            } else {
                logging::Level::Error
            },
            &format!(
                "RW0023: mod_rwsgi: daemon process '{name}' #{s} (pid {pid}) {death}; restarting{}",
                if delay.is_zero() {
                    String::new()
                } else {
                    format!(
                        " in {} s (it died {quick} time(s) in a row soon after starting)",
                        delay.as_secs()
                    )
                }
            ),
        );
        self.spawn(g, s, delay, &[]);
        self.start_next_replacement(g);
    }

    fn read_control(&mut self, pid: Pid) {
        let mut buf = [0u8; 64 * 1024];
        let mut messages = Vec::new();
        let mut error = None;
        {
            let Some(daemon) = self.daemons.get_mut(&pid) else {
                return;
            };
            loop {
                match nix::sys::socket::recv(
                    daemon.control.as_raw_fd(),
                    &mut buf,
                    nix::sys::socket::MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(0) => break, // closed: its death is reaped
                    Ok(n) => daemon.inbox.feed(&buf[..n]),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break, // nothing more for now
                }
                loop {
                    match daemon.inbox.next_message() {
                        Ok(Some(msg)) => messages.push(msg),
                        Ok(None) => break,
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
                if error.is_some() {
                    break;
                }
            }
        }
        for msg in messages {
            match msg {
                ControlMessage::Ready => self.on_ready(pid),
                ControlMessage::Replace { reason, scripts } => {
                    self.on_replace(pid, reason, scripts)
                }
            }
        }
        if let Some(e) = error {
            // The daemon may be waiting for an answer (a Replace): answer it by telling it to
            // drain. Its slot is then refilled when it exits, as after any planned exit.
            logging::warning(&format!(
                "RW0024: mod_rwsgi: daemon manager: bad control message from pid {pid}: {e}; \
                 telling it to drain"
            ));
            self.abandon_replacement(pid);
            let _ = nix::sys::signal::kill(pid, Signal::SIGUSR2);
        }
    }

    /// Forgets a queued replacement asked for by `pid`, which is answered by its draining
    /// instead: its slot is refilled when it exits (unless a replacement already started).
    fn abandon_replacement(&mut self, pid: Pid) {
        let Some(daemon) = self.daemons.get(&pid) else {
            return;
        };
        let g = daemon.group;
        self.groups[g].queue.retain(|r| r.pid != pid);
    }

    fn on_ready(&mut self, pid: Pid) {
        let Some(daemon) = self.daemons.get(&pid) else {
            return;
        };
        let (g, s) = (daemon.group, daemon.slot);
        if self.groups[g].slots[s].current == Some(pid) {
            self.groups[g].slots[s].history.on_ready(Instant::now());
        }
        if let Some(old) = self.groups[g].slots[s].waiting.take() {
            logging::info(&format!(
                "RW0025: mod_rwsgi: daemon process '{}' #{s} (pid {pid}) is ready; pid {old} drains",
                self.groups[g].plan.group
            ));
            self.tell_to_drain(old);
        }
        if self.groups[g].replacing.is_some_and(|(slot, _)| slot == s) {
            self.groups[g].replacing = None;
            self.start_next_replacement(g);
        }
    }

    fn on_replace(&mut self, pid: Pid, reason: String, scripts: Vec<Script>) {
        if self.stopping.is_some() {
            return; // it is told to stop anyway
        }
        let Some(daemon) = self.daemons.get(&pid) else {
            return;
        };
        if daemon.retiring {
            return;
        }
        let (g, s) = (daemon.group, daemon.slot);
        let queued = enqueue(
            &mut self.groups[g].queue,
            ReplaceRequest {
                slot: s,
                pid,
                reason,
                scripts,
            },
        );
        if queued {
            self.start_next_replacement(g);
        }
    }

    /// Starts the next queued replacement of group `g` unless one is starting already.
    fn start_next_replacement(&mut self, g: usize) {
        while self.groups[g].replacing.is_none() {
            let group = &mut self.groups[g];
            let Some(request) = next_replacement(&mut group.queue, &group.slots) else {
                return;
            };
            let s = request.slot;
            if let Some(d) = self.daemons.get_mut(&request.pid) {
                d.retiring = true;
            }
            let slot = &mut self.groups[g].slots[s];
            slot.waiting = Some(request.pid);
            slot.history.on_death(Instant::now(), true);
            if let Some(m) = self.groups[g].plan.metrics {
                m.table.count_restart(
                    m.group,
                    metrics_table::classify_replace_reason(&request.reason),
                );
            }
            self.groups[g].replacing = Some((s, Instant::now()));
            logging::info(&format!(
                "RW0026: mod_rwsgi: daemon process '{}' #{s} (pid {}) is being replaced ({}); starting \
                 its replacement{}",
                self.groups[g].plan.group,
                request.pid,
                request.reason,
                if request.scripts.is_empty() {
                    String::new()
                } else {
                    format!(", which imports {} script(s) first", request.scripts.len())
                }
            ));
            self.spawn(g, s, Duration::ZERO, &request.scripts);
            if self.groups[g].slots[s].current == Some(request.pid) {
                // fork failed: the old process keeps serving
                self.groups[g].slots[s].waiting = None;
                self.groups[g].replacing = None;
            }
        }
    }

    /// Tells a retiring daemon its successor is ready (or will not be): drain now.
    fn tell_to_drain(&self, pid: Pid) {
        if self.daemons.contains_key(&pid) {
            let _ = nix::sys::signal::kill(pid, Signal::SIGUSR2);
        }
    }

    /// A replacement that never gets ready must not hold its predecessor forever.
    fn check_replacement_patience(&mut self) {
        let now = Instant::now();
        for g in 0..self.groups.len() {
            let patience = self.groups[g]
                .plan
                .timers
                .startup_timeout
                .unwrap_or(control::REPLACEMENT_PATIENCE);
            let Some(s) = out_of_patience(self.groups[g].replacing, patience, now) else {
                continue;
            };
            if let Some(old) = self.groups[g].slots[s].waiting.take() {
                logging::warning(&format!(
                    "RW0027: mod_rwsgi: the replacement of daemon process '{}' #{s} (pid {old}) was \
                     not ready within {} s; pid {old} drains anyway",
                    self.groups[g].plan.group,
                    patience.as_secs()
                ));
                self.tell_to_drain(old);
            }
            self.groups[g].replacing = None;
            self.start_next_replacement(g);
        }
    }
}

/// Whether a stop asked for `how` changes anything while `current` is under way: a hard
/// stop overrides a graceful one, never the other way round, and none repeats.
fn stop_escalates(current: Option<Stopping>, how: Stopping) -> bool {
    match current {
        None => true,
        Some(Stopping::Hard) => false,
        Some(Stopping::Graceful) => how == Stopping::Hard,
    }
}

/// Queues a replacement request unless its process already has one queued; returns whether
/// it was queued.
fn enqueue(queue: &mut VecDeque<ReplaceRequest>, request: ReplaceRequest) -> bool {
    if queue.iter().any(|r| r.pid == request.pid) {
        return false;
    }
    queue.push_back(request);
    true
}

/// Takes the next queued replacement whose process still serves its slot: one that died or
/// was replaced meanwhile is dropped.
fn next_replacement(
    queue: &mut VecDeque<ReplaceRequest>,
    slots: &[Slot],
) -> Option<ReplaceRequest> {
    while let Some(request) = queue.pop_front() {
        if slots.get(request.slot).and_then(|slot| slot.current) == Some(request.pid) {
            return Some(request);
        }
    }
    None
}

/// The slot whose replacement has been starting for `patience` or longer at `now`, if any:
/// its predecessor stops waiting and drains anyway.
fn out_of_patience(
    replacing: Option<(usize, Instant)>,
    patience: Duration,
    now: Instant,
) -> Option<usize> {
    let (slot, since) = replacing?;
    (now.saturating_duration_since(since) >= patience).then_some(slot)
}

#[derive(Clone, Copy, Debug)]
enum Death {
    Exited(i32),
    Killed(Signal),
}

impl Death {
    /// An orderly exit (a planned restart or a stop): never counted as a crash.
    fn is_planned(self) -> bool {
        match self {
            Death::Exited(code) => DaemonExit::from_code(code).is_some_and(DaemonExit::is_orderly),
            Death::Killed(_) => false,
        }
    }

    /// The restart reason counted in the metrics table.
    fn restart_reason(self) -> &'static str {
        match self {
            Death::Killed(_) => "killed",
            Death::Exited(_) if self.is_planned() => "planned",
            Death::Exited(_) => "exited",
        }
    }
}

impl std::fmt::Display for Death {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Death::Exited(code) => {
                write!(f, "exited with status {code}")?;
                match DaemonExit::from_code(*code) {
                    Some(DaemonExit::PlannedRestart) => f.write_str(" (a planned restart)"),
                    Some(DaemonExit::Unprepared) => f.write_str(" (it could not prepare to run)"),
                    Some(DaemonExit::Panicked) => f.write_str(" (a mod_rwsgi panic)"),
                    _ => Ok(()),
                }
            }
            Death::Killed(sig) => write!(f, "was killed by {}", sig.as_str()),
        }
    }
}

/// The life of one forked daemon: a request-serving process, or with `threads=0` a service
/// script's process (mod_wsgi's sidecar pattern), which serves no requests. A daemon host
/// (`daemon::host`) runs the same.
pub fn run_daemon(plan: DaemonPlan) -> DaemonExit {
    if plan.interpreter.threads == 0 {
        service::run_service_scripts(plan)
    } else {
        daemon_process::serve_requests(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(slot: usize, pid: i32) -> ReplaceRequest {
        ReplaceRequest {
            slot,
            pid: Pid::from_raw(pid),
            reason: format!("test {pid}"),
            scripts: Vec::new(),
        }
    }

    fn slots(current: &[Option<i32>]) -> Vec<Slot> {
        current
            .iter()
            .map(|pid| Slot {
                current: pid.map(Pid::from_raw),
                waiting: None,
                history: SlotHistory::new(Instant::now()),
            })
            .collect()
    }

    #[test]
    fn a_process_is_queued_for_replacement_once() {
        let mut queue = VecDeque::new();
        assert!(enqueue(&mut queue, request(0, 10)));
        assert!(enqueue(&mut queue, request(1, 11)));
        assert!(!enqueue(&mut queue, request(0, 10)), "asked twice");
        let order: Vec<i32> = queue.iter().map(|r| r.pid.as_raw()).collect();
        assert_eq!(order, [10, 11]);
    }

    #[test]
    fn replacements_come_in_order_skipping_processes_no_longer_serving_their_slot() {
        let mut queue = VecDeque::new();
        for (slot, pid) in [(0, 10), (1, 11), (2, 12), (3, 13)] {
            enqueue(&mut queue, request(slot, pid));
        }
        // Slot 0's process died and slot 1 has a new one: their requests are stale.
        let slots = slots(&[None, Some(21), Some(12), Some(13)]);
        let first = next_replacement(&mut queue, &slots).unwrap();
        assert_eq!((first.slot, first.pid.as_raw()), (2, 12));
        let second = next_replacement(&mut queue, &slots).unwrap();
        assert_eq!((second.slot, second.pid.as_raw()), (3, 13));
        assert!(next_replacement(&mut queue, &slots).is_none());
        assert!(queue.is_empty());
        // A slot the group no longer has is stale too.
        enqueue(&mut queue, request(7, 17));
        assert!(next_replacement(&mut queue, &slots).is_none());
    }

    #[test]
    fn a_replacement_that_is_not_ready_within_patience_releases_its_predecessor() {
        let t0 = Instant::now();
        let patience = Duration::from_secs(30);
        assert_eq!(out_of_patience(None, patience, t0 + patience), None);
        let replacing = Some((2, t0));
        assert_eq!(out_of_patience(replacing, patience, t0), None);
        assert_eq!(
            out_of_patience(
                replacing,
                patience,
                t0 + patience - Duration::from_millis(1)
            ),
            None
        );
        assert_eq!(out_of_patience(replacing, patience, t0 + patience), Some(2));
        // A clock that reads earlier than the start (another thread's Instant) waits.
        assert_eq!(
            out_of_patience(Some((1, t0 + patience)), patience, t0),
            None
        );
    }

    #[test]
    fn a_hard_stop_overrides_a_graceful_one_and_nothing_repeats() {
        use Stopping::{Graceful, Hard};
        assert!(stop_escalates(None, Graceful));
        assert!(stop_escalates(None, Hard));
        assert!(stop_escalates(Some(Graceful), Hard));
        assert!(!stop_escalates(Some(Graceful), Graceful));
        assert!(!stop_escalates(Some(Hard), Hard));
        assert!(!stop_escalates(Some(Hard), Graceful));
    }

    #[test]
    fn deaths_are_planned_only_for_orderly_exits_and_counted_by_reason() {
        let planned = Death::Exited(DaemonExit::PlannedRestart.code());
        assert!(planned.is_planned());
        assert_eq!(planned.restart_reason(), "planned");
        assert_eq!(
            planned.to_string(),
            format!(
                "exited with status {} (a planned restart)",
                DaemonExit::PlannedRestart.code()
            )
        );
        let failed = Death::Exited(DaemonExit::Failed.code());
        assert!(!failed.is_planned());
        assert_eq!(failed.restart_reason(), "exited");
        let odd = Death::Exited(3);
        assert!(!odd.is_planned());
        assert_eq!(odd.to_string(), "exited with status 3");
        let killed = Death::Killed(Signal::SIGKILL);
        assert!(!killed.is_planned());
        assert_eq!(killed.restart_reason(), "killed");
        assert_eq!(killed.to_string(), "was killed by SIGKILL");
    }
}
