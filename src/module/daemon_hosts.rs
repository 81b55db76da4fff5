//! Which daemon host (`rwsgi-daemon`, `daemon::host`) each daemon process group's daemons
//! exec (issue 35): every daemon starts from a host built for its group's Python. The host
//! for the module's own Python is installed beside mod_rwsgi.so (`make install`, the Debian
//! package) or, for `pip install mod_rwsgi`, beside the venv's `python` in its bin/.
//! `apache2 -t` fails when a group has none.

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

/// The host of every daemon process group, in order, or every group's error (naming it).
pub(crate) fn hosts(global: &GlobalConfig) -> Result<Vec<PathBuf>, Vec<String>> {
    if global.daemon_groups.is_empty() {
        return Ok(Vec::new());
    }
    let own = own_host();
    let mut hosts = Vec::new();
    let mut errors = Vec::new();
    for group in &global.daemon_groups {
        match &own {
            Ok(host) => hosts.push(host.clone()),
            Err(e) => errors.push(format!(
                "WSGIDaemonProcess {}{}: {e}",
                group.name,
                if group.defined_at.is_empty() {
                    String::new()
                } else {
                    format!(" (defined at {})", group.defined_at)
                }
            )),
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
}
