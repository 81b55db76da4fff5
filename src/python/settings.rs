//! What a process' Python is told ([`InterpreterSettings`]) and the per-process facts fixed
//! from it when Python starts ([`ProcessInfo`]), which the request path and the `mod_wsgi`
//! module read.

use std::sync::OnceLock;

/// `asgi-blocked-loop-timeout=`'s default, in seconds.
pub const ASGI_BLOCKED_LOOP_TIMEOUT: f64 = 5.0;

/// How to set up CPython in this process.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InterpreterSettings {
    /// Prefix or venv dir (venv = has pyvenv.cfg → program_name=<dir>/bin/python, and
    /// getpath reads pyvenv.cfg).
    pub python_home: Option<String>,
    /// Each added with `site.addsitedir` (so .pth files work), then moved to the front of
    /// sys.path as mod_wsgi does.
    pub python_path: Vec<String>,
    /// Interpreter the module was built against, e.g. /usr/bin/python3: the program name when
    /// `python_home` is None, so the stdlib found matches libpython.
    pub build_executable: String,
    /// "3.11": major.minor the module was built with ("" skips the version checks).
    pub build_version: String,
    /// WSGIRestrictStdout: sys.stdout raises OSError on any use.
    pub restrict_stdout: bool,
    /// Daemon process group ("" when embedded): `mod_wsgi.process_group`, log prefixes.
    pub process_group: String,
    pub processes: u32,
    /// Whether `processes=` was given at all (mod_wsgi: makes wsgi.multiprocess True).
    pub processes_given: bool,
    pub threads: u32,
    pub maximum_requests: u64,
    /// `header-buffer-size=`: the longest response header line (`Name: value`) allowed;
    /// 0 = no limit (embedded mode).
    pub header_buffer_size: usize,
    /// The Apache version (major, minor, patch): `environ['apache.version']`.
    pub apache_version: (u32, u32, u32),
    /// WSGIRestrictStdin: sys.stdin raises OSError on any use.
    pub restrict_stdin: bool,
    /// WSGIRestrictSignal: `signal.signal` from application code is logged and ignored.
    pub restrict_signal: bool,
    /// WSGIPerInterpreterGIL (top level; `<WSGIInterpreterOptions>` sections may override it
    /// per interpreter): sub-interpreters get their own GIL (Python 3.12+).
    pub per_interpreter_gil: bool,
    /// WSGIPythonOptimize: PyConfig.optimization_level (0, 1 = -O, 2 = -OO).
    pub optimize: u8,
    /// WSGIDontWriteBytecode: PyConfig.write_bytecode = 0.
    pub dont_write_bytecode: bool,
    /// WSGIPythonWarnings: PyConfig.warnoptions (`-W` filters), in order.
    pub warnings: Vec<String>,
    /// WSGIPythonHashSeed: PyConfig.hash_seed; `None` = random.
    pub hash_seed: Option<u32>,
    /// PYTHON_EGG_CACHE: WSGIPythonEggs (embedded) or `python-eggs=` (daemon).
    pub python_eggs: Option<String>,
    /// `sys.setswitchinterval` right after start: WSGISwitchInterval (embedded) or
    /// `switch-interval=` (daemon).
    pub switch_interval: Option<f64>,
    /// WSGIDestroyInterpreter: finalise Python when the process stops (atexit handlers run).
    pub destroy_interpreter: bool,
    /// WSGIFreeThreading: on a free-threaded build (PEP 703), run without the GIL; Off keeps
    /// the GIL on. No effect on a build with a GIL (the configtest warns).
    pub free_threading: bool,
    /// `mod_wsgi.server_metrics()` answers: WSGIServerMetrics On (embedded) or
    /// `server-metrics=on` (daemon group).
    pub server_metrics: bool,
    /// `asgi-blocked-loop-timeout=` seconds (daemon group; default 5, 0 = off): an ASGI
    /// event loop thread that runs no callback for this long is logged with its stack.
    pub asgi_blocked_loop_timeout: f64,
    /// WSGICaseSensitivity: Off (a case-insensitive file system) names a script's module
    /// after its lower-cased path, as mod_wsgi does, so two spellings load one module.
    pub case_sensitivity: bool,
    /// The `<WSGIInterpreterOptions>` sections: resolved for each interpreter when it is
    /// set up (`crate::config::resolve`).
    pub interpreter_options: Vec<crate::config::InterpreterOptions>,
}

impl Default for InterpreterSettings {
    fn default() -> Self {
        InterpreterSettings {
            python_home: None,
            python_path: Vec::new(),
            build_executable: option_env!("RWSGI_BUILD_PYTHON_EXECUTABLE")
                .unwrap_or("python3")
                .to_string(),
            build_version: option_env!("RWSGI_BUILD_PYTHON_VERSION")
                .unwrap_or("")
                .to_string(),
            restrict_stdout: false,
            process_group: String::new(),
            processes: 1,
            processes_given: false,
            threads: 15,
            maximum_requests: 0,
            header_buffer_size: 0,
            apache_version: (0, 0, 0),
            restrict_stdin: false,
            restrict_signal: true,
            per_interpreter_gil: false,
            optimize: 0,
            dont_write_bytecode: false,
            warnings: Vec::new(),
            hash_seed: None,
            python_eggs: None,
            switch_interval: None,
            destroy_interpreter: true,
            free_threading: false,
            server_metrics: false,
            asgi_blocked_loop_timeout: ASGI_BLOCKED_LOOP_TIMEOUT,
            case_sensitivity: true,
            interpreter_options: Vec::new(),
        }
    }
}

/// The per-process facts the request path needs (fixed when Python starts).
#[derive(Debug)]
pub(crate) struct ProcessInfo {
    pub process_group: String,
    pub processes: u32,
    pub threads: u32,
    pub multithread: bool,
    pub multiprocess: bool,
    pub run_once: bool,
    pub destroy_interpreter: bool,
    pub log_prefix: String,
    pub header_buffer_size: usize,
    pub apache_version: (u32, u32, u32),
    pub server_metrics: bool,
    /// `asgi-blocked-loop-timeout=` seconds (0 = off).
    pub asgi_blocked_loop_timeout: f64,
    /// WSGICaseSensitivity.
    pub case_sensitivity: bool,
}

impl ProcessInfo {
    fn from_settings(s: &InterpreterSettings) -> ProcessInfo {
        ProcessInfo {
            process_group: s.process_group.clone(),
            processes: s.processes,
            threads: s.threads,
            multithread: s.threads > 1,
            multiprocess: s.processes_given,
            run_once: s.threads == 1 && s.maximum_requests == 1,
            destroy_interpreter: s.destroy_interpreter,
            log_prefix: if s.process_group.is_empty() {
                String::new()
            } else {
                format!("(wsgi:{}) ", s.process_group)
            },
            header_buffer_size: s.header_buffer_size,
            apache_version: s.apache_version,
            server_metrics: s.server_metrics,
            asgi_blocked_loop_timeout: s.asgi_blocked_loop_timeout,
            case_sensitivity: s.case_sensitivity,
        }
    }
}

static PROCESS: OnceLock<ProcessInfo> = OnceLock::new();

/// This process' facts; those of the default settings until [`fix_process_info`].
pub(crate) fn process_info() -> &'static ProcessInfo {
    PROCESS.get_or_init(|| ProcessInfo::from_settings(&InterpreterSettings::default()))
}

/// Fixes this process' facts from the settings Python starts with (the first call wins).
pub(super) fn fix_process_info(settings: &InterpreterSettings) {
    let _ = PROCESS.set(ProcessInfo::from_settings(settings));
}
