//! Which daemon host (`rwsgi-daemon`, `daemon::host`) each daemon process group's daemons
//! exec (issue 35): every daemon starts from a host built for its group's Python. The host
//! for the module's own Python is installed beside mod_rwsgi.so (`make install`, the Debian
//! package) or, for `pip install mod_rwsgi`, beside the venv's `python` in its bin/. A
//! group whose venv was made with another Python runs on that venv's own
//! `bin/rwsgi-daemon` (a pip install of mod_rwsgi there), checked with its `--probe`.
//! `apache2 -t` fails when a group has none, naming what to install.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::GlobalConfig;
use crate::daemon::host_exec::TEST_HOST_VARIABLE;
use crate::python::InterpreterSettings;

/// The daemon host's file name.
pub(crate) const HOST_NAME: &str = "rwsgi-daemon";

/// The file this code was loaded from (mod_rwsgi.so in Apache).
fn module_path() -> Option<PathBuf> {
    // SAFETY: an all-zero Dl_info is a valid out-structure (null pointers).
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables for an address inside this object.
    let found = unsafe { libc::dladdr(module_path as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr set a NUL-terminated path that lives as long as the object is loaded.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(OsStr::from_bytes(name.to_bytes())))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where the host for the module's own Python may be, in order: beside the module, then
/// beside the Python it was built for (a pip install into a venv).
fn own_host_places(module: Option<&Path>, build_executable: &str) -> Vec<PathBuf> {
    let mut places: Vec<PathBuf> = module
        .map(|m| m.with_file_name(HOST_NAME))
        .into_iter()
        .collect();
    if !build_executable.is_empty() {
        let beside_python = Path::new(build_executable).with_file_name(HOST_NAME);
        if !places.contains(&beside_python) {
            places.push(beside_python);
        }
    }
    places
}

/// The daemon host for the module's own Python, or why there is none.
pub(crate) fn own_host() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(TEST_HOST_VARIABLE) {
        return Ok(path.into());
    }
    let own = InterpreterSettings::default();
    let places = own_host_places(module_path().as_deref(), &own.build_executable);
    places
        .iter()
        .find(|p| is_executable(p))
        .cloned()
        .ok_or_else(|| {
            format!(
                "the daemon host {HOST_NAME} (built with mod_rwsgi for Python {}) is missing: \
                 daemon processes start from it, and it is not at {}. Install it with the \
                 module: 'make install' puts it beside mod_rwsgi.so, the Debian package and \
                 'pip install mod_rwsgi' install it too",
                own.build_version,
                places
                    .iter()
                    .map(|p| format!("'{}'", p.display()))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )
        })
}

/// What `rwsgi-daemon --probe` says of itself: its plan version and its Python.
#[derive(Debug, PartialEq, Eq)]
struct Probe {
    plan_version: u32,
    python: String,
}

fn parse_probe(line: &str) -> Option<Probe> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
    };
    Some(Probe {
        plan_version: field("plan-version")?.parse().ok()?,
        python: field("python")?.to_string(),
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

/// The host of a group whose venv `venv` was made with Python `version`, not the module's:
/// `<venv>/bin/rwsgi-daemon` (installed by `pip install mod_rwsgi` into that venv), if it
/// embeds that very Python and reads this module's plans.
fn venv_host(venv: &Path, version: &str) -> Result<PathBuf, String> {
    let host = venv.join("bin").join(HOST_NAME);
    if !is_executable(&host) {
        return Err(format!("there is no '{}'", host.display()));
    }
    let probe = probe(&host)?;
    if probe.python != version {
        return Err(format!(
            "'{}' embeds Python {}",
            host.display(),
            probe.python
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
    Ok(host)
}

/// The host of every daemon process group, in order, or every group's error (naming it).
/// A group runs on the Python of its venv (`python-home=`, else WSGIPythonHome): the
/// module's own host when that is the module's Python (or there is no venv), else the
/// venv's own `bin/rwsgi-daemon`.
pub(crate) fn hosts(global: &GlobalConfig) -> Result<Vec<PathBuf>, Vec<String>> {
    if global.daemon_groups.is_empty() {
        return Ok(Vec::new());
    }
    let own_version = InterpreterSettings::default().build_version;
    let own = own_host();
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
        let version = venv.and_then(crate::python::venv_version);
        match (venv, version) {
            (Some(venv), Some(version)) if version != own_version => {
                match venv_host(venv, &version) {
                    Ok(host) => hosts.push(host),
                    Err(why) => errors.push(format!(
                        "{name}: its python-home '{}' is a virtual environment of Python \
                         {version}, but mod_rwsgi.so embeds Python {own_version}, and no daemon \
                         host for Python {version} can run it ({why}). Install one into that \
                         venv with: {}/bin/pip install mod_rwsgi=={}",
                        venv.display(),
                        venv.display(),
                        env!("CARGO_PKG_VERSION")
                    )),
                }
            }
            _ => match &own {
                Ok(host) => hosts.push(host.clone()),
                Err(e) => errors.push(format!("{name}: {e}")),
            },
        }
    }
    if errors.is_empty() {
        Ok(hosts)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_host_is_looked_for_beside_the_module_then_beside_its_python() {
        assert_eq!(
            own_host_places(
                Some(Path::new("/usr/lib/apache2/modules/mod_rwsgi.so")),
                "/usr/bin/python3"
            ),
            [
                PathBuf::from("/usr/lib/apache2/modules/rwsgi-daemon"),
                PathBuf::from("/usr/bin/rwsgi-daemon")
            ]
        );
        assert_eq!(
            own_host_places(Some(Path::new("/v/bin/mod.so")), "/v/bin/python"),
            [PathBuf::from("/v/bin/rwsgi-daemon")]
        );
        assert_eq!(own_host_places(None, ""), Vec::<PathBuf>::new());
    }

    #[test]
    fn a_probe_line_gives_the_plan_version_and_the_python() {
        assert_eq!(
            parse_probe("rwsgi-daemon 0.1.0 plan-version=1 python=3.12 executable=/v/bin/python"),
            Some(Probe {
                plan_version: 1,
                python: "3.12".into()
            })
        );
        assert_eq!(parse_probe("rwsgi-daemon 0.1.0 python=3.12"), None);
        assert_eq!(parse_probe(""), None);
        // This build's own host says what the module embeds.
        assert_eq!(
            parse_probe(&crate::daemon::host::probe_line()).map(|p| p.python),
            Some(InterpreterSettings::default().build_version)
        );
    }
}
