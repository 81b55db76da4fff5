//! `DaemonGroupSpec`: one WSGIDaemonProcess, every option of mod_wsgi 6.0
//! (`wsgi_add_daemon_process`), typed, with mod_wsgi's defaults and units. The options are
//! one table, [`DAEMON_OPTIONS`]: name, whether it may be empty, how its value is read and
//! which field it sets.

use std::time::Duration;

use super::Host;
use super::error::ConfigError;

const DIRECTIVE: &str = "WSGIDaemonProcess";

/// Largest value mod_wsgi can hold in its `int` options.
const INT_MAX: i64 = i32::MAX as i64;

/// The largest `websocket-max-message-size` (16 MiB: what the daemon protocol's WsMsg
/// frame carries, `protocol::WS_MESSAGE_MAX`; `module::daemon_plan` checks they agree).
pub const WEBSOCKET_MAX_MESSAGE_SIZE_LIMIT: u32 = 16 * 1024 * 1024;
/// Default `websocket-max-message-size` (bytes).
pub const DEFAULT_WEBSOCKET_MAX_MESSAGE_SIZE: u32 = 1024 * 1024;
/// Default `header-buffer-size` (bytes).
pub const DEFAULT_HEADER_BUFFER_SIZE: u32 = 32768;
/// Default `response-buffer-size` (bytes).
pub const DEFAULT_RESPONSE_BUFFER_SIZE: u32 = 8 * 1024 * 1024;
/// Default `listen-backlog`.
pub const DEFAULT_LISTEN_BACKLOG: u32 = 100;

/// One daemon process group. Timeouts whose `0` means "disabled" are
/// `Option<Duration>` and `None` when disabled or not given.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonGroupSpec {
    /// The group name (first argument), unique server-wide.
    pub name: String,
    /// Where the directive was read ("file:line"); set by `GlobalConfig::apply`.
    pub defined_at: String,
    /// The virtual host whose section defines the group (an opaque server id), set by
    /// `GlobalConfig::apply_in`; None outside every `<VirtualHost>`, where any virtual host
    /// may use it.
    pub virtual_host: Option<usize>,
    /// `processes=` (default 1).
    pub processes: u32,
    /// Whether `processes=` was given at all: makes `wsgi.multiprocess` True.
    pub processes_given: bool,
    /// `threads=` (default 15); 0 = service-script mode.
    pub threads: u32,
    /// `user=` name or `#uid`; `None` = Apache's User.
    pub user: Option<String>,
    /// `group=` name or `#gid`; `None` = Apache's Group.
    pub group: Option<String>,
    /// `supplementary-groups=a,b`; `None` = initgroups for the user.
    pub supplementary_groups: Option<Vec<String>>,
    /// `umask=` (octal); `None` = inherited.
    pub umask: Option<u32>,
    /// `home=` working directory; `None` = the user's home or the current directory.
    pub home: Option<String>,
    /// `python-home=`; `None` = WSGIPythonHome.
    pub python_home: Option<String>,
    /// `python-path=a:b`, in order.
    pub python_path: Vec<String>,
    /// `python-eggs=` (PYTHON_EGG_CACHE).
    pub python_eggs: Option<String>,
    /// `lang=` (LANG).
    pub lang: Option<String>,
    /// `locale=` (LC_ALL and setlocale).
    pub locale: Option<String>,
    /// `display-name=` as written; see [`DaemonGroupSpec::display_name_for`].
    pub display_name: Option<String>,
    /// `socket-user=`; `None` = Apache's User.
    pub socket_user: Option<String>,
    /// `script-user=`.
    pub script_user: Option<String>,
    /// `script-group=`.
    pub script_group: Option<String>,
    /// `listen-backlog=` (default 100).
    pub listen_backlog: u32,
    /// `connect-timeout=` (default 15 s); 0 = no retries.
    pub connect_timeout: Duration,
    /// `socket-timeout=`; `None` = Apache's `Timeout`.
    pub socket_timeout: Option<Duration>,
    /// `queue-timeout=`.
    pub queue_timeout: Option<Duration>,
    /// `request-timeout=`.
    pub request_timeout: Option<Duration>,
    /// `interrupt-timeout=`.
    pub interrupt_timeout: Option<Duration>,
    /// `deadlock-timeout=` (default 300 s).
    pub deadlock_timeout: Option<Duration>,
    /// `inactivity-timeout=`.
    pub inactivity_timeout: Option<Duration>,
    /// `startup-timeout=`.
    pub startup_timeout: Option<Duration>,
    /// `graceful-timeout=` (default 15 s).
    pub graceful_timeout: Option<Duration>,
    /// `eviction-timeout=`; see [`DaemonGroupSpec::effective_eviction_timeout`].
    pub eviction_timeout: Option<Duration>,
    /// `restart-interval=`.
    pub restart_interval: Option<Duration>,
    /// `shutdown-timeout=` (default 5 s); `None` = no reaper.
    pub shutdown_timeout: Option<Duration>,
    /// `maximum-requests=`; `None` = unlimited.
    pub maximum_requests: Option<u32>,
    /// `cpu-time-limit=` (RLIMIT_CPU).
    pub cpu_time_limit: Option<Duration>,
    /// `cpu-priority=` (-20..=20, default 0).
    pub cpu_priority: i32,
    /// `memory-limit=` bytes (RLIMIT_DATA).
    pub memory_limit: Option<u64>,
    /// `virtual-memory-limit=` bytes (RLIMIT_AS).
    pub virtual_memory_limit: Option<u64>,
    /// `stack-size=` bytes; `None` = OS default.
    pub stack_size: Option<u32>,
    /// `send-buffer-size=` bytes; `None` = OS default.
    pub send_buffer_size: Option<u32>,
    /// `receive-buffer-size=` bytes; `None` = OS default.
    pub receive_buffer_size: Option<u32>,
    /// `header-buffer-size=` bytes (default 32768; `0` means the default).
    pub header_buffer_size: u32,
    /// `response-buffer-size=` bytes (default 8 MiB; `0` means the default).
    pub response_buffer_size: u32,
    /// `response-socket-timeout=` as given; see
    /// [`DaemonGroupSpec::effective_response_socket_timeout`].
    pub response_socket_timeout: Option<Duration>,
    /// `response-flush-delay=` in milliseconds (default 5 ms; 0 = flush at once).
    pub response_flush_delay: Duration,
    /// `websocket-max-message-size=` bytes (beyond mod_wsgi; default 1 MiB, at most the
    /// protocol's 16 MiB): a larger message from a WebSocket client closes it with 1009.
    pub websocket_max_message_size: u32,
    /// `websocket-idle-timeout=` as given (beyond mod_wsgi): a WebSocket with no message,
    /// ping or pong either way for this long is closed (1001); None = socket-timeout.
    pub websocket_idle_timeout: Option<Duration>,
    /// `asgi-blocked-loop-timeout=` as given (beyond mod_wsgi): an ASGI event loop thread
    /// that runs no callback for this long is logged with its stack (RW0314); `Some(0)` =
    /// off, None = the default (5 s).
    pub asgi_blocked_loop_timeout: Option<Duration>,
    /// `switch-interval=` seconds (sys.setswitchinterval).
    pub switch_interval: Option<f64>,
    /// `server-metrics=on|off` (default off).
    pub server_metrics: bool,
    /// `maximum-rss=MB` (beyond mod_wsgi), in bytes: a process whose resident set grew past
    /// it after a request is replaced warm, like maximum-requests.
    pub maximum_rss: Option<u64>,
    /// `env=NAME=VALUE` (beyond mod_wsgi; repeatable, in order): set in the daemon's
    /// environment before Python starts.
    pub env: Vec<(String, String)>,
    /// `env-file=PATH` (beyond mod_wsgi): a dotenv file read by the daemon before Python
    /// starts; `env=` entries win over it.
    pub env_file: Option<String>,
}

/// Numeric ids of a group's users and groups, resolved through [`Host`].
/// `None` means "not configured" (Apache's User/Group, initgroups, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedIds {
    /// `user=`.
    pub uid: Option<u32>,
    /// `group=`.
    pub gid: Option<u32>,
    /// `supplementary-groups=`.
    pub supplementary_gids: Option<Vec<u32>>,
    /// `socket-user=`.
    pub socket_uid: Option<u32>,
    /// `script-user=`.
    pub script_uid: Option<u32>,
    /// `script-group=`.
    pub script_gid: Option<u32>,
}

/// One `key=value` word being applied.
pub struct Opt<'a> {
    word: &'a str,
    value: &'a str,
}

impl Opt<'_> {
    fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(DIRECTIVE, "option", self.word, message)
    }

    fn string(&self) -> String {
        self.value.to_owned()
    }

    fn int(&self, min: i64, max: i64) -> Result<i64, ConfigError> {
        parse_int(self.value)
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| self.err(format!("expected an integer from {min} to {max}")))
    }

    fn seconds(&self) -> Result<Duration, ConfigError> {
        const EXPECT: &str = "expected a non-negative integer number of seconds";
        match parse_int(self.value) {
            Some(v) if (0..=INT_MAX).contains(&v) => Ok(Duration::from_secs(v as u64)),
            Some(v) if v > INT_MAX => Err(self.err(format!("{EXPECT} (at most {INT_MAX})"))),
            None if is_digits(self.value) => Err(self.err(format!("{EXPECT} (at most {INT_MAX})"))),
            _ => Err(self.err(EXPECT)),
        }
    }

    /// Seconds where 0 disables the timer.
    fn timeout(&self) -> Result<Option<Duration>, ConfigError> {
        self.seconds().map(|d| (!d.is_zero()).then_some(d))
    }

    /// Seconds with up to 6 decimal places (`0.5`, `2.25`), kept to the microsecond: the
    /// timeouts of the socket between Apache and the daemons, which may well be sub-second.
    /// Whole seconds read as [`Self::seconds`] does.
    fn fine_seconds(&self) -> Result<Duration, ConfigError> {
        const EXPECT: &str =
            "expected a non-negative number of seconds (at most 6 decimal places, as 0.25)";
        let Some((whole, fraction)) = self.value.split_once('.') else {
            return self.seconds();
        };
        if !is_digits(whole) || !is_digits(fraction) {
            return Err(self.err(EXPECT));
        }
        if fraction.len() > 6 {
            return Err(self.err(format!(
                "{EXPECT}: '{fraction}' is finer than a microsecond"
            )));
        }
        let secs = match whole.parse::<i64>() {
            Ok(v) if v <= INT_MAX => v as u64,
            _ => return Err(self.err(format!("{EXPECT} (at most {INT_MAX})"))),
        };
        let micros: u32 = format!("{fraction:0<6}").parse().unwrap_or(0);
        Ok(Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)))
    }

    /// 0 (= default) or at least `min` bytes.
    fn buffer_size(&self, min: i64, zero_means: &str) -> Result<u32, ConfigError> {
        match parse_int(self.value) {
            Some(v) if v == 0 || (min..=INT_MAX).contains(&v) => Ok(v as u32),
            _ => Err(self.err(format!(
                "expected 0 ({zero_means}) or a number of bytes from {min} to {INT_MAX}"
            ))),
        }
    }

    fn absolute_path(&self) -> Result<String, ConfigError> {
        if self.value.starts_with('/') {
            Ok(self.string())
        } else {
            Err(self.err("expected an absolute path"))
        }
    }

    /// A user or group: a name or `#id`.
    fn principal(&self) -> Result<String, ConfigError> {
        let bad_id = self
            .value
            .strip_prefix('#')
            .is_some_and(|id| !is_digits(id) || id.parse::<u32>().is_err());
        if bad_id {
            return Err(self.err("expected a name or #numeric-id"));
        }
        if self
            .value
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == ':')
        {
            return Err(self.err("expected a name or #numeric-id"));
        }
        Ok(self.string())
    }
}

/// How a WSGIDaemonProcess option's value is read, and which field of
/// [`DaemonGroupSpec`] it sets.
#[derive(Clone, Copy)]
pub enum OptionValue {
    /// Any text, the empty one included (`lang=''`).
    Text(fn(&mut DaemonGroupSpec) -> &mut Option<String>),
    /// A user or group: a name or `#id`.
    Principal(fn(&mut DaemonGroupSpec) -> &mut Option<String>),
    /// An absolute path.
    AbsolutePath(fn(&mut DaemonGroupSpec) -> &mut Option<String>),
    /// Whole seconds; 0 disables (`None`).
    Timeout(fn(&mut DaemonGroupSpec) -> &mut Option<Duration>),
    /// Seconds, decimals allowed down to the microsecond; 0 disables (`None`).
    FineTimeout(fn(&mut DaemonGroupSpec) -> &mut Option<Duration>),
    /// Bytes; 0 means no limit (`None`).
    ByteLimit(fn(&mut DaemonGroupSpec) -> &mut Option<u64>),
    /// A socket buffer: 0 (the system default, `None`) or at least 512 bytes.
    SocketBuffer(fn(&mut DaemonGroupSpec) -> &mut Option<u32>),
    /// Anything else: parses the value and sets the field(s) itself.
    Custom(fn(&mut DaemonGroupSpec, &Opt<'_>) -> Result<(), ConfigError>),
    /// mod_wsgi has the option; mod_rwsgi refuses it with "is not supported by mod_rwsgi
    /// yet", and this says why.
    Refused(&'static str),
}

/// One row of the WSGIDaemonProcess option table.
#[derive(Clone, Copy)]
pub struct DaemonOption {
    /// The option key, as written before `=`.
    pub name: &'static str,
    /// Whether `key=` (or `key=''`) is accepted. mod_wsgi does not reject an empty value
    /// for these, and mod_wsgi-express writes them so: `python-home` (Python's own default,
    /// WSGIPythonHome not used), `python-path` (nothing added), `python-eggs`, `lang` and
    /// `locale` (set empty, as mod_wsgi sets LANG/LC_ALL), `supplementary-groups` (none, no
    /// initgroups), `display-name` (the name is left alone). Every other option needs a value.
    pub empty_ok: bool,
    /// How the value is read and where it goes.
    pub value: OptionValue,
}

const fn option(name: &'static str, value: OptionValue) -> DaemonOption {
    DaemonOption {
        name,
        empty_ok: false,
        value,
    }
}

const fn option_empty_ok(name: &'static str, value: OptionValue) -> DaemonOption {
    DaemonOption {
        name,
        empty_ok: true,
        value,
    }
}

use OptionValue::{
    AbsolutePath, ByteLimit, Custom, FineTimeout, Principal, Refused, SocketBuffer, Text, Timeout,
};

/// Every option WSGIDaemonProcess accepts (mod_wsgi 6.0's, then mod_rwsgi's own), with
/// how its value is read and where it goes. A new option is one row here.
pub static DAEMON_OPTIONS: &[DaemonOption] = &[
    option(
        "processes",
        Custom(|s, o| {
            s.processes = o.int(1, 10000)? as u32;
            s.processes_given = true;
            Ok(())
        }),
    ),
    option(
        "threads",
        Custom(|s, o| {
            s.threads = o.int(0, 10000)? as u32;
            Ok(())
        }),
    ),
    option("user", Principal(|s| &mut s.user)),
    option("group", Principal(|s| &mut s.group)),
    option_empty_ok("supplementary-groups", Custom(supplementary_groups)),
    option("umask", Custom(umask)),
    option("home", AbsolutePath(|s| &mut s.home)),
    option_empty_ok("python-home", Text(|s| &mut s.python_home)),
    // Empty entries are skipped and an empty list adds nothing, as in mod_wsgi.
    option_empty_ok(
        "python-path",
        Custom(|s, o| {
            s.python_path = split_path_list(o.value);
            Ok(())
        }),
    ),
    option_empty_ok("python-eggs", Text(|s| &mut s.python_eggs)),
    option_empty_ok("lang", Text(|s| &mut s.lang)),
    option_empty_ok("locale", Text(|s| &mut s.locale)),
    // mod_wsgi would blank the process title; an unnamed process helps nobody.
    option_empty_ok(
        "display-name",
        Custom(|s, o| {
            s.display_name = (!o.value.is_empty()).then(|| o.string());
            Ok(())
        }),
    ),
    // A jail also needs the whole Python installation copied into it.
    option(
        "chroot",
        Refused("mod_wsgi deprecates it: run Apache or the application in a container instead"),
    ),
    option("socket-user", Principal(|s| &mut s.socket_user)),
    option("script-user", Principal(|s| &mut s.script_user)),
    option("script-group", Principal(|s| &mut s.script_group)),
    option(
        "listen-backlog",
        Custom(|s, o| {
            s.listen_backlog = o.int(0, INT_MAX)? as u32;
            Ok(())
        }),
    ),
    option(
        "connect-timeout",
        Custom(|s, o| {
            s.connect_timeout = o.fine_seconds()?;
            Ok(())
        }),
    ),
    option("socket-timeout", FineTimeout(|s| &mut s.socket_timeout)),
    option("queue-timeout", FineTimeout(|s| &mut s.queue_timeout)),
    option("request-timeout", Timeout(|s| &mut s.request_timeout)),
    option("interrupt-timeout", Timeout(|s| &mut s.interrupt_timeout)),
    option("deadlock-timeout", Timeout(|s| &mut s.deadlock_timeout)),
    option("inactivity-timeout", Timeout(|s| &mut s.inactivity_timeout)),
    option("startup-timeout", Timeout(|s| &mut s.startup_timeout)),
    option("graceful-timeout", Timeout(|s| &mut s.graceful_timeout)),
    option("eviction-timeout", Timeout(|s| &mut s.eviction_timeout)),
    option("restart-interval", Timeout(|s| &mut s.restart_interval)),
    option("shutdown-timeout", Timeout(|s| &mut s.shutdown_timeout)),
    option(
        "maximum-requests",
        Custom(|s, o| {
            let n = o.int(0, INT_MAX)? as u32;
            s.maximum_requests = (n != 0).then_some(n);
            Ok(())
        }),
    ),
    option("cpu-time-limit", Timeout(|s| &mut s.cpu_time_limit)),
    option(
        "cpu-priority",
        Custom(|s, o| {
            s.cpu_priority = o.int(-20, 20)? as i32;
            Ok(())
        }),
    ),
    option("memory-limit", ByteLimit(|s| &mut s.memory_limit)),
    option(
        "virtual-memory-limit",
        ByteLimit(|s| &mut s.virtual_memory_limit),
    ),
    option(
        "stack-size",
        Custom(|s, o| {
            s.stack_size = Some(o.int(1, INT_MAX)? as u32);
            Ok(())
        }),
    ),
    option(
        "send-buffer-size",
        SocketBuffer(|s| &mut s.send_buffer_size),
    ),
    option(
        "receive-buffer-size",
        SocketBuffer(|s| &mut s.receive_buffer_size),
    ),
    option(
        "header-buffer-size",
        Custom(|s, o| {
            let n = o.buffer_size(8192, "default of 32768")?;
            s.header_buffer_size = if n == 0 {
                DEFAULT_HEADER_BUFFER_SIZE
            } else {
                n
            };
            Ok(())
        }),
    ),
    option(
        "response-buffer-size",
        Custom(|s, o| {
            let n = o.buffer_size(65536, "default of 8 MiB")?;
            s.response_buffer_size = if n == 0 {
                DEFAULT_RESPONSE_BUFFER_SIZE
            } else {
                n
            };
            Ok(())
        }),
    ),
    option(
        "response-socket-timeout",
        FineTimeout(|s| &mut s.response_socket_timeout),
    ),
    option(
        "response-flush-delay",
        Custom(|s, o| {
            let ms = o
                .int(0, INT_MAX)
                .map_err(|_| o.err("expected a non-negative integer number of milliseconds"))?;
            s.response_flush_delay = Duration::from_millis(ms as u64);
            Ok(())
        }),
    ),
    option(
        "websocket-max-message-size",
        Custom(|s, o| match parse_int(o.value) {
            Some(v) if (1..=i64::from(WEBSOCKET_MAX_MESSAGE_SIZE_LIMIT)).contains(&v) => {
                s.websocket_max_message_size = v as u32;
                Ok(())
            }
            _ => Err(o.err(format!(
                "expected a number of bytes from 1 to {WEBSOCKET_MAX_MESSAGE_SIZE_LIMIT}"
            ))),
        }),
    ),
    option(
        "websocket-idle-timeout",
        FineTimeout(|s| &mut s.websocket_idle_timeout),
    ),
    option(
        "asgi-blocked-loop-timeout",
        Custom(|s, o| {
            s.asgi_blocked_loop_timeout = Some(o.fine_seconds()?);
            Ok(())
        }),
    ),
    option(
        "switch-interval",
        Custom(|s, o| match o.value.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => {
                s.switch_interval = Some(v);
                Ok(())
            }
            _ => Err(o.err("expected a positive number of seconds, like 0.005")),
        }),
    ),
    // mod_wsgi.server_metrics() in this group's daemons: Apache's scoreboard.
    option(
        "server-metrics",
        Custom(|s, o| match parse_on_off(o.value) {
            Some(on) => {
                s.server_metrics = on;
                Ok(())
            }
            None => Err(o.err("expected On or Off")),
        }),
    ),
    // Beyond mod_wsgi: memory-based recycling and process environment.
    option(
        "maximum-rss",
        Custom(|s, o| {
            let mb = o
                .int(0, 1 << 30)
                .map_err(|_| o.err("expected a number of megabytes (0 = no limit)"))?;
            s.maximum_rss = (mb != 0).then_some(mb as u64 * 1024 * 1024);
            Ok(())
        }),
    ),
    option("env", Custom(env)),
    option("env-file", AbsolutePath(|s| &mut s.env_file)),
];

/// The row of option `key` (exact, case-sensitive, as mod_wsgi).
pub fn daemon_option(key: &str) -> Option<&'static DaemonOption> {
    DAEMON_OPTIONS.iter().find(|o| o.name == key)
}

/// `supplementary-groups=a,b,#7`; empty: only the primary group, no initgroups (mod_wsgi's
/// list is then empty).
fn supplementary_groups(s: &mut DaemonGroupSpec, o: &Opt<'_>) -> Result<(), ConfigError> {
    if o.value.is_empty() {
        s.supplementary_groups = Some(Vec::new());
        return Ok(());
    }
    let mut names = Vec::new();
    for item in o.value.split(',').filter(|s| !s.is_empty()) {
        let sub = Opt {
            word: o.word,
            value: item,
        };
        names.push(sub.principal()?);
    }
    if names.is_empty() {
        return Err(o.err("expected a comma-separated list of group names"));
    }
    s.supplementary_groups = Some(names);
    Ok(())
}

fn umask(s: &mut DaemonGroupSpec, o: &Opt<'_>) -> Result<(), ConfigError> {
    let valid = o.value.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(o.value, 8) {
        Ok(mask) if valid && mask <= 0o7777 => {
            s.umask = Some(mask);
            Ok(())
        }
        _ => Err(o.err("expected an octal umask like 0022")),
    }
}

/// `env=NAME=VALUE`, repeatable: accumulates in order.
fn env(s: &mut DaemonGroupSpec, o: &Opt<'_>) -> Result<(), ConfigError> {
    let (name, value) = o
        .value
        .split_once('=')
        .filter(|(n, _)| is_env_name(n))
        .ok_or_else(|| o.err("expected env=NAME=VALUE with NAME of [A-Za-z0-9_]"))?;
    s.env.push((name.to_owned(), value.to_owned()));
    Ok(())
}

/// An environment variable name as shells accept it: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A timeout for a log line, as the options write it: `60`, `0.5`, `0.00025`.
pub fn seconds_text(d: Duration) -> String {
    if d.subsec_micros() == 0 {
        d.as_secs().to_string()
    } else {
        let text = format!("{}.{:06}", d.as_secs(), d.subsec_micros());
        text.trim_end_matches('0').to_string()
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A decimal integer with an optional sign; `None` if malformed or beyond i64.
fn parse_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !is_digits(digits) {
        return None;
    }
    text.parse().ok()
}

/// `On`/`Off`, case-insensitive.
pub(crate) fn parse_on_off(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("on") {
        Some(true)
    } else if text.eq_ignore_ascii_case("off") {
        Some(false)
    } else {
        None
    }
}

/// Splits a `:`-separated path list, dropping empty entries.
pub(crate) fn split_path_list(text: &str) -> Vec<String> {
    text.split(':')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest known option to `key`, if it is a likely typo.
fn suggest(key: &str) -> Option<&'static str> {
    DAEMON_OPTIONS
        .iter()
        .map(|known| {
            (
                edit_distance(&key.to_ascii_lowercase(), known.name),
                known.name,
            )
        })
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

impl DaemonGroupSpec {
    /// A group with every option at mod_wsgi's default.
    pub fn new(name: impl Into<String>) -> Self {
        DaemonGroupSpec {
            name: name.into(),
            defined_at: String::new(),
            virtual_host: None,
            processes: 1,
            processes_given: false,
            threads: 15,
            user: None,
            group: None,
            supplementary_groups: None,
            umask: None,
            home: None,
            python_home: None,
            python_path: Vec::new(),
            python_eggs: None,
            lang: None,
            locale: None,
            display_name: None,
            socket_user: None,
            script_user: None,
            script_group: None,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            connect_timeout: Duration::from_secs(15),
            socket_timeout: None,
            queue_timeout: None,
            request_timeout: None,
            interrupt_timeout: None,
            deadlock_timeout: Some(Duration::from_secs(300)),
            inactivity_timeout: None,
            startup_timeout: None,
            graceful_timeout: Some(Duration::from_secs(15)),
            eviction_timeout: None,
            restart_interval: None,
            shutdown_timeout: Some(Duration::from_secs(5)),
            maximum_requests: None,
            cpu_time_limit: None,
            cpu_priority: 0,
            memory_limit: None,
            virtual_memory_limit: None,
            stack_size: None,
            send_buffer_size: None,
            receive_buffer_size: None,
            header_buffer_size: DEFAULT_HEADER_BUFFER_SIZE,
            response_buffer_size: DEFAULT_RESPONSE_BUFFER_SIZE,
            response_socket_timeout: None,
            response_flush_delay: Duration::from_millis(5),
            websocket_max_message_size: DEFAULT_WEBSOCKET_MAX_MESSAGE_SIZE,
            websocket_idle_timeout: None,
            asgi_blocked_loop_timeout: None,
            switch_interval: None,
            server_metrics: false,
            maximum_rss: None,
            env: Vec::new(),
            env_file: None,
        }
    }

    /// Parses the words of a WSGIDaemonProcess line: the group name, then
    /// `key=value` options. A repeated option: the later one wins (`env=` accumulates).
    pub fn parse(words: &[String]) -> Result<Self, ConfigError> {
        let Some((name, options)) = words.split_first() else {
            return Err(ConfigError::new(
                DIRECTIVE,
                "expected a process group name followed by option=value pairs",
            ));
        };
        validate_name(name)?;
        let mut spec = DaemonGroupSpec::new(name.clone());
        let mut script_user_word: Option<&str> = None;
        let mut script_group_word: Option<&str> = None;
        for word in options {
            let Some((key, value)) = word.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                return Err(ConfigError::at(
                    DIRECTIVE,
                    "argument",
                    word,
                    "expected an option of the form name=value",
                ));
            };
            match key {
                "script-user" => script_user_word = Some(word),
                "script-group" => script_group_word = Some(word),
                _ => {}
            }
            spec.apply_option(key, Opt { word, value })?;
        }
        if let (Some(_), Some(group_word)) = (script_user_word, script_group_word) {
            return Err(ConfigError::at(
                DIRECTIVE,
                "option",
                group_word,
                "only one of script-user and script-group may be given",
            ));
        }
        Ok(spec)
    }

    fn apply_option(&mut self, key: &str, o: Opt<'_>) -> Result<(), ConfigError> {
        let Some(option) = daemon_option(key) else {
            let hint = match suggest(key) {
                Some(known) => format!("did you mean '{known}'?"),
                None => "not a WSGIDaemonProcess option".to_owned(),
            };
            return Err(ConfigError::at(DIRECTIVE, "unknown option", o.word, hint));
        };
        let refused = matches!(option.value, Refused(_));
        if o.value.is_empty() && !option.empty_ok && !refused {
            return Err(o.err("expected a value after '='"));
        }
        match option.value {
            Refused(why) => {
                return Err(o.err(format!("{key}= is not supported by mod_rwsgi yet ({why})")));
            }
            Text(field) => *field(self) = Some(o.string()),
            Principal(field) => *field(self) = Some(o.principal()?),
            AbsolutePath(field) => *field(self) = Some(o.absolute_path()?),
            Timeout(field) => *field(self) = o.timeout()?,
            FineTimeout(field) => {
                let d = o.fine_seconds()?;
                *field(self) = (!d.is_zero()).then_some(d);
            }
            ByteLimit(field) => {
                let bytes = o.int(0, i64::MAX)? as u64;
                *field(self) = (bytes != 0).then_some(bytes);
            }
            SocketBuffer(field) => {
                let n = o.buffer_size(512, "system default")?;
                *field(self) = (n != 0).then_some(n);
            }
            Custom(apply) => apply(self, &o)?,
        }
        Ok(())
    }

    /// The process title to set, if any: `%{GROUP}` becomes `(wsgi:NAME)`.
    pub fn display_name_for(&self) -> Option<String> {
        self.display_name.as_ref().map(|d| {
            if d == "%{GROUP}" {
                format!("(wsgi:{})", self.name)
            } else {
                d.clone()
            }
        })
    }

    /// The drain window for SIGUSR1: `eviction-timeout`, else `graceful-timeout`.
    pub fn effective_eviction_timeout(&self) -> Option<Duration> {
        self.eviction_timeout.or(self.graceful_timeout)
    }

    /// The client-socket timeout while relaying the body:
    /// `response-socket-timeout`, else `socket-timeout`; `None` = Apache's `Timeout`.
    pub fn effective_response_socket_timeout(&self) -> Option<Duration> {
        self.response_socket_timeout.or(self.socket_timeout)
    }

    /// `wsgi.multiprocess`: true when `processes=` was given.
    pub fn multiprocess(&self) -> bool {
        self.processes_given
    }

    /// `wsgi.multithread`: true unless exactly one thread.
    pub fn multithread(&self) -> bool {
        self.threads != 1
    }

    /// Resolves every user and group option through `host`. Errors name the
    /// option and value: an unknown user or group, a `#uid` without a passwd
    /// entry, or a `user=` that resolves to uid 0.
    pub fn resolve_ids(&self, host: &dyn Host) -> Result<ResolvedIds, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut ids = ResolvedIds::default();
        let user = |key: &str, value: &Option<String>, errors: &mut Vec<ConfigError>| {
            let value = value.as_deref()?;
            match resolve_user(host, value) {
                Ok(uid) => Some(uid),
                Err(message) => {
                    errors.push(self.identity_error(key, value, &message));
                    None
                }
            }
        };
        ids.uid = user("user", &self.user, &mut errors);
        if ids.uid == Some(0) {
            let value = self.user.as_deref().unwrap_or_default();
            errors.push(self.identity_error(
                "user",
                value,
                "daemon processes must not run as root (uid 0)",
            ));
        }
        ids.socket_uid = user("socket-user", &self.socket_user, &mut errors);
        ids.script_uid = user("script-user", &self.script_user, &mut errors);

        let group = |key: &str, value: &str, errors: &mut Vec<ConfigError>| match resolve_group(
            host, value,
        ) {
            Some(gid) => Some(gid),
            None => {
                errors.push(self.identity_error(key, value, "no such group"));
                None
            }
        };
        ids.gid = self
            .group
            .as_deref()
            .and_then(|g| group("group", g, &mut errors));
        ids.script_gid = self
            .script_group
            .as_deref()
            .and_then(|g| group("script-group", g, &mut errors));
        if let Some(names) = &self.supplementary_groups {
            let gids: Vec<u32> = names
                .iter()
                .filter_map(|g| group("supplementary-groups", g, &mut errors))
                .collect();
            ids.supplementary_gids = Some(gids);
        }
        if errors.is_empty() {
            Ok(ids)
        } else {
            Err(errors)
        }
    }

    fn identity_error(&self, key: &str, value: &str, message: &str) -> ConfigError {
        let place = if self.defined_at.is_empty() {
            String::new()
        } else {
            format!(" defined at {}", self.defined_at)
        };
        ConfigError::at(
            DIRECTIVE,
            "option",
            format!("{key}={value}"),
            format!("{message} (process group '{}'{place})", self.name),
        )
    }
}

fn resolve_user(host: &dyn Host, value: &str) -> Result<u32, String> {
    match value.strip_prefix('#') {
        Some(id) => {
            let uid: u32 = id
                .parse()
                .map_err(|_| "expected a name or #numeric-id".to_string())?;
            if uid != 0 && host.primary_gid_of_uid(uid).is_none() {
                return Err(format!("no user with uid {uid}"));
            }
            Ok(uid)
        }
        None => host.uid_of(value).ok_or_else(|| "no such user".to_string()),
    }
}

fn resolve_group(host: &dyn Host, value: &str) -> Option<u32> {
    match value.strip_prefix('#') {
        Some(id) => id.parse().ok(),
        None => host.gid_of(value),
    }
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    let err = |message: &str| ConfigError::at(DIRECTIVE, "process group name", name, message);
    if name.is_empty() {
        return Err(err("must not be empty"));
    }
    if name.contains('=') {
        return Err(err(
            "expected the process group name first, before any option=value",
        ));
    }
    if name.contains('/') || name.chars().any(char::is_whitespace) {
        return Err(err("must not contain '/' or whitespace"));
    }
    if name.contains("%{") {
        return Err(err("must be a plain name, not a %{...} substitution"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::tokenizer::tokenize;

    fn parse_line(raw: &str) -> Result<DaemonGroupSpec, ConfigError> {
        DaemonGroupSpec::parse(&tokenize(DIRECTIVE, raw)?)
    }

    fn ok(raw: &str) -> DaemonGroupSpec {
        parse_line(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
    }

    fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    fn supported_option_names() -> impl Iterator<Item = &'static str> {
        DAEMON_OPTIONS
            .iter()
            .filter(|o| !matches!(o.value, Refused(_)))
            .map(|o| o.name)
    }

    #[test]
    fn option_table_is_unique_and_as_documented() {
        for (i, o) in DAEMON_OPTIONS.iter().enumerate() {
            assert!(
                DAEMON_OPTIONS[..i].iter().all(|p| p.name != o.name),
                "duplicate {}",
                o.name
            );
            assert_eq!(daemon_option(o.name).map(|p| p.name), Some(o.name));
        }
        assert_eq!(DAEMON_OPTIONS.len(), 50);
        let empty_ok: Vec<&str> = DAEMON_OPTIONS
            .iter()
            .filter(|o| o.empty_ok)
            .map(|o| o.name)
            .collect();
        assert_eq!(
            empty_ok,
            [
                "supplementary-groups",
                "python-home",
                "python-path",
                "python-eggs",
                "lang",
                "locale",
                "display-name"
            ]
        );
        let refused: Vec<&str> = DAEMON_OPTIONS
            .iter()
            .filter(|o| matches!(o.value, Refused(_)))
            .map(|o| o.name)
            .collect();
        assert_eq!(refused, ["chroot"]);
        assert!(daemon_option("Threads").is_none());
    }

    #[test]
    fn defaults_match_mod_wsgi() {
        let d = ok("g");
        assert_eq!(d, DaemonGroupSpec::new("g"));
        assert_eq!(d.name, "g");
        assert_eq!(d.processes, 1);
        assert!(!d.processes_given);
        assert!(!d.multiprocess());
        assert_eq!(d.threads, 15);
        assert!(d.multithread());
        assert_eq!(d.user, None);
        assert_eq!(d.group, None);
        assert_eq!(d.supplementary_groups, None);
        assert_eq!(d.umask, None);
        assert_eq!(d.home, None);
        assert_eq!(d.python_home, None);
        assert!(d.python_path.is_empty());
        assert_eq!(d.display_name, None);
        assert_eq!(d.display_name_for(), None);
        assert_eq!(d.listen_backlog, 100);
        assert_eq!(d.connect_timeout, Duration::from_secs(15));
        assert_eq!(d.socket_timeout, None);
        assert_eq!(d.queue_timeout, None);
        assert_eq!(d.request_timeout, None);
        assert_eq!(d.interrupt_timeout, None);
        assert_eq!(d.deadlock_timeout, secs(300));
        assert_eq!(d.inactivity_timeout, None);
        assert_eq!(d.startup_timeout, None);
        assert_eq!(d.graceful_timeout, secs(15));
        assert_eq!(d.eviction_timeout, None);
        assert_eq!(d.effective_eviction_timeout(), secs(15));
        assert_eq!(d.restart_interval, None);
        assert_eq!(d.shutdown_timeout, secs(5));
        assert_eq!(d.maximum_requests, None);
        assert_eq!(d.cpu_time_limit, None);
        assert_eq!(d.cpu_priority, 0);
        assert_eq!(d.memory_limit, None);
        assert_eq!(d.virtual_memory_limit, None);
        assert_eq!(d.stack_size, None);
        assert_eq!(d.send_buffer_size, None);
        assert_eq!(d.receive_buffer_size, None);
        assert_eq!(d.header_buffer_size, 32768);
        assert_eq!(d.response_buffer_size, 8 * 1024 * 1024);
        assert_eq!(d.response_socket_timeout, None);
        assert_eq!(d.effective_response_socket_timeout(), None);
        assert_eq!(d.response_flush_delay, Duration::from_millis(5));
        assert_eq!(d.switch_interval, None);
        assert!(!d.server_metrics);
    }

    #[test]
    fn guide_long_form() {
        let d = ok(
            "webware user=www-data group=www-data threads=15 python-home=/srv/venv \
                    display-name='%{GROUP}' lang='de_DE.UTF-8' locale='de_DE.UTF-8' \
                    queue-timeout=45 socket-timeout=60 connect-timeout=15 request-timeout=60 \
                    inactivity-timeout=0 startup-timeout=15 deadlock-timeout=60 \
                    graceful-timeout=15 eviction-timeout=0 restart-interval=0 \
                    shutdown-timeout=5 maximum-requests=0",
        );
        assert_eq!(d.name, "webware");
        assert_eq!(d.user.as_deref(), Some("www-data"));
        assert_eq!(d.group.as_deref(), Some("www-data"));
        assert_eq!(d.threads, 15);
        assert_eq!(d.processes, 1);
        assert!(!d.processes_given);
        assert_eq!(d.python_home.as_deref(), Some("/srv/venv"));
        assert_eq!(d.display_name.as_deref(), Some("%{GROUP}"));
        assert_eq!(d.display_name_for().as_deref(), Some("(wsgi:webware)"));
        assert_eq!(d.lang.as_deref(), Some("de_DE.UTF-8"));
        assert_eq!(d.locale.as_deref(), Some("de_DE.UTF-8"));
        assert_eq!(d.queue_timeout, secs(45));
        assert_eq!(d.socket_timeout, secs(60));
        assert_eq!(d.effective_response_socket_timeout(), secs(60));
        assert_eq!(d.connect_timeout, Duration::from_secs(15));
        assert_eq!(d.request_timeout, secs(60));
        assert_eq!(d.inactivity_timeout, None);
        assert_eq!(d.startup_timeout, secs(15));
        assert_eq!(d.deadlock_timeout, secs(60));
        assert_eq!(d.graceful_timeout, secs(15));
        assert_eq!(d.eviction_timeout, None);
        assert_eq!(d.effective_eviction_timeout(), secs(15));
        assert_eq!(d.restart_interval, None);
        assert_eq!(d.shutdown_timeout, secs(5));
        assert_eq!(d.maximum_requests, None);
    }

    #[test]
    fn guide_short_form() {
        let d = ok("webware threads=20 python-home=path-to-virtual-env");
        assert_eq!(d.threads, 20);
        assert_eq!(d.python_home.as_deref(), Some("path-to-virtual-env"));
    }

    /// (option word, check on the parsed spec)
    type Check = fn(&DaemonGroupSpec) -> bool;

    fn valid_cases() -> Vec<(&'static str, Check)> {
        vec![
            ("processes=4", |d| d.processes == 4 && d.processes_given),
            ("processes=1", |d| {
                d.processes == 1 && d.processes_given && d.multiprocess()
            }),
            ("threads=0", |d| d.threads == 0),
            ("threads=1", |d| d.threads == 1 && !d.multithread()),
            ("user=www-data", |d| d.user.as_deref() == Some("www-data")),
            ("user=#33", |d| d.user.as_deref() == Some("#33")),
            ("group=#33", |d| d.group.as_deref() == Some("#33")),
            ("supplementary-groups=a,b,#7", |d| {
                d.supplementary_groups == Some(vec!["a".into(), "b".into(), "#7".into()])
            }),
            ("umask=0007", |d| d.umask == Some(0o007)),
            ("umask=22", |d| d.umask == Some(0o22)),
            ("home=/srv/app", |d| d.home.as_deref() == Some("/srv/app")),
            ("python-home=/srv/venv", |d| {
                d.python_home.as_deref() == Some("/srv/venv")
            }),
            ("python-path=/a:/b::/c", |d| {
                d.python_path == ["/a", "/b", "/c"]
            }),
            ("lang=C.UTF-8", |d| d.lang.as_deref() == Some("C.UTF-8")),
            ("locale=C.UTF-8", |d| d.locale.as_deref() == Some("C.UTF-8")),
            ("display-name=myapp", |d| {
                d.display_name_for().as_deref() == Some("myapp")
            }),
            ("socket-user=#48", |d| {
                d.socket_user.as_deref() == Some("#48")
            }),
            ("script-user=alice", |d| {
                d.script_user.as_deref() == Some("alice")
            }),
            ("script-group=staff", |d| {
                d.script_group.as_deref() == Some("staff")
            }),
            ("listen-backlog=0", |d| d.listen_backlog == 0),
            ("listen-backlog=512", |d| d.listen_backlog == 512),
            ("connect-timeout=0", |d| d.connect_timeout.is_zero()),
            ("socket-timeout=30", |d| d.socket_timeout == secs(30)),
            ("queue-timeout=45", |d| d.queue_timeout == secs(45)),
            ("request-timeout=60", |d| d.request_timeout == secs(60)),
            ("interrupt-timeout=3", |d| d.interrupt_timeout == secs(3)),
            ("deadlock-timeout=0", |d| d.deadlock_timeout.is_none()),
            ("inactivity-timeout=600", |d| {
                d.inactivity_timeout == secs(600)
            }),
            ("startup-timeout=15", |d| d.startup_timeout == secs(15)),
            ("graceful-timeout=0", |d| {
                d.graceful_timeout.is_none() && d.effective_eviction_timeout().is_none()
            }),
            ("eviction-timeout=7", |d| {
                d.effective_eviction_timeout() == secs(7)
            }),
            ("restart-interval=3600", |d| {
                d.restart_interval == secs(3600)
            }),
            ("shutdown-timeout=0", |d| d.shutdown_timeout.is_none()),
            ("maximum-requests=1000", |d| {
                d.maximum_requests == Some(1000)
            }),
            ("cpu-time-limit=120", |d| d.cpu_time_limit == secs(120)),
            ("cpu-priority=-20", |d| d.cpu_priority == -20),
            ("cpu-priority=+5", |d| d.cpu_priority == 5),
            ("memory-limit=1073741824", |d| {
                d.memory_limit == Some(1 << 30)
            }),
            ("virtual-memory-limit=8589934592", |d| {
                d.virtual_memory_limit == Some(1 << 33)
            }),
            ("stack-size=524288", |d| d.stack_size == Some(524288)),
            ("send-buffer-size=0", |d| d.send_buffer_size.is_none()),
            ("send-buffer-size=512", |d| d.send_buffer_size == Some(512)),
            ("receive-buffer-size=65536", |d| {
                d.receive_buffer_size == Some(65536)
            }),
            ("header-buffer-size=0", |d| d.header_buffer_size == 32768),
            ("header-buffer-size=8192", |d| d.header_buffer_size == 8192),
            ("response-buffer-size=65536", |d| {
                d.response_buffer_size == 65536
            }),
            ("response-socket-timeout=9", |d| {
                d.effective_response_socket_timeout() == secs(9)
            }),
            ("websocket-max-message-size=1", |d| {
                d.websocket_max_message_size == 1
            }),
            ("websocket-max-message-size=16777216", |d| {
                d.websocket_max_message_size == 16 << 20
            }),
            ("asgi-blocked-loop-timeout=0.5", |d| {
                d.asgi_blocked_loop_timeout == Some(Duration::from_millis(500))
            }),
            ("asgi-blocked-loop-timeout=0", |d| {
                d.asgi_blocked_loop_timeout == Some(Duration::ZERO)
            }),
            ("websocket-idle-timeout=2.5", |d| {
                d.websocket_idle_timeout == Some(Duration::from_millis(2500))
            }),
            ("response-flush-delay=0", |d| {
                d.response_flush_delay.is_zero()
            }),
            ("response-flush-delay=20", |d| {
                d.response_flush_delay == Duration::from_millis(20)
            }),
            ("python-eggs=/tmp/eggs", |d| {
                d.python_eggs.as_deref() == Some("/tmp/eggs")
            }),
            ("server-metrics=On", |d| d.server_metrics),
            ("server-metrics=off", |d| !d.server_metrics),
            ("switch-interval=0.005", |d| {
                d.switch_interval == Some(0.005)
            }),
            ("maximum-rss=100", |d| d.maximum_rss == Some(100 << 20)),
            ("maximum-rss=0", |d| d.maximum_rss.is_none()),
            ("env=A_1=x=y", |d| d.env == [("A_1".into(), "x=y".into())]),
            ("env=EMPTY=", |d| d.env == [("EMPTY".into(), String::new())]),
            ("env-file=/srv/app/.env", |d| {
                d.env_file.as_deref() == Some("/srv/app/.env")
            }),
        ]
    }

    #[test]
    fn env_accumulates_in_order_and_chroot_is_refused_by_name() {
        let d = ok("g env=A=1 env=B=2 env=A=3");
        assert_eq!(
            d.env,
            [("A", "1"), ("B", "2"), ("A", "3")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let err = parse_line("g chroot=/jail").unwrap_err().to_string();
        assert!(err.contains("chroot=/jail"), "{err}");
        assert!(err.contains("is not supported by mod_rwsgi yet"), "{err}");
        assert!(!ok("g server-metrics=Off").server_metrics);
    }

    /// The socket's timeouts keep fractions of a second (to the microsecond); 0 still
    /// means "not set".
    #[test]
    fn socket_timeouts_take_decimal_seconds() {
        let ms = Duration::from_millis;
        assert_eq!(ok("g socket-timeout=0.5").socket_timeout, Some(ms(500)));
        assert_eq!(ok("g socket-timeout=2").socket_timeout, Some(ms(2000)));
        assert_eq!(ok("g socket-timeout=0.0").socket_timeout, None);
        assert_eq!(
            ok("g socket-timeout=0.000001").socket_timeout,
            Some(Duration::from_micros(1))
        );
        assert_eq!(ok("g connect-timeout=0.25").connect_timeout, ms(250));
        assert_eq!(ok("g queue-timeout=1.5").queue_timeout, Some(ms(1500)));
        assert_eq!(
            ok("g response-socket-timeout=0.1").response_socket_timeout,
            Some(ms(100))
        );
        let e = parse_line("g socket-timeout=0.0000001")
            .unwrap_err()
            .to_string();
        assert!(e.contains("finer than a microsecond"), "{e}");
        assert_eq!(seconds_text(ms(500)), "0.5");
        assert_eq!(seconds_text(ms(60_000)), "60");
        assert_eq!(seconds_text(Duration::from_micros(250)), "0.00025");
    }

    #[test]
    fn every_option_parses_its_valid_form() {
        let cases = valid_cases();
        for (word, check) in &cases {
            let d = ok(&format!("g {word}"));
            assert!(check(&d), "{word} parsed to unexpected values: {d:?}");
        }
        for key in supported_option_names() {
            assert!(
                cases.iter().any(|(w, _)| w.split('=').next() == Some(key)),
                "no valid case for option {key}"
            );
        }
    }

    fn invalid_cases() -> Vec<&'static str> {
        vec![
            "processes=0",
            "processes=abc",
            "processes=10001",
            "threads=-1",
            "threads=abc",
            "threads=10001",
            "user=#abc",
            "user=a,b",
            "group=#-1",
            "supplementary-groups=,",
            "supplementary-groups=#x",
            "umask=0008",
            "umask=-7",
            "umask=077777",
            "home=relative/dir",
            "chroot=jail",
            "chroot=/jail",
            "maximum-rss=-1",
            "maximum-rss=10MB",
            "env=1BAD=x",
            "env=NOVALUE",
            "env==x",
            "env-file=relative/.env",
            "socket-user=#x",
            "script-user=#x",
            "script-group=#x",
            "listen-backlog=-1",
            "connect-timeout=-5",
            "socket-timeout=1.5.0",
            "socket-timeout=0.0000001",
            "socket-timeout=.5",
            "socket-timeout=1.",
            "socket-timeout=-0.5",
            "socket-timeout=0.5s",
            "socket-timeout=1e3",
            "connect-timeout=0,5",
            "queue-timeout=x",
            "request-timeout=-1",
            "interrupt-timeout=9999999999",
            "deadlock-timeout=-1",
            "inactivity-timeout=1s",
            "startup-timeout=-1",
            "graceful-timeout=-1",
            "eviction-timeout=-1",
            "restart-interval=-1",
            "shutdown-timeout=-1",
            "maximum-requests=-1",
            "cpu-time-limit=-1",
            "cpu-priority=21",
            "cpu-priority=-21",
            "memory-limit=-1",
            "virtual-memory-limit=99999999999999999999",
            "stack-size=0",
            "send-buffer-size=511",
            "receive-buffer-size=1",
            "header-buffer-size=8191",
            "response-buffer-size=65535",
            "response-socket-timeout=-1",
            "response-flush-delay=-1",
            "websocket-max-message-size=0",
            "websocket-max-message-size=16777217",
            "websocket-max-message-size=1k",
            "websocket-idle-timeout=-1",
            "asgi-blocked-loop-timeout=-1",
            "asgi-blocked-loop-timeout=1s",
            "switch-interval=0",
            "switch-interval=-1",
            "switch-interval=nan",
            "switch-interval=inf",
            "server-metrics=yes",
        ]
    }

    #[test]
    fn every_option_rejects_a_bad_form_naming_option_and_token() {
        let cases = invalid_cases();
        for word in &cases {
            let e = parse_line(&format!("g {word}")).expect_err(word);
            assert_eq!(e.directive, DIRECTIVE);
            assert_eq!(e.token.as_deref(), Some(*word), "{e}");
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("WSGIDaemonProcess: option '{word}': ")),
                "{shown}"
            );
        }
        // These take any string, the empty one included.
        let free_text = [
            "python-home",
            "python-path",
            "python-eggs",
            "lang",
            "locale",
            "display-name",
        ];
        for key in supported_option_names() {
            assert!(
                free_text.contains(&key) || cases.iter().any(|w| w.split('=').next() == Some(key)),
                "no invalid case for option {key}"
            );
        }
    }

    #[test]
    fn empty_quoted_values_as_mod_wsgi_express_writes_them() {
        let d = ok(
            "g python-home='' python-path='' python-eggs='' lang='' locale='' \
                    supplementary-groups='' display-name=''",
        );
        assert_eq!(d.python_home.as_deref(), Some(""));
        assert!(d.python_path.is_empty());
        assert_eq!(d.python_eggs.as_deref(), Some(""));
        assert_eq!(d.lang.as_deref(), Some(""));
        assert_eq!(d.locale.as_deref(), Some(""));
        assert_eq!(d.supplementary_groups, Some(vec![]));
        assert_eq!(d.display_name, None);
        assert_eq!(d.display_name_for(), None);
        // Empty entries of a path list are skipped, as mod_wsgi does.
        assert_eq!(ok("g python-path=::/a::/b:").python_path, ["/a", "/b"]);
        assert!(ok("g python-path=\"\"").python_path.is_empty());
        // Every other option still needs a value, quoted or not (refused ones say so first).
        for key in DAEMON_OPTIONS
            .iter()
            .filter(|o| !o.empty_ok && !matches!(o.value, Refused(_)))
            .map(|o| o.name)
        {
            for word in [format!("{key}="), format!("{key}=''")] {
                let e = parse_line(&format!("g {word}")).expect_err(&word);
                assert_eq!(
                    e.to_string(),
                    format!("WSGIDaemonProcess: option '{key}=': expected a value after '='"),
                );
            }
        }
    }

    #[test]
    fn specific_error_messages() {
        let cases: &[(&str, &str)] = &[
            (
                "g threads=abc",
                "WSGIDaemonProcess: option 'threads=abc': expected an integer from 0 to 10000",
            ),
            (
                "g processes=0",
                "WSGIDaemonProcess: option 'processes=0': expected an integer from 1 to 10000",
            ),
            (
                "g request-timeout=-1",
                "WSGIDaemonProcess: option 'request-timeout=-1': \
                 expected a non-negative integer number of seconds",
            ),
            (
                "g queue-timeout=99999999999",
                "WSGIDaemonProcess: option 'queue-timeout=99999999999': \
                 expected a non-negative integer number of seconds (at most 2147483647)",
            ),
            (
                "g queue-timeout=999999999999999999999999",
                "WSGIDaemonProcess: option 'queue-timeout=999999999999999999999999': \
                 expected a non-negative integer number of seconds (at most 2147483647)",
            ),
            (
                "g home=",
                "WSGIDaemonProcess: option 'home=': expected a value after '='",
            ),
            (
                "g foo=1",
                "WSGIDaemonProcess: unknown option 'foo=1': not a WSGIDaemonProcess option",
            ),
            (
                "g thread=5",
                "WSGIDaemonProcess: unknown option 'thread=5': did you mean 'threads'?",
            ),
            (
                "g Threads=5",
                "WSGIDaemonProcess: unknown option 'Threads=5': did you mean 'threads'?",
            ),
            (
                "g threads",
                "WSGIDaemonProcess: argument 'threads': expected an option of the form name=value",
            ),
            (
                "g =5",
                "WSGIDaemonProcess: argument '=5': expected an option of the form name=value",
            ),
            (
                "g script-user=a script-group=b",
                "WSGIDaemonProcess: option 'script-group=b': \
                 only one of script-user and script-group may be given",
            ),
            (
                "",
                "WSGIDaemonProcess: expected a process group name followed by option=value pairs",
            ),
            (
                "threads=5",
                "WSGIDaemonProcess: process group name 'threads=5': \
                 expected the process group name first, before any option=value",
            ),
            (
                "a/b",
                "WSGIDaemonProcess: process group name 'a/b': must not contain '/' or whitespace",
            ),
            (
                "'a b'",
                "WSGIDaemonProcess: process group name 'a b': must not contain '/' or whitespace",
            ),
            (
                "'%{GLOBAL}'",
                "WSGIDaemonProcess: process group name '%{GLOBAL}': \
                 must be a plain name, not a %{...} substitution",
            ),
            (
                "''",
                "WSGIDaemonProcess: process group name '': must not be empty",
            ),
        ];
        for (raw, expected) in cases {
            let e = parse_line(raw).expect_err(raw);
            assert_eq!(e.to_string(), *expected, "input {raw:?}");
        }
    }

    #[test]
    fn repeated_option_later_wins() {
        let d = ok("g threads=5 threads=9 processes=3 processes=2");
        assert_eq!(d.threads, 9);
        assert_eq!(d.processes, 2);
        assert!(d.processes_given);
    }

    #[test]
    fn display_name_only_exact_group_token_is_substituted() {
        assert_eq!(
            ok("g display-name=%{GROUP}").display_name_for().as_deref(),
            Some("(wsgi:g)")
        );
        assert_eq!(
            ok("g display-name='x %{GROUP}'")
                .display_name_for()
                .as_deref(),
            Some("x %{GROUP}")
        );
    }

    /// Users root (0), www-data (33) and alice (1000, home /home/alice); groups root,
    /// www-data and staff (50).
    pub(crate) struct FakeHost;

    impl Host for FakeHost {
        fn uid_of(&self, user: &str) -> Option<u32> {
            match user {
                "root" | "toor" => Some(0),
                "www-data" => Some(33),
                "alice" => Some(1000),
                _ => None,
            }
        }
        fn gid_of(&self, group: &str) -> Option<u32> {
            match group {
                "root" => Some(0),
                "www-data" => Some(33),
                "staff" => Some(50),
                _ => None,
            }
        }
        fn primary_gid_of_uid(&self, uid: u32) -> Option<u32> {
            match uid {
                0 => Some(0),
                33 => Some(33),
                1000 => Some(1000),
                _ => None,
            }
        }
        fn home_of_uid(&self, uid: u32) -> Option<String> {
            (uid == 1000).then(|| "/home/alice".into())
        }
        fn user_name_of_uid(&self, uid: u32) -> Option<String> {
            match uid {
                0 => Some("root".into()),
                33 => Some("www-data".into()),
                1000 => Some("alice".into()),
                _ => None,
            }
        }
    }

    #[test]
    fn resolves_ids() {
        let d = ok("g user=www-data group=root supplementary-groups=staff,#7 \
                    socket-user=#1000 script-group=staff");
        let ids = d.resolve_ids(&FakeHost).unwrap();
        assert_eq!(
            ids,
            ResolvedIds {
                uid: Some(33),
                gid: Some(0),
                supplementary_gids: Some(vec![50, 7]),
                socket_uid: Some(1000),
                script_uid: None,
                script_gid: Some(50),
            }
        );
        assert_eq!(
            ok("g").resolve_ids(&FakeHost).unwrap(),
            ResolvedIds::default()
        );
    }

    #[test]
    fn resolve_errors_name_option_and_value() {
        let cases: &[(&str, &[&str])] = &[
            (
                "g user=root",
                &["option 'user=root': daemon processes must not run as root"],
            ),
            (
                "g user=toor",
                &["option 'user=toor': daemon processes must not run as root"],
            ),
            (
                "g user=#0",
                &["option 'user=#0': daemon processes must not run as root"],
            ),
            (
                "g user=bob",
                &["option 'user=bob': no such user (process group 'g')"],
            ),
            (
                "g user=#4242",
                &["option 'user=#4242': no user with uid 4242"],
            ),
            ("g group=nogrp", &["option 'group=nogrp': no such group"]),
            (
                "g supplementary-groups=staff,x,y",
                &[
                    "'supplementary-groups=x': no such group",
                    "'supplementary-groups=y'",
                ],
            ),
            (
                "g socket-user=nobody2",
                &["option 'socket-user=nobody2': no such user"],
            ),
            (
                "g script-user=nobody2",
                &["option 'script-user=nobody2': no such user"],
            ),
            (
                "g script-group=nogrp",
                &["option 'script-group=nogrp': no such group"],
            ),
        ];
        for (raw, expected) in cases {
            let errors = ok(raw).resolve_ids(&FakeHost).expect_err(raw);
            assert_eq!(errors.len(), expected.len(), "{raw}: {errors:?}");
            for (e, want) in errors.iter().zip(expected.iter()) {
                assert!(e.to_string().contains(want), "{raw}: got {e}, want {want}");
                assert_eq!(e.directive, DIRECTIVE);
            }
        }
        let mut d = ok("g user=bob");
        d.defined_at = "/etc/apache2/wsgi.conf:7".into();
        let e = &d.resolve_ids(&FakeHost).unwrap_err()[0];
        assert!(
            e.to_string()
                .ends_with("(process group 'g' defined at /etc/apache2/wsgi.conf:7)")
        );
    }
}
