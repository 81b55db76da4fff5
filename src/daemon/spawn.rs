//! What a freshly forked daemon process does before it may run Python, in this order:
//! signals reset, descriptors closed, own process group, resource limits and CPU priority
//! (while still root, so a negative priority can be set), setgid → initgroups/setgroups →
//! setuid → verify, umask, chdir, LANG/LC_ALL, display name; then, apart, env-file= and
//! env= (read as the daemon's user). Each step returns a typed error
//! naming what failed; a daemon whose privileges could not be dropped never serves.

use std::ffi::CString;
use std::fmt;
use std::os::fd::RawFd;

use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::unistd::{Gid, Uid};

/// The identity a daemon must run as.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub user_name: String,
    /// Explicit supplementary groups (`supplementary-groups=`); None = initgroups(user).
    pub supplementary: Option<Vec<u32>>,
    /// True when user= or group= was configured (then root is never acceptable).
    pub configured: bool,
}

/// `cpu-time-limit=`, `memory-limit=`, `virtual-memory-limit=`, `cpu-priority=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResourceLimits {
    /// RLIMIT_CPU soft limit in seconds: SIGXCPU then asks for a warm replacement.
    pub cpu_time: Option<u64>,
    /// CPU seconds allowed past the soft limit before the kernel's SIGKILL (the drain).
    pub cpu_time_grace: u64,
    /// RLIMIT_DATA in bytes.
    pub data: Option<u64>,
    /// RLIMIT_AS in bytes.
    pub address_space: Option<u64>,
    /// Scheduling priority (nice value), -20..=20; 0 leaves it unchanged.
    pub priority: i32,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChildSetup {
    pub keep_fds: Vec<RawFd>,
    pub identity: Option<Identity>,
    pub umask: Option<u32>,
    pub home: Option<String>,
    pub lang: Option<String>,
    pub locale: Option<String>,
    pub display_name: Option<String>,
    /// Apache's argv memory (start, length) to overwrite with the display name. An address
    /// in this process: it does not cross exec (`plan_wire`), a daemon host is given the
    /// display name as its argv[0] instead.
    #[serde(skip)]
    pub argv_area: Option<(usize, usize)>,
    pub limits: ResourceLimits,
    /// `env-file=`: a dotenv file, read after the privilege drop.
    pub env_file: Option<String>,
    /// `env=NAME=VALUE`, applied after the env file (so they win).
    pub env: Vec<(String, String)>,
}

#[derive(Debug)]
pub enum SpawnError {
    Signals(String),
    Privileges(String),
    StillPrivileged { uid: u32, gid: u32 },
    Home(String, String),
    Limits(String),
    EnvFile(String, String),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Signals(e) => write!(f, "cannot reset signal handlers: {e}"),
            SpawnError::Privileges(e) => write!(f, "cannot drop privileges: {e}"),
            SpawnError::StillPrivileged { uid, gid } => write!(
                f,
                "refusing to serve: still running with uid={uid} gid={gid} after dropping \
                 privileges"
            ),
            SpawnError::Home(dir, e) => write!(f, "cannot change directory to home={dir}: {e}"),
            SpawnError::Limits(e) => write!(f, "cannot apply resource limits: {e}"),
            SpawnError::EnvFile(path, e) => write!(f, "cannot read env-file={path}: {e}"),
        }
    }
}

/// The first two steps alone (signals to their defaults, inherited descriptors closed):
/// safe to run before a restart backoff, and again inside `prepare_child`.
pub fn release_inherited(setup: &ChildSetup) -> Result<(), SpawnError> {
    reset_signals().map_err(SpawnError::Signals)?;
    close_inherited_fds(&setup.keep_fds);
    Ok(())
}

/// Runs every step in order. Called in the child right after fork, single-threaded.
pub fn prepare_child(setup: &ChildSetup) -> Result<(), SpawnError> {
    reset_signals().map_err(SpawnError::Signals)?;
    close_inherited_fds(&setup.keep_fds);
    // Own process group: prefork's stop signals Apache's whole group, but daemons must be
    // stopped by the parent's orderly shutdown. Die with the parent if it is killed.
    let _ = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on the calling process.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGTERM as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    apply_limits(&setup.limits).map_err(SpawnError::Limits)?;
    if let Some(id) = &setup.identity {
        drop_privileges(id)?;
    }
    if let Some(mask) = setup.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    if let Some(home) = &setup.home {
        std::env::set_current_dir(home)
            .map_err(|e| SpawnError::Home(home.clone(), e.to_string()))?;
    }
    if let Some(lang) = &setup.lang {
        // SAFETY: the process is single-threaded right after fork; nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var("LANG", lang) };
    }
    if let Some(locale) = &setup.locale {
        // SAFETY: as above.
        unsafe { std::env::set_var("LC_ALL", locale) };
        if let Ok(c) = CString::new(locale.as_str()) {
            // SAFETY: setlocale with a valid C string, single-threaded.
            let ok = unsafe { libc::setlocale(libc::LC_ALL, c.as_ptr()) };
            if ok.is_null() {
                crate::logging::warning(&format!(
                    "RW0039: locale '{locale}' is not available on this system (setlocale failed); \
                     LC_ALL is set for Python anyway"
                ));
            }
        }
    }
    if let Some(name) = &setup.display_name {
        set_display_name(name, setup.argv_area);
    }
    Ok(())
}

/// `env-file=` then `env=`: the application's environment, set after [`prepare_child`]
/// (the file is read as the daemon's user) and before Python starts. A failure leaves the
/// environment untouched; the daemon then serves 503s naming it instead of crash-looping.
/// Call while the process is still single-threaded.
pub fn apply_environment(setup: &ChildSetup) -> Result<(), SpawnError> {
    let mut env = Vec::new();
    if let Some(path) = &setup.env_file {
        env = read_env_file(path).map_err(|e| SpawnError::EnvFile(path.clone(), e))?;
    }
    env.extend(setup.env.iter().cloned());
    for (name, value) in env {
        // SAFETY: the caller runs this single-threaded, before Python or any worker thread
        // starts; nothing reads the environment concurrently.
        unsafe { std::env::set_var(name, value) };
    }
    Ok(())
}

/// Sets the rlimits and the nice value. Lowering a limit needs no privilege; a negative
/// priority needs root, hence before the privilege drop (as mod_wsgi).
fn apply_limits(limits: &ResourceLimits) -> Result<(), String> {
    use nix::sys::resource::{Resource, setrlimit};
    let set = |resource: Resource, name: &str, soft: u64, hard: u64| {
        setrlimit(resource, soft, hard).map_err(|e| format!("setrlimit({name}, {soft}): {e}"))
    };
    if let Some(secs) = limits.cpu_time {
        // The soft limit sends SIGXCPU (a warm replacement); the hard one, a drain's worth
        // of CPU seconds later, is the kernel's SIGKILL for a process that never stops.
        set(
            Resource::RLIMIT_CPU,
            "RLIMIT_CPU",
            secs,
            secs.saturating_add(limits.cpu_time_grace.max(1)),
        )?;
    }
    if let Some(bytes) = limits.data {
        set(Resource::RLIMIT_DATA, "RLIMIT_DATA", bytes, bytes)?;
    }
    if let Some(bytes) = limits.address_space {
        set(Resource::RLIMIT_AS, "RLIMIT_AS", bytes, bytes)?;
    }
    if limits.priority != 0 {
        // SAFETY: setpriority on this process only; errno is read right after.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, limits.priority) };
        if rc != 0 {
            return Err(format!(
                "setpriority({}): {}",
                limits.priority,
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Reads a dotenv file (`NAME=value`, `export NAME=value`, quotes, `#` comments) into
/// pairs, in file order; errors name the line.
pub fn read_env_file(path: &str) -> Result<Vec<(String, String)>, String> {
    let iter = dotenvy::from_path_iter(path).map_err(|e| describe_dotenv_error(&e))?;
    iter.map(|item| item.map_err(|e| describe_dotenv_error(&e)))
        .collect()
}

fn describe_dotenv_error(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(line, index) => {
            format!("malformed line at character {index}: {line:?}")
        }
        dotenvy::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

fn reset_signals() -> Result<(), String> {
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL is always sound.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
    SigSet::empty().thread_set_mask().map_err(|e| e.to_string())
}

/// Closes every descriptor but stdin/stdout/stderr (stderr is Apache's error log) and the
/// ones to keep: Apache's listeners, its pipe of death and other groups' sockets must not
/// leak into application code.
fn close_inherited_fds(keep: &[RawFd]) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing a descriptor this fresh child inherited and will never use;
            // no Rust object in the child owns it.
            unsafe { libc::close(fd) };
        }
    }
}

fn drop_privileges(id: &Identity) -> Result<(), SpawnError> {
    let err = |what: &str, e: nix::Error| SpawnError::Privileges(format!("{what}: {e}"));
    if !Uid::effective().is_root() {
        // Apache was not started as root: like mod_wsgi, there is nothing to switch, and
        // the daemon runs as the user who started Apache.
        if id.configured && id.uid != Uid::effective().as_raw() {
            crate::logging::warning(&format!(
                "RW0040: user={} ignored: Apache was not started as root, so the daemon runs as uid {}",
                id.user_name,
                Uid::effective().as_raw()
            ));
        }
        return Ok(());
    }
    nix::unistd::setgid(Gid::from_raw(id.gid))
        .map_err(|e| err(&format!("setgid({})", id.gid), e))?;
    match &id.supplementary {
        Some(groups) => {
            let gids: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
            nix::unistd::setgroups(&gids).map_err(|e| err("setgroups", e))?;
        }
        None => {
            let user = CString::new(id.user_name.as_str())
                .map_err(|_| SpawnError::Privileges("user name contains NUL".into()))?;
            nix::unistd::initgroups(&user, Gid::from_raw(id.gid))
                .map_err(|e| err(&format!("initgroups({})", id.user_name), e))?;
        }
    }
    nix::unistd::setuid(Uid::from_raw(id.uid))
        .map_err(|e| err(&format!("setuid({})", id.uid), e))?;
    verify_identity(id)
}

/// After the switch, the daemon must be exactly who it should be (CVE-2014-0240: a failed
/// setuid went unnoticed) and keep no root group (CVE-2014-8583).
fn verify_identity(id: &Identity) -> Result<(), SpawnError> {
    let (uid, euid) = (Uid::current().as_raw(), Uid::effective().as_raw());
    let (gid, egid) = (Gid::current().as_raw(), Gid::effective().as_raw());
    let still_root = uid == 0 || euid == 0 || gid == 0 || egid == 0;
    let wrong = uid != id.uid || euid != id.uid || gid != id.gid || egid != id.gid;
    if (still_root && (id.configured || id.uid != 0)) || wrong {
        return Err(SpawnError::StillPrivileged {
            uid: euid,
            gid: egid,
        });
    }
    if id.gid != 0 {
        if let Ok(groups) = nix::unistd::getgroups() {
            if groups.iter().any(|g| g.as_raw() == 0) {
                return Err(SpawnError::Privileges(
                    "supplementary group root (0) is still set".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Shows `name` in `ps` (the command line) and in `top`/`/proc/PID/comm`.
fn set_display_name(name: &str, argv_area: Option<(usize, usize)>) {
    if let Ok(c) = CString::new(name) {
        // SAFETY: PR_SET_NAME copies at most 16 bytes from a valid C string.
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }
    show_command_line(name, argv_area);
}

/// Shows `text` as this process' command line in `ps`, overwriting `argv_area` (this
/// process' own argv memory: Apache's in a forked daemon, the host's in a daemon host).
pub fn show_command_line(name: &str, argv_area: Option<(usize, usize)>) {
    if let Some((start, len)) = argv_area {
        if len == 0 {
            return;
        }
        let bytes = name.as_bytes();
        let n = bytes.len().min(len);
        // SAFETY: (start, len) is this process' own argv memory (Apache's, computed by the
        // parent before fork and valid in the child's copy; or a daemon host's own, read from
        // /proc/self/stat); we write within its bounds and
        // zero-fill the rest so `ps` shows only the name (truncated like mod_wsgi's).
        unsafe {
            let area = std::slice::from_raw_parts_mut(start as *mut u8, len);
            area[..n].copy_from_slice(&bytes[..n]);
            area[n..].fill(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `text` to a file of its own and returns its path.
    fn env_file(tag: &str, text: &str) -> String {
        let path =
            std::env::temp_dir().join(format!("rwsgi-env-file-{}-{tag}.env", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_file_pairs_come_in_file_order_with_export_quotes_and_comments() {
        let path = env_file(
            "ok",
            "# a comment\n\
             ZETA=last-name-first\n\
             export ALPHA=1\n\
             \n\
             SINGLE='a b # not a comment'\n\
             DOUBLE=\"line\\nbreak\"\n\
             PLAIN=value # a trailing comment\n\
             EMPTY=\n",
        );
        let read = read_env_file(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            read.unwrap(),
            pairs(&[
                ("ZETA", "last-name-first"),
                ("ALPHA", "1"),
                ("SINGLE", "a b # not a comment"),
                ("DOUBLE", "line\nbreak"),
                ("PLAIN", "value"),
                ("EMPTY", ""),
            ])
        );
    }

    #[test]
    fn a_malformed_env_file_line_is_named() {
        let path = env_file("bad", "GOOD=1\nthis line has no equals sign\n");
        let read = read_env_file(&path);
        std::fs::remove_file(&path).unwrap();
        let err = read.unwrap_err();
        assert!(
            err.starts_with("malformed line at character")
                && err.contains("this line has no equals sign"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_env_file_says_why() {
        let err = read_env_file("/nonexistent/rwsgi/.env").unwrap_err();
        assert!(err.contains("No such file"), "{err}");
        let shown = SpawnError::EnvFile("/nonexistent/rwsgi/.env".into(), err).to_string();
        assert!(
            shown.starts_with("cannot read env-file=/nonexistent/rwsgi/.env: "),
            "{shown}"
        );
    }
}
