//! Which daemon host (`rwsgi-daemon`, `daemon::host`) each daemon process group's daemons
//! exec (issue 35). A group on the module's own Python needs none: its daemons run in the
//! daemon manager's fork, which shares the module's pages with Apache (an exec'd host costs
//! each daemon more memory, docs/PERFORMANCE.md). A group whose venv was made with another
//! Python runs on that venv's own `bin/rwsgi-daemon` (a pip install of mod_rwsgi there),
//! checked with its `--probe`; `apache2 -t` fails when it has none, naming what to install.

use std::path::{Path, PathBuf};

use crate::config::GlobalConfig;
use crate::daemon::host_exec::TEST_HOST_VARIABLE;
use crate::python::InterpreterSettings;

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
/// A group runs on the Python of its venv (`python-home=`, else WSGIPythonHome): None (in
/// the fork) when that is the module's Python (or there is no venv), else the venv's own
/// `bin/rwsgi-daemon`. The test hook [`TEST_HOST_VARIABLE`] names a host for the groups on
/// the module's Python (the daemon-mode suites run through the host that way).
pub(crate) fn hosts(global: &GlobalConfig) -> Result<Vec<Option<PathBuf>>, Vec<String>> {
    if global.daemon_groups.is_empty() {
        return Ok(Vec::new());
    }
    let own_version = InterpreterSettings::default().build_version;
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
        let version = venv.and_then(crate::python::venv_version);
        match (venv, version) {
            (Some(venv), Some(version)) if version != own_version => {
                match venv_host(venv, &version) {
                    Ok(host) => hosts.push(Some(host)),
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
            _ => hosts.push(own.clone()),
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
