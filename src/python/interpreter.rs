//! CPython initialisation after fork (PyConfig through `pyo3::ffi`, python-home and venv
//! handling, version checks) and shutdown.
//!
//! This file and `request.rs` hold the layer's `unsafe`: the PyConfig/lifecycle calls here.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;

use super::settings::{self, InterpreterSettings, process_info};
use super::{format_exception, log, log_object, modwsgi, signal_intercept};
use crate::logging::Level;

/// Whether the Python the module was built against is a free-threaded build (PEP 703,
/// `--disable-gil`), where WSGIFreeThreading decides whether the GIL runs.
pub const FREE_THREADED_BUILD: bool = cfg!(Py_GIL_DISABLED);

/// The configtest warning for `WSGIFreeThreading On` on a Python with a GIL (mod_wsgi 6's
/// WSGI0200); `None` when the directive takes effect.
pub fn free_threading_warning(free_threading: bool) -> Option<String> {
    (free_threading && !FREE_THREADED_BUILD).then(|| {
        format!(
            "WSGIFreeThreading On has no effect: the Python mod_rwsgi was built against ({}, \
             Python {}) is not a free-threaded build (PEP 703); build mod_rwsgi against a \
             Python configured with --disable-gil (python3.13t or later) to use it",
            option_env!("RWSGI_BUILD_PYTHON_EXECUTABLE").unwrap_or("?"),
            option_env!("RWSGI_BUILD_PYTHON_VERSION").unwrap_or("?"),
        )
    })
}

/// The thread that initialised Python: `threading` takes it as its main thread.
static INIT_THREAD: OnceLock<std::thread::ThreadId> = OnceLock::new();

/// The settings Python was initialised with, for the sub-interpreters made later.
static SETTINGS: OnceLock<InterpreterSettings> = OnceLock::new();

/// Initialise CPython in this (already forked) process and release the GIL.
///
/// Errors are full sentences for the error log. A venv whose pyvenv.cfg version differs from
/// `build_version`, or a loaded libpython of another version, is refused with a message naming
/// both versions and both paths.
pub fn initialize(settings: &InterpreterSettings) -> Result<(), String> {
    // SAFETY: Py_IsInitialized may be called at any time, before or after initialisation.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        return Err(
            "Python is already initialised in this process; mod_rwsgi initialises it \
                    exactly once per process, after fork."
                .to_string(),
        );
    }
    // SAFETY: Py_GetVersion returns a pointer to a static NUL-terminated string and may be
    // called before Python is initialised.
    let runtime = unsafe { CStr::from_ptr(ffi::Py_GetVersion()) }
        .to_string_lossy()
        .into_owned();
    check_runtime_version(&runtime, settings)?;

    let mut program_name: Option<String> = None;
    let mut home: Option<String> = None;
    match settings.python_home.as_deref() {
        Some(dir) if !dir.is_empty() => {
            let prefix = dir.split(':').next().unwrap_or(dir);
            if Path::new(prefix).join("pyvenv.cfg").is_file() {
                check_venv(Path::new(prefix), settings)?;
                program_name = Some(format!("{}/bin/python", prefix.trim_end_matches('/')));
            } else {
                check_prefix(prefix, settings)?;
                home = Some(dir.to_string());
            }
        }
        _ => {
            if !settings.build_executable.is_empty() {
                program_name = Some(settings.build_executable.clone());
            }
        }
    }

    init_from_config(program_name.as_deref(), home.as_deref(), settings).map_err(|e| {
        format!(
            "Python initialisation failed: {e}. python-home = {}, program name = {}, running as \
             uid {}. The Python standard library must be readable by this user and belong to \
             Python {} (the version mod_rwsgi was built against, {}).",
            settings
                .python_home
                .as_deref()
                .map_or("(not set)".to_string(), |h| format!("'{h}'")),
            program_name
                .as_deref()
                .map_or("(default)".to_string(), |p| format!("'{p}'")),
            euid(),
            if settings.build_version.is_empty() {
                "?"
            } else {
                &settings.build_version
            },
            settings.build_executable,
        )
    })?;

    settings::fix_process_info(settings);
    let _ = INIT_THREAD.set(std::thread::current().id());
    let _ = SETTINGS.set(settings.clone());
    // The GIL is held by this thread now; pyo3 attaches to it without a new thread state.
    let setup = Python::attach(|py| setup_python(py, settings));

    // SAFETY: Python is initialised and this thread holds the GIL (Py_InitializeFromConfig
    // returned with it held); PyEval_SaveThread releases it so `Python::attach` works from any
    // thread. The returned thread state stays owned by the interpreter; PyGILState_Ensure finds
    // it again on this thread.
    unsafe {
        ffi::PyEval_SaveThread();
    }
    setup
}

/// PyConfig: Python config, no signal handlers, no argv parsing, optional program name/home,
/// and the start-up directives (optimisation, bytecode, warnings, hash seed).
fn init_from_config(
    program_name: Option<&str>,
    home: Option<&str>,
    settings: &InterpreterSettings,
) -> Result<(), String> {
    let program_name = program_name.map(to_cstring).transpose()?;
    let home = home.map(to_cstring).transpose()?;
    let warnings: Vec<Vec<libc::wchar_t>> = settings.warnings.iter().map(|w| wide(w)).collect();
    // SAFETY: PyConfig is plain C data (ints, pointers, PyWideStringList); an all-zero value is
    // a valid starting point that PyConfig_InitPythonConfig fully initialises. The config is
    // only used on this thread, strings are copied by PyConfig_SetBytesString and
    // PyWideStringList_Append (the wide strings are NUL-terminated and outlive the calls), and
    // PyConfig_Clear frees them on every path after initialisation.
    unsafe {
        let mut config: ffi::PyConfig = std::mem::zeroed();
        let cfg: *mut ffi::PyConfig = &mut config;
        ffi::PyConfig_InitPythonConfig(cfg);
        (*cfg).install_signal_handlers = 0;
        (*cfg).parse_argv = 0;
        (*cfg).optimization_level = std::ffi::c_int::from(settings.optimize);
        if settings.dont_write_bytecode {
            (*cfg).write_bytecode = 0;
        }
        // A free-threaded build otherwise lets each extension's Py_mod_gil slot decide; as
        // mod_wsgi 6, the GIL stays on unless WSGIFreeThreading On asks for it to be off.
        #[cfg(Py_GIL_DISABLED)]
        {
            (*cfg).enable_gil = if settings.free_threading { 0 } else { 1 };
        }
        if let Some(seed) = settings.hash_seed {
            (*cfg).use_hash_seed = 1;
            (*cfg).hash_seed = std::ffi::c_ulong::from(seed);
        }
        let mut result = Ok(());
        for filter in &warnings {
            if result.is_ok() {
                // The list copies the string.
                let status =
                    ffi::PyWideStringList_Append(&raw mut (*cfg).warnoptions, filter.as_ptr());
                result = status_result(status);
            }
        }
        if let (Ok(()), Some(name)) = (&result, &program_name) {
            let status =
                ffi::PyConfig_SetBytesString(cfg, &raw mut (*cfg).program_name, name.as_ptr());
            result = status_result(status);
        }
        if let (Ok(()), Some(home)) = (&result, &home) {
            let status = ffi::PyConfig_SetBytesString(cfg, &raw mut (*cfg).home, home.as_ptr());
            result = status_result(status);
        }
        if result.is_ok() {
            result = status_result(ffi::Py_InitializeFromConfig(cfg));
        }
        ffi::PyConfig_Clear(cfg);
        result
    }
}

/// A NUL-terminated wide string (wchar_t is a UTF-32 code point on the platforms Apache and
/// this module support).
fn wide(s: &str) -> Vec<libc::wchar_t> {
    s.chars()
        .map(|c| c as libc::wchar_t)
        .chain(std::iter::once(0))
        .collect()
}

fn to_cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("the path '{}' contains a NUL byte", s.escape_debug()))
}

/// Turns a PyStatus into a Result with its message.
///
/// # Safety
/// `status` must come from a CPython initialisation function (its pointers are NULL or static
/// C strings).
pub(super) unsafe fn status_result(status: ffi::PyStatus) -> Result<(), String> {
    let err_msg = status.err_msg;
    let func = status.func;
    let exitcode = status.exitcode;
    // SAFETY: PyStatus_Exception only inspects the status value.
    if unsafe { ffi::PyStatus_Exception(status) } == 0 {
        return Ok(());
    }
    // SAFETY: per the function contract the pointers are NULL or static NUL-terminated strings.
    let text = |p: *const std::ffi::c_char| unsafe {
        (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
    };
    Err(match (text(err_msg), text(func)) {
        (Some(msg), Some(func)) => format!("{msg} (in {func})"),
        (Some(msg), None) => msg,
        _ => format!("CPython asked to exit with code {exitcode}"),
    })
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// "3.11.2 (main, ...)" → "3.11".
pub(crate) fn major_minor(version: &str) -> Option<String> {
    let mut parts = version.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next().filter(|p| !p.is_empty())?;
    let minor = parts.next().filter(|p| !p.is_empty())?;
    Some(format!("{major}.{minor}"))
}

pub(crate) fn check_runtime_version(
    runtime: &str,
    settings: &InterpreterSettings,
) -> Result<(), String> {
    if settings.build_version.is_empty() {
        return Ok(());
    }
    let loaded = major_minor(runtime).unwrap_or_else(|| runtime.to_string());
    if loaded != settings.build_version {
        return Err(format!(
            "mod_rwsgi was built against Python {} ('{}') but the Python library loaded into \
             this process is version {} ({}). Another module or the dynamic linker supplied a \
             different libpython: rebuild mod_rwsgi for that Python (PYO3_PYTHON) or make sure \
             only libpython{} is loaded.",
            settings.build_version,
            settings.build_executable,
            loaded,
            runtime.lines().next().unwrap_or(runtime).trim(),
            settings.build_version,
        ));
    }
    Ok(())
}

/// Refuses a virtual environment made by another Python version than the module's.
pub(crate) fn check_venv(venv: &Path, settings: &InterpreterSettings) -> Result<(), String> {
    if settings.build_version.is_empty() {
        return Ok(());
    }
    let cfg_path = venv.join("pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
        format!(
            "Cannot read '{}' (python-home is a virtual environment): {e}. It must be readable \
             by the daemon user (uid {}).",
            cfg_path.display(),
            euid()
        )
    })?;
    let mut version = None;
    let mut base_home = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "version" | "version_info" => version = version.or(major_minor(value)),
            "home" => base_home = Some(value.to_string()),
            _ => {}
        }
    }
    // Older virtualenv releases write no version: infer it from lib/pythonX.Y.
    let version = version.or_else(|| venv_lib_version(venv));
    let Some(version) = version else {
        return Ok(());
    };
    let free_threaded = venv_free_threaded(venv, &version);
    if version == settings.build_version && free_threaded != FREE_THREADED_BUILD {
        // Same version, other build: its site-packages (lib/pythonX.Yt or lib/pythonX.Y) and
        // extension modules are not this interpreter's.
        return Err(format!(
            "The Python virtual environment '{}' (python-home/WSGIPythonHome) was created with \
             Python {} (pyvenv.cfg: '{}'), but this daemon embeds Python {}; a free-threaded \
             build and the build with the GIL of one version cannot share a virtual \
             environment. Give the group a daemon host for Python {}: {}/bin/pip install \
             mod_rwsgi=={}",
            venv.display(),
            python_tag(&version, free_threaded),
            cfg_path.display(),
            python_tag(&settings.build_version, FREE_THREADED_BUILD),
            python_tag(&version, free_threaded),
            venv.display(),
            env!("CARGO_PKG_VERSION"),
        ));
    }
    if version != settings.build_version {
        return Err(format!(
            "The Python virtual environment '{}' (python-home/WSGIPythonHome) was created with \
             Python {} (pyvenv.cfg: '{}', base interpreter in '{}'), but mod_rwsgi was built \
             against Python {} ('{}'). A virtual environment only works with the Python version \
             mod_rwsgi was built for: recreate it with '{} -m venv {}', or rebuild mod_rwsgi \
             with PYO3_PYTHON pointing at the Python {} interpreter.",
            venv.display(),
            version,
            cfg_path.display(),
            base_home.as_deref().unwrap_or("?"),
            settings.build_version,
            settings.build_executable,
            settings.build_executable,
            venv.display(),
            version,
        ));
    }
    Ok(())
}

/// The "major.minor" of the Python a virtual environment was made with (its pyvenv.cfg,
/// else its lib/pythonX.Y), or None when `dir` is no venv or says nothing.
pub fn venv_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("pyvenv.cfg")).ok()?;
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| matches!(key.trim(), "version" | "version_info"))
        .find_map(|(_, value)| major_minor(value))
        .or_else(|| venv_lib_version(dir))
}

/// A Python as the daemon hosts tell them apart: "major.minor", with CPython's "t" suffix
/// for a free-threaded build (PEP 703: "3.14t"), whose extension modules and site-packages
/// (`lib/python3.14t`) a build with the GIL of the same version cannot use, nor the reverse.
pub fn python_tag(version: &str, free_threaded: bool) -> String {
    format!("{version}{}", if free_threaded { "t" } else { "" })
}

/// The [`python_tag`] of the Python mod_rwsgi was built against.
pub fn build_python_tag() -> String {
    python_tag(
        &InterpreterSettings::default().build_version,
        FREE_THREADED_BUILD,
    )
}

/// Whether the virtual environment `dir` of Python `version` ("3.14") was made by a
/// free-threaded build. pyvenv.cfg's version does not say; the venv's library directory does:
/// `lib/python3.14t` (sysconfig's `{py_version_short}{abi_thread}`), as does the name of the
/// interpreter that made it (pyvenv.cfg `executable = /usr/bin/python3.14t`).
pub fn venv_free_threaded(dir: &Path, version: &str) -> bool {
    if dir.join("lib").join(format!("python{version}t")).is_dir() {
        return true;
    }
    let Ok(text) = std::fs::read_to_string(dir.join("pyvenv.cfg")) else {
        return false;
    };
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| key.trim() == "executable")
        .any(|(_, value)| {
            Path::new(value.trim())
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name == format!("python{version}t"))
        })
}

/// The [`python_tag`] of the Python virtual environment `dir` was made with ("3.14t"), or
/// None when it is no venv or says nothing.
pub fn venv_python_tag(dir: &Path) -> Option<String> {
    let version = venv_version(dir)?;
    let free_threaded = venv_free_threaded(dir, &version);
    Some(python_tag(&version, free_threaded))
}

fn venv_lib_version(venv: &Path) -> Option<String> {
    let entries = std::fs::read_dir(venv.join("lib")).ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("python"))
                .map(str::to_string)
        })
        .find_map(|v| major_minor(&v))
}

/// A real prefix must exist and hold the stdlib of the build version.
fn check_prefix(prefix: &str, settings: &InterpreterSettings) -> Result<(), String> {
    if let Err(e) = std::fs::read_dir(prefix) {
        return Err(format!(
            "python-home '{prefix}' (WSGIPythonHome) does not exist or is not readable by the \
             daemon user (uid {}): {e}.",
            euid()
        ));
    }
    if settings.build_version.is_empty() {
        return Ok(());
    }
    let stdlib: PathBuf = Path::new(prefix).join(format!("lib/python{}", settings.build_version));
    if let Err(e) = std::fs::metadata(stdlib.join("os.py")) {
        return Err(format!(
            "python-home '{prefix}' (WSGIPythonHome) is not a Python {} installation: '{}' \
             cannot be read ({e}). It must be the prefix of the Python mod_rwsgi was built \
             against ('{}') or a virtual environment created from it.",
            settings.build_version,
            stdlib.join("os.py").display(),
            settings.build_executable,
        ));
    }
    Ok(())
}

/// Everything done in Python right after initialisation, with the GIL held.
fn setup_python(py: Python<'_>, settings: &InterpreterSettings) -> Result<(), String> {
    let result = (|| -> PyResult<()> {
        // `threading` takes the thread that first imports it as its main thread, and at
        // finalisation waits for that thread's state to go. Request threads keep their thread
        // states for life, so it must be this one, which also runs the finalisation.
        py.import("threading")?;
        let sys = py.import("sys")?;
        let options = resolved_options(settings, "");
        setup_sys(py, settings, &options)?;
        // A matching <WSGIInterpreterOptions> section's interval replaces the top-level one.
        let switch_interval = options.switch_interval.or(settings.switch_interval);
        if switch_interval.is_some() && gil_disabled(py) {
            log(
                Level::Warning,
                &format!(
                    "RW0090: {}The switch interval has no effect without a GIL (WSGIFreeThreading On): \
                     sys.setswitchinterval is not called.",
                    super::log_prefix()
                ),
            );
        } else if let Some(seconds) = switch_interval {
            sys.call_method1("setswitchinterval", (seconds,))?;
            log(
                Level::Info,
                &format!(
                    "RW0091: {}Python switch interval set to {seconds} s (sys.setswitchinterval).",
                    super::log_prefix()
                ),
            );
        }
        modwsgi::install(py, process_info(), "")?;
        add_python_path(py, &settings.python_path)?;
        for layer in &options.python_path_layers {
            add_python_path(py, layer)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            let describe = (|| -> PyResult<(String, String, String, &str)> {
                let sys = py.import("sys")?;
                let gil = if !FREE_THREADED_BUILD {
                    ""
                } else if gil_disabled(py) {
                    ", free-threaded: GIL disabled (WSGIFreeThreading On)"
                } else {
                    ", free-threaded build: GIL enabled (WSGIFreeThreading Off)"
                };
                Ok((
                    sys.getattr("version")?
                        .extract::<String>()?
                        .replace('\n', " "),
                    sys.getattr("prefix")?.extract::<String>()?,
                    sys.getattr("base_prefix")?.extract::<String>()?,
                    gil,
                ))
            })();
            if let Ok((version, prefix, base_prefix, gil)) = describe {
                log(
                    Level::Info,
                    &format!(
                        "RW0092: {}Initialised Python {version} (sys.prefix '{prefix}', \
                         sys.base_prefix '{base_prefix}'{gil}).",
                        super::log_prefix()
                    ),
                );
            }
            Ok(())
        }
        Err(e) => Err(format!(
            "Python was initialised but setting it up for WSGI failed:\n{}",
            format_exception(py, &e)
        )),
    }
}

/// The settings of interpreter `app_group` ("" = main): the top-level values with the
/// matching `<WSGIInterpreterOptions>` sections applied.
fn resolved_options(
    settings: &InterpreterSettings,
    app_group: &str,
) -> crate::config::ResolvedOptions {
    crate::config::resolve(
        &settings.interpreter_options,
        &settings.process_group,
        app_group,
        crate::config::BaseOptions {
            restrict_stdin: settings.restrict_stdin,
            restrict_stdout: settings.restrict_stdout,
            restrict_signal: settings.restrict_signal,
            per_interpreter_gil: settings.per_interpreter_gil,
        },
    )
}

/// What every interpreter of the process gets in its `sys` (the main one at initialisation, a
/// sub-interpreter when it is created): argv, the log-backed stderr/stdout, the stdin, stdout
/// and signal restrictions (its resolved `options`), PYTHON_EGG_CACHE, and in a daemon process
/// the account's HOME (and USER, USERNAME, LOGNAME) in `os.environ`.
fn setup_sys(
    py: Python<'_>,
    settings: &InterpreterSettings,
    options: &crate::config::ResolvedOptions,
) -> PyResult<()> {
    let sys = py.import("sys")?;
    sys.setattr("argv", vec!["mod_wsgi"])?;
    sys.setattr("stderr", log_object::new_stream(py, "<wsgi.stderr>", None)?)?;
    if options.restrict_stdout {
        log_object::install_restricted_stdout(sys.as_any())?;
    } else {
        sys.setattr("stdout", log_object::new_stream(py, "<wsgi.stdout>", None)?)?;
    }
    if options.restrict_stdin {
        log_object::install_restricted_stdin(sys.as_any())?;
    }
    if options.restrict_signal {
        signal_intercept::install(py)?;
    }
    if let Some(dir) = &settings.python_eggs {
        py.import("os")?
            .getattr("environ")?
            .set_item("PYTHON_EGG_CACHE", dir)?;
    }
    if !settings.process_group.is_empty() {
        set_account_environ(py)?;
    }
    Ok(())
}

/// In a daemon process, as mod_wsgi: each interpreter's `os.environ` gets HOME, and USER,
/// USERNAME and LOGNAME where set, of the account the process runs as, not those Apache
/// inherited (root's, or the sudo caller's). Not in an Apache child: other modules share its
/// environment.
fn set_account_environ(py: Python<'_>) -> PyResult<()> {
    let uid = nix::unistd::geteuid();
    let Some(user) = py.detach(|| nix::unistd::User::from_uid(uid).ok().flatten()) else {
        return Ok(());
    };
    let environ = py.import("os")?.getattr("environ")?;
    for name in ["USER", "USERNAME", "LOGNAME"] {
        if environ.contains(name)? {
            environ.set_item(name, &user.name)?;
        }
    }
    environ.set_item("HOME", user.dir.as_os_str())?;
    Ok(())
}

/// Whether the sub-interpreter of `app_group` gets its own GIL: WSGIPerInterpreterGIL with the
/// matching `<WSGIInterpreterOptions>` sections applied (configtest refused On before 3.12).
pub(crate) fn own_gil(app_group: &str) -> bool {
    // A free-threaded build makes no sub-interpreters (`subinterp::uses_sub_interpreter`).
    cfg!(Py_3_12)
        && !FREE_THREADED_BUILD
        && SETTINGS
            .get()
            .is_some_and(|settings| resolved_options(settings, app_group).per_interpreter_gil)
}

/// Sets up a freshly created sub-interpreter for application group `app_group` (called with
/// its thread state current; `own_gil`: it was made with its own GIL): the same `sys` set-up
/// as the main interpreter, its own `mod_wsgi` module, and the python-path directories.
pub(crate) fn setup_sub_interpreter(
    py: Python<'_>,
    app_group: &str,
    own_gil: bool,
) -> PyResult<()> {
    let settings = SETTINGS.get().ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err("Python was not initialised by mod_rwsgi")
    })?;
    let options = resolved_options(settings, app_group);
    setup_sys(py, settings, &options)?;
    // CPython 3.11's C accelerator of asyncio (`_asyncio`) caches the running event loop in
    // process-wide statics keyed by the thread state's id, and those ids restart at 1 in each
    // interpreter: a thread of this interpreter would see the loop another interpreter's
    // thread runs ("Cannot run the event loop while another loop is running"). Here asyncio
    // uses its pure-Python implementation (3.12 keeps that cache per interpreter).
    if py.version_info() < (3, 12) {
        py.import("sys")?
            .getattr("modules")?
            .set_item("_asyncio", py.None())?;
    }
    if let Some(seconds) = options.switch_interval {
        sub_interpreter_switch_interval(
            py,
            app_group,
            seconds,
            options.switch_interval_app_scoped,
            own_gil,
        )?;
    }
    modwsgi::install(py, process_info(), app_group)?;
    super::gc_telemetry::install_in_sub_interpreter(py)?;
    add_python_path(py, &settings.python_path)?;
    // The sections' python-path layers, least specific first: the most specific ends first.
    for layer in &options.python_path_layers {
        add_python_path(py, layer)?;
    }
    Ok(())
}

/// A `<WSGIInterpreterOptions>` section's WSGISwitchInterval for a sub-interpreter, as
/// mod_wsgi 6. CPython keeps the interval in the GIL: with its own GIL (`own_gil`,
/// WSGIPerInterpreterGIL On) it is this interpreter's alone and is set; with the shared GIL
/// it is process-wide, so a section that selects the sub-interpreter by `application-group=`
/// (`app_scoped`) is skipped with a warning (it would change every interpreter's), while one
/// selecting by process group only (or nothing) is applied, as for the main interpreter.
fn sub_interpreter_switch_interval(
    py: Python<'_>,
    app_group: &str,
    seconds: f64,
    app_scoped: bool,
    own_gil: bool,
) -> PyResult<()> {
    if gil_disabled(py) {
        return Ok(());
    }
    if app_scoped && !own_gil {
        log(
            Level::Warning,
            &format!(
                "RW0264: {}Not setting the switch interval {seconds} s of the <WSGIInterpreterOptions> section for sub-interpreter '{app_group}': it selects by application-group=, and this interpreter shares the GIL (WSGIPerInterpreterGIL Off), so the switch interval is process-wide.",
                super::log_prefix()
            ),
        );
        return Ok(());
    }
    py.import("sys")?
        .call_method1("setswitchinterval", (seconds,))?;
    log(
        Level::Info,
        &format!(
            "RW0265: {}Python switch interval set to {seconds} s for sub-interpreter '{app_group}' ({}; <WSGIInterpreterOptions>).",
            super::log_prefix(),
            if own_gil {
                "its own GIL's"
            } else {
                "process-wide"
            }
        ),
    );
    Ok(())
}

/// Whether this process runs without a GIL (`sys._is_gil_enabled()`, Python 3.13+).
fn gil_disabled(py: Python<'_>) -> bool {
    py.import("sys")
        .and_then(|sys| sys.getattr("_is_gil_enabled"))
        .and_then(|f| f.call0())
        .and_then(|v| v.extract::<bool>())
        .is_ok_and(|enabled| !enabled)
}

/// `site.addsitedir` for each entry (so .pth files work), then the new sys.path entries move
/// to the front, as mod_wsgi's python-path does.
fn add_python_path(py: Python<'_>, dirs: &[String]) -> PyResult<()> {
    if dirs.is_empty() {
        return Ok(());
    }
    let sys = py.import("sys")?;
    let site = py.import("site")?;
    let before: Vec<Bound<'_, PyAny>> =
        sys.getattr("path")?.try_iter()?.collect::<PyResult<_>>()?;
    for dir in dirs {
        site.call_method1("addsitedir", (dir,))?;
    }
    let path = sys.getattr("path")?;
    let mut front = Vec::new();
    let mut rest = Vec::new();
    for item in path.try_iter()? {
        let item = item?;
        let mut old = false;
        for b in &before {
            if b.eq(&item)? {
                old = true;
                break;
            }
        }
        if old {
            rest.push(item)
        } else {
            front.push(item)
        }
    }
    front.extend(rest);
    sys.setattr("path", pyo3::types::PyList::new(py, front)?)?;
    Ok(())
}

/// Runs the `mod_wsgi.subscribe_shutdown` callbacks (and event subscribers) with the event
/// "process_stopping", logging their exceptions. Called by [`shutdown`]; exposed so tests and
/// embedders can run them without finalising.
pub fn run_shutdown_callbacks(reason: &str) {
    if !python_ready() {
        return;
    }
    Python::attach(|py| modwsgi::publish_process_stopping(py, reason));
}

/// Logs partial lines left in sys.stderr/sys.stdout. A restricted stdout is removed, since
/// CPython's own flush at finalisation would complain about it.
pub(crate) fn flush_streams(py: Python<'_>) {
    if let Ok(sys) = py.import("sys") {
        if let Ok(err) = sys.getattr("stderr") {
            let _ = err.call_method0("flush");
        }
        // Per interpreter: a <WSGIInterpreterOptions> section may restrict one and not another.
        let restricted = sys
            .getattr("stdout")
            .is_ok_and(|out| log_object::is_restricted(&out));
        if restricted {
            let _ = sys.setattr("stdout", py.None());
        } else if let Ok(out) = sys.getattr("stdout") {
            let _ = out.call_method0("flush");
        }
    }
}

pub(crate) fn python_ready() -> bool {
    // SAFETY: Py_IsInitialized may be called at any time.
    unsafe { ffi::Py_IsInitialized() != 0 }
}

/// After the sub-interpreters were ended (`subinterp::end_all`: each one's shutdown callbacks
/// and atexit handlers, then Py_EndInterpreter; `subs_ended` = all of them), runs the main
/// interpreter's `mod_wsgi.subscribe_shutdown` callbacks and atexit handlers and
/// `Py_FinalizeEx`, logging exceptions. Call once, from the process's main thread, when no request is running. With
/// WSGIDestroyInterpreter Off only the shutdown callbacks run (as mod_wsgi documents): no
/// atexit handlers, no finalisation. Python initialised by another thread is not finalised
/// either (the atexit handlers still run). Nothing here has its own time limit: a daemon
/// process is killed by the daemon manager when it has not exited within its
/// shutdown-timeout (graceful-timeout for a graceful stop), callbacks that hang included.
pub(crate) fn shutdown(subs_ended: bool) {
    if !python_ready() {
        return;
    }
    // Plain `Python::attach` here: `end_all` ran first and entered the main interpreter
    // through `subinterp::attach_main`, which bound this thread's PyGILState state back to
    // its main-interpreter state if a request had left it on an own-GIL sub-interpreter.
    run_shutdown_callbacks("shutdown");
    if !process_info().destroy_interpreter {
        Python::attach(flush_streams);
        log(
            Level::Info,
            &format!(
                "RW0093: {}Not finalising Python (WSGIDestroyInterpreter Off): atexit handlers do not \
                 run.",
                super::log_prefix()
            ),
        );
        return;
    }
    Python::attach(|py| {
        let result = (|| -> PyResult<()> {
            py.import("atexit")?.call_method0("_run_exitfuncs")?;
            Ok(())
        })();
        if let Err(e) = result {
            log(
                Level::Error,
                &format!(
                    "RW0094: {}Exception occurred within Python atexit handlers during shutdown.\n{}",
                    super::log_prefix(),
                    format_exception(py, &e)
                ),
            );
        }
        flush_streams(py);
    });
    if !subs_ended {
        // A sub-interpreter still runs a thread (RW0261): Py_FinalizeEx would end it under
        // that thread. The process exits without finalising, as with WSGIDestroyInterpreter
        // Off, after the main interpreter's callbacks and atexit handlers.
        log(
            Level::Info,
            &format!(
                "RW0266: {}Not finalising Python: a sub-interpreter could not be ended (see above); the main interpreter's shutdown callbacks and atexit handlers have run.",
                super::log_prefix()
            ),
        );
        return;
    }
    if INIT_THREAD.get() != Some(&std::thread::current().id()) {
        // Py_FinalizeEx would wait for `threading`'s main thread, the one that initialised
        // Python (an Apache worker thread, for embedded Python started by a request), whose
        // thread state stays registered: it would never return.
        log(
            Level::Info,
            &format!(
                "RW0095: {}Not finalising Python: it was initialised by another thread of this \
                 process (shutdown callbacks and atexit handlers have run).",
                super::log_prefix()
            ),
        );
        return;
    }
    // SAFETY: Python is initialised; PyGILState_Ensure gives this thread the GIL (reusing its
    // thread state if it initialised Python). Py_FinalizeEx then destroys the interpreter; the
    // GIL state is deliberately not released since nothing is left to release it to, and no
    // Python object is touched afterwards (the process exits).
    let rc = unsafe {
        ffi::PyGILState_Ensure();
        ffi::Py_FinalizeEx()
    };
    if rc < 0 {
        log(
            Level::Error,
            &format!(
                "RW0096: {}Python finalisation reported an error (flushing buffered data failed).",
                super::log_prefix()
            ),
        );
    }
}

/// The embedded Python's version ("3.11.2"), as the telemetry stream names it.
pub fn python_version() -> String {
    // SAFETY: Py_GetVersion returns a pointer to a static NUL-terminated string; it may be
    // called without the GIL and before or after initialisation.
    let full = unsafe { std::ffi::CStr::from_ptr(pyo3::ffi::Py_GetVersion()) };
    let full = full.to_string_lossy();
    full.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}
