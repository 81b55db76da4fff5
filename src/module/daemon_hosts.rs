//! Which daemon host (`rwsgi-daemon`, `daemon::host`) each daemon process group's daemons
//! exec (issue 35). A group on the module's own Python needs none: its daemons run in the
//! daemon manager's fork, which shares the module's pages with Apache (an exec'd host costs
//! each daemon more memory, docs/PERFORMANCE.md). A group whose venv was made with another
//! Python runs on that venv's own `bin/rwsgi-daemon` (a pip install of mod_rwsgi there),
//! checked with its `--probe`; `apache2 -t` fails when it has none, naming what to install.
//! A free-threaded build (PEP 703, "3.14t") counts as another Python than the build with the
//! GIL of the same version (`python::python_tag`), both ways.

use std::path::{Path, PathBuf};

use crate::config::GlobalConfig;
use crate::daemon::host_exec::TEST_HOST_VARIABLE;

/// The daemon host's file name.
pub(crate) const HOST_NAME: &str = "rwsgi-daemon";

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What `rwsgi-daemon --probe` says of itself: its plan version and its Python.
#[derive(Debug, PartialEq, Eq)]
struct Probe {
    plan_version: u32,
    python: String,
    /// `free-threaded=yes` (a host of an earlier release, which says nothing, had the GIL).
    free_threaded: bool,
}

impl Probe {
    /// Its Python as [`crate::python::python_tag`] writes it: "3.14" or "3.14t".
    fn tag(&self) -> String {
        crate::python::python_tag(&self.python, self.free_threaded)
    }
}

fn parse_probe(line: &str) -> Option<Probe> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
    };
    Some(Probe {
        plan_version: field("plan-version")?.parse().ok()?,
        python: field("python")?.to_string(),
        free_threaded: field("free-threaded") == Some("yes"),
    })
}

fn probe(host: &Path) -> Result<Probe, String> {
    let out = std::process::Command::new(host)
        .arg("--probe")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run '{} --probe': {e}", host.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_probe(text.trim())
        .filter(|_| out.status.success())
        .ok_or_else(|| format!("'{} --probe' answered {:?}", host.display(), text.trim()))
}

/// Whether a group whose venv was made with the Python tagged `venv` ("3.14t") runs in an
/// exec'd host rather than on the module's own Python tagged `own`: whenever they differ,
/// also when only one of them is free-threaded.
fn needs_host(venv: &str, own: &str) -> bool {
    venv != own
}

/// What the RW0296 error adds when the venv's Python and the module's differ only in being
/// free-threaded ("3.14t" vs "3.14").
fn free_threading_note(venv: &str, own: &str) -> &'static str {
    if venv.trim_end_matches('t') == own.trim_end_matches('t') {
        " (a free-threaded build, \"t\", and the build with the GIL of one version are \
         different Pythons: each needs its own host)"
    } else {
        ""
    }
}

/// Whether the host that said `probe` can run a venv of the Python tagged `want` ("3.14t"):
/// the same version and the same build (free-threaded or with the GIL), and this module's
/// plans; else why not.
fn probe_fits(probe: &Probe, want: &str, host: &Path) -> Result<(), String> {
    if probe.tag() != want {
        return Err(format!(
            "'{}' embeds Python {}",
            host.display(),
            probe.tag()
        ));
    }
    if probe.plan_version != crate::daemon::plan_wire::PLAN_VERSION {
        return Err(format!(
            "'{}' is from another mod_rwsgi release (plan version {}, this module's is {})",
            host.display(),
            probe.plan_version,
            crate::daemon::plan_wire::PLAN_VERSION
        ));
    }
    Ok(())
}

/// The host of a group whose venv `venv` was made with the Python tagged `tag` ("3.14t"), not
/// the module's: `<venv>/bin/rwsgi-daemon` (installed by `pip install mod_rwsgi` into that
/// venv), if it embeds that very Python and reads this module's plans.
fn venv_host(venv: &Path, tag: &str) -> Result<PathBuf, String> {
    let host = venv.join("bin").join(HOST_NAME);
    if !is_executable(&host) {
        return Err(format!("there is no '{}'", host.display()));
    }
    probe_fits(&probe(&host)?, tag, &host)?;
    Ok(host)
}

/// The host of every daemon process group, in order, or every group's error (naming it).
/// A group runs on the Python of its venv (`python-home=`, else WSGIPythonHome): None (in
/// the fork) when that is the module's Python (or there is no venv), else the venv's own
/// `bin/rwsgi-daemon`. The test hook [`TEST_HOST_VARIABLE`] names a host for the groups on
/// the module's Python (the daemon-mode suites run through the host that way).
pub(crate) fn hosts(global: &GlobalConfig) -> Result<Vec<Option<PathBuf>>, Vec<String>> {
    if global.daemon_groups.is_empty() {
        return Ok(Vec::new());
    }
    let own_version = crate::python::build_python_tag();
    let own = std::env::var_os(TEST_HOST_VARIABLE).map(PathBuf::from);
    let mut hosts = Vec::new();
    let mut errors = Vec::new();
    for group in &global.daemon_groups {
        let name = format!(
            "WSGIDaemonProcess {}{}",
            group.name,
            if group.defined_at.is_empty() {
                String::new()
            } else {
                format!(" (defined at {})", group.defined_at)
            }
        );
        let venv = group
            .python_home
            .as_deref()
            .or(global.python_home.as_deref())
            .map(Path::new);
        let version = venv.and_then(crate::python::venv_python_tag);
        match (venv, version) {
            (Some(venv), Some(version)) if needs_host(&version, &own_version) => {
                match venv_host(venv, &version) {
                    Ok(host) => hosts.push(Some(host)),
                    Err(why) => errors.push(format!(
                        "{name}: its python-home '{}' is a virtual environment of Python \
                         {version}, but mod_rwsgi.so embeds Python {own_version}{}, and no \
                         daemon host for Python {version} can run it ({why}). Install one into \
                         that venv with: {}/bin/pip install mod_rwsgi=={}",
                        venv.display(),
                        free_threading_note(&version, &own_version),
                        venv.display(),
                        env!("CARGO_PKG_VERSION")
                    )),
                }
            }
            _ => hosts.push(own.clone()),
        }
    }
    if errors.is_empty() {
        Ok(hosts)
    } else {
        Err(errors)
    }
}

/// Where WSGIFreeThreading On is asked for: `.0` whether on the module's own Python
/// (embedded mode, or a group on the module's Python: `python::free_threading_warning` says
/// whether it takes effect there), `.1` the warnings (RW0320) for groups whose venv's Python
/// (another one, which runs them in its own host) is no free-threaded build.
pub(crate) fn free_threading_asked(global: &GlobalConfig) -> (bool, Vec<String>) {
    let own_tag = crate::python::build_python_tag();
    let mut own = super::daemon_plan::server_python(global).free_threading;
    let mut warnings = Vec::new();
    for group in &global.daemon_groups {
        let on = crate::config::resolve_free_threading(
            &global.interpreter_options,
            &group.name,
            global.free_threading,
        );
        if !on {
            continue;
        }
        let venv = group
            .python_home
            .as_deref()
            .or(global.python_home.as_deref())
            .map(Path::new);
        match venv.and_then(|venv| Some((venv, crate::python::venv_python_tag(venv)?))) {
            Some((venv, tag)) if needs_host(&tag, &own_tag) => {
                if !tag.ends_with('t') {
                    warnings.push(format!(
                        "WSGIFreeThreading On has no effect on daemon \
                         process group '{}': its python-home '{}' is a virtual environment of \
                         Python {tag}, which is not a free-threaded build (PEP 703); make the \
                         venv with a free-threaded Python (python{tag}t -m venv)",
                        group.name,
                        venv.display()
                    ));
                }
            }
            _ => own = true,
        }
    }
    (own, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_line_gives_the_plan_version_and_the_python() {
        assert_eq!(
            parse_probe("rwsgi-daemon 0.1.0 plan-version=1 python=3.12 executable=/v/bin/python"),
            Some(Probe {
                plan_version: 1,
                python: "3.12".into(),
                free_threaded: false,
            })
        );
        assert_eq!(parse_probe("rwsgi-daemon 0.1.0 python=3.12"), None);
        assert_eq!(parse_probe(""), None);
        // This build's own host says what the module embeds.
        assert_eq!(
            parse_probe(&crate::daemon::host::probe_line()).map(|p| p.python),
            Some(crate::python::InterpreterSettings::default().build_version)
        );
    }

    fn probe(python: &str, free_threaded: bool) -> Probe {
        Probe {
            plan_version: crate::daemon::plan_wire::PLAN_VERSION,
            python: python.into(),
            free_threaded,
        }
    }

    #[test]
    fn a_probe_says_whether_its_host_is_free_threaded() {
        let line = "rwsgi-daemon 0.1.0 plan-version=1 python=3.14 free-threaded=yes executable=/x";
        assert_eq!(parse_probe(line).map(|p| p.tag()).as_deref(), Some("3.14t"));
        let line = "rwsgi-daemon 0.1.0 plan-version=1 python=3.14 free-threaded=no executable=/x";
        assert_eq!(parse_probe(line).map(|p| p.tag()).as_deref(), Some("3.14"));
        // A host of an earlier release says nothing: it had the GIL.
        let line = "rwsgi-daemon 0.1.0 plan-version=1 python=3.14 executable=/x";
        assert_eq!(parse_probe(line).map(|p| p.tag()).as_deref(), Some("3.14"));
        // This build's own host says what the module is.
        assert_eq!(
            parse_probe(&crate::daemon::host::probe_line()).map(|p| p.tag()),
            Some(crate::python::build_python_tag())
        );
    }

    #[test]
    fn a_free_threaded_venv_and_a_build_with_the_gil_never_share_a_python() {
        // Module vs venv: a 3.14t venv needs a host beside a 3.14 module, and the reverse.
        assert!(needs_host("3.14t", "3.14"));
        assert!(needs_host("3.14", "3.14t"));
        assert!(needs_host("3.13t", "3.14t"));
        assert!(!needs_host("3.14t", "3.14t"));
        assert!(!needs_host("3.14", "3.14"));
        // Venv vs host: only a host of the very same build fits.
        let host = Path::new("/v/bin/rwsgi-daemon");
        assert_eq!(probe_fits(&probe("3.14", true), "3.14t", host), Ok(()));
        assert_eq!(probe_fits(&probe("3.14", false), "3.14", host), Ok(()));
        let err = probe_fits(&probe("3.14", false), "3.14t", host).unwrap_err();
        assert!(err.contains("embeds Python 3.14"), "{err}");
        let err = probe_fits(&probe("3.14", true), "3.14", host).unwrap_err();
        assert!(err.contains("embeds Python 3.14t"), "{err}");
        let mut old = probe("3.14", true);
        old.plan_version += 1;
        assert!(probe_fits(&old, "3.14t", host).is_err());
        // The error explains a difference of the build alone.
        assert!(free_threading_note("3.14t", "3.14").contains("free-threaded"));
        assert!(free_threading_note("3.14", "3.14t").contains("free-threaded"));
        assert_eq!(free_threading_note("3.13", "3.14"), "");
    }

    #[test]
    fn a_venv_is_tagged_free_threaded_by_its_lib_dir_or_its_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let venv = |name: &str, cfg: &str, lib: &str| {
            let venv = dir.path().join(name);
            std::fs::create_dir_all(venv.join("lib").join(lib).join("site-packages")).unwrap();
            std::fs::write(venv.join("pyvenv.cfg"), cfg).unwrap();
            crate::python::venv_python_tag(&venv)
        };
        let cfg = "home = /usr/bin\nversion = 3.14.0\n";
        assert_eq!(venv("ft", cfg, "python3.14t").as_deref(), Some("3.14t"));
        assert_eq!(venv("gil", cfg, "python3.14").as_deref(), Some("3.14"));
        let cfg = "home = /opt/bin\nversion = 3.14.0\nexecutable = /opt/bin/python3.14t\n";
        assert_eq!(venv("ft-exe", cfg, "other").as_deref(), Some("3.14t"));
        // Another version's "t" directory says nothing of this one.
        let cfg = "home = /usr/bin\nversion = 3.13.1\n";
        assert_eq!(venv("mixed", cfg, "python3.14t").as_deref(), Some("3.13"));
    }
}
