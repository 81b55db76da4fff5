//! Installing the way Debian users do: `make install-conf` (what `make install` runs after
//! apxs) into a copy of /etc/apache2, then `a2enmod rwsgi`, `apache2ctl -t`, `a2dismod rwsgi`
//! against that copy, with the system's /etc/apache2 and /var/lib/apache2 left untouched.
//! Also: the Python package, Debian package and crate versions agree.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{TempDir, module_path, repo_dir};

/// Every entry under `root`: path -> (kind, mode, size, mtime, symlink target, content).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o}", meta.mode())
            } else {
                let mut hasher = DefaultHasher::new();
                fs::read(&path).unwrap_or_default().hash(&mut hasher);
                format!(
                    "file {:o} {} {} {:x}",
                    meta.mode(),
                    meta.len(),
                    meta.mtime(),
                    hasher.finish()
                )
            };
            out.insert(path, what);
        }
    }
    out
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A copy of /etc/apache2 whose envvars keep run, lock and log directories inside `tmp`,
/// and a copy of a2enmod's state directory (/var/lib/apache2).
struct ConfCopy {
    confdir: PathBuf,
    statedir: PathBuf,
}

impl ConfCopy {
    fn new(tmp: &Path) -> ConfCopy {
        let confdir = tmp.join("apache2");
        let statedir = tmp.join("state");
        for (from, to) in [("/etc/apache2", &confdir), ("/var/lib/apache2", &statedir)] {
            let out = Command::new("cp")
                .arg("-a")
                .arg(from)
                .arg(to)
                .output()
                .unwrap();
            assert!(out.status.success(), "cp -a {from}: {}", text(&out));
        }
        let mut envvars = fs::read_to_string(confdir.join("envvars")).unwrap();
        for (var, sub) in [
            ("APACHE_RUN_DIR", "run"),
            ("APACHE_PID_FILE", "run/apache2.pid"),
            ("APACHE_LOCK_DIR", "lock"),
            ("APACHE_LOG_DIR", "log"),
        ] {
            envvars.push_str(&format!("export {var}={}\n", tmp.join(sub).display()));
        }
        fs::write(confdir.join("envvars"), envvars).unwrap();
        fs::create_dir_all(tmp.join("log")).unwrap();
        ConfCopy { confdir, statedir }
    }

    /// Runs an Apache admin tool against the copy.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("APACHE_CONFDIR", &self.confdir)
            .env("APACHE_STATE_DIRECTORY", &self.statedir)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    }
}

#[test]
fn make_install_conf_then_a2enmod_a2dismod_in_a_copy_of_etc_apache2() {
    let system_conf = snapshot(Path::new("/etc/apache2"));
    let system_state = snapshot(Path::new("/var/lib/apache2"));
    let tmp = TempDir::new("a2enmod");
    let copy = ConfCopy::new(tmp.path());
    let available = copy.confdir.join("mods-available");
    let enabled = copy.confdir.join("mods-enabled");

    // The Makefile's own install recipe, into the copy, the .load pointing at the build.
    let out = Command::new("make")
        .arg("-C")
        .arg(repo_dir())
        .arg("--no-print-directory")
        .arg("install-conf")
        .arg(format!("APACHE_CONFDIR={}", copy.confdir.display()))
        .arg(format!("MODULE_INSTALL_PATH={}", module_path().display()))
        .env_remove("MAKEFLAGS")
        .env_remove("MAKELEVEL")
        .env_remove("MFLAGS")
        .output()
        .unwrap();
    assert!(out.status.success(), "make install-conf: {}", text(&out));
    let load = fs::read_to_string(available.join("rwsgi.load")).unwrap();
    assert!(
        load.lines()
            .any(|l| l == format!("LoadModule rwsgi_module {}", module_path().display())),
        "{load}"
    );
    assert_eq!(
        fs::read(available.join("rwsgi.conf")).unwrap(),
        fs::read(repo_dir().join("apache/rwsgi.conf")).unwrap()
    );

    let out = copy.run("a2enmod", &["rwsgi"]);
    assert!(out.status.success(), "a2enmod rwsgi: {}", text(&out));
    for file in ["rwsgi.load", "rwsgi.conf"] {
        assert_eq!(
            fs::read_link(enabled.join(file)).unwrap(),
            Path::new("../mods-available").join(file),
            "a2enmod linked {file}"
        );
    }
    // (a2query always reads the system's /etc/apache2: the .deb test uses it.)
    let out = copy.run("apache2ctl", &["-t"]);
    assert!(out.status.success(), "apache2ctl -t: {}", text(&out));
    assert!(text(&out).contains("Syntax OK"), "{}", text(&out));
    let out = copy.run("apache2ctl", &["-M"]);
    assert!(
        text(&out).contains("rwsgi_module (shared)"),
        "apache2ctl -M with rwsgi enabled: {}",
        text(&out)
    );

    let out = copy.run("a2dismod", &["rwsgi"]);
    assert!(out.status.success(), "a2dismod rwsgi: {}", text(&out));
    for file in ["rwsgi.load", "rwsgi.conf"] {
        assert!(
            fs::symlink_metadata(enabled.join(file)).is_err(),
            "a2dismod left mods-enabled/{file}"
        );
    }
    let out = copy.run("apache2ctl", &["-M"]);
    assert!(out.status.success(), "apache2ctl -M: {}", text(&out));
    assert!(!text(&out).contains("rwsgi_module"), "{}", text(&out));

    assert_eq!(
        snapshot(Path::new("/etc/apache2")),
        system_conf,
        "/etc/apache2 changed"
    );
    assert_eq!(
        snapshot(Path::new("/var/lib/apache2")),
        system_state,
        "/var/lib/apache2 changed"
    );
}
