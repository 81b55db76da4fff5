//! The Debian route, as root on the test machine: `make deb` builds
//! libapache2-mod-rwsgi_<version>_<arch>.deb; its contents, control data and maintainer
//! scripts are inspected with dpkg-deb and lintian; `dpkg -i` enables the module
//! (`a2query -m rwsgi`), the system configuration passes configtest, the guide's first
//! configuration (conf-examples/01-root-with-static.conf, paths changed) serves a Webware
//! working dir through the installed module and the system's mods-enabled files from a
//! private ServerRoot, PidFile and port; `dpkg -r` and `dpkg -P` leave nothing behind.
//!
//! The system's Apache service is never touched: while the package is installed a
//! policy-rc.d that denies every action is in place (the maintainer scripts' restart goes
//! through invoke-rc.d), and the test checks the service's state did not change. Files a
//! `make install` left (not owned by any package) are moved aside and put back. Everything is
//! undone on failure too.
//!
//! Slow (a release build): run by `make test-packaging`, which passes `--ignored`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ApacheConfig, Mpm, TempDir, repo_dir, test_venv};

const PACKAGE: &str = "libapache2-mod-rwsgi";
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const MODULE: &str = "/usr/lib/apache2/modules/mod_rwsgi.so";
/// What the package installs outside /usr/share/doc, and what `make install` may have left.
const SYSTEM_FILES: [&str; 7] = [
    MODULE,
    "/etc/apache2/mods-available/rwsgi.load",
    "/etc/apache2/mods-available/rwsgi.conf",
    "/etc/apache2/mods-enabled/rwsgi.load",
    "/etc/apache2/mods-enabled/rwsgi.conf",
    "/usr/bin/rwsgi-express",
    "/usr/bin/rwsgi-load",
];

fn text(out: &Output) -> String {
    format!(
        "status {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// dpkg with its lock shared with other users of this machine: retried (bounded) while
/// another dpkg or apt holds it.
fn dpkg(args: &[&str]) -> Output {
    let start = Instant::now();
    loop {
        let out = run(Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"));
        let locked = String::from_utf8_lossy(&out.stderr).contains("lock");
        if out.status.success() || !locked || start.elapsed() > Duration::from_secs(180) {
            return out;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn installed(package: &str) -> bool {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]));
    String::from_utf8_lossy(&out.stdout).contains("installed")
        && !String::from_utf8_lossy(&out.stdout).contains("not-installed")
}

/// The system Apache's state: the PID in its pid file if that process is alive.
fn system_apache() -> Option<String> {
    let pid = fs::read_to_string("/run/apache2/apache2.pid").ok()?;
    let pid = pid.trim().to_string();
    Path::new("/proc").join(&pid).exists().then_some(pid)
}

/// Moves a file or symlink, also across file systems (/etc to /tmp).
fn move_path(from: &Path, to: &Path) -> std::io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            if fs::symlink_metadata(from)?.file_type().is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
            } else {
                fs::copy(from, to)?;
            }
            fs::remove_file(from)
        }
        other => other,
    }
}

/// Undoes what the test did to the system, in reverse, also when it panics: purges the
/// package if still installed, puts back files `make install` had left, restores
/// policy-rc.d.
struct SystemGuard {
    aside: PathBuf,
    moved: Vec<(PathBuf, PathBuf)>,
    policy: Option<(Vec<u8>, u32)>,
}

impl SystemGuard {
    fn new(aside: &Path) -> SystemGuard {
        let policy = fs::read(POLICY_RC_D).ok().map(|content| {
            (
                content,
                fs::metadata(POLICY_RC_D).unwrap().permissions().mode(),
            )
        });
        let mut guard = SystemGuard {
            aside: aside.to_path_buf(),
            moved: Vec::new(),
            policy,
        };
        // Deny every service action (exit 101) while the package's scripts run.
        fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# mod_rwsgi tests/packaging_deb.rs: no service actions during the test\nexit 101\n",
        )
        .unwrap();
        fs::set_permissions(POLICY_RC_D, fs::Permissions::from_mode(0o755)).unwrap();
        // Files no package owns (a `make install`) would make dpkg ask about its conffiles.
        for (i, file) in SYSTEM_FILES.iter().enumerate() {
            let path = Path::new(file);
            if fs::symlink_metadata(path).is_err() {
                continue;
            }
            let owned = run(Command::new("dpkg").args(["-S", file]))
                .status
                .success();
            assert!(
                !owned,
                "{file} belongs to an installed package (is {PACKAGE} installed? the test \
                 installs and purges it: remove it first)"
            );
            let dest = guard.aside.join(format!("{i}"));
            move_path(path, &dest).unwrap_or_else(|e| panic!("move {file} aside: {e}"));
            guard.moved.push((path.to_path_buf(), dest));
        }
        guard
    }
}

impl Drop for SystemGuard {
    fn drop(&mut self) {
        if installed(PACKAGE) {
            let out = dpkg(&["--purge", PACKAGE]);
            if !out.status.success() {
                eprintln!("cleanup: dpkg --purge {PACKAGE}: {}", text(&out));
            }
        }
        for (original, aside) in self.moved.drain(..).rev() {
            if let Err(e) = move_path(&aside, &original) {
                eprintln!("cleanup: cannot put back {}: {e}", original.display());
            }
        }
        let restored = match &self.policy {
            Some((content, mode)) => fs::write(POLICY_RC_D, content)
                .and_then(|_| fs::set_permissions(POLICY_RC_D, fs::Permissions::from_mode(*mode))),
            None => fs::remove_file(POLICY_RC_D),
        };
        if let Err(e) = restored {
            eprintln!("cleanup: cannot restore {POLICY_RC_D}: {e}");
        }
    }
}

/// Every file and symlink under `root`, with its target or size and mtime. Directories are
/// left out: a2dismod creates a2query's empty state directories
/// (/var/lib/apache2/module/disabled_by_*), as for any module package.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.push(format!(
                    "{} -> {}",
                    path.display(),
                    fs::read_link(&path).unwrap().display()
                ));
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                use std::os::unix::fs::MetadataExt;
                out.push(format!(
                    "{} {} {}",
                    path.display(),
                    meta.len(),
                    meta.mtime()
                ));
            }
        }
    }
    out.sort();
    out
}

/// A Webware working dir as the guide makes it (`webware make`, then `webware make -g
/// www-data` for the permissions), with a static file.
fn make_work_dir(venv: &Path, dir: &Path) {
    let webware = venv.join("bin/webware");
    run_ok(Command::new(&webware).arg("make").arg(dir));
    fs::write(dir.join("Static/hello.txt"), "static hello from Static/\n").unwrap();
    run_ok(
        Command::new(&webware)
            .args(["make", "-g", "www-data"])
            .arg(dir),
    );
}

#[test]
#[ignore = "slow (release build), installs a package as root: run by `make test-packaging`"]
fn make_deb_builds_a_package_that_installs_serves_the_guide_config_and_purges_cleanly() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "installing a package needs root"
    );
    let version = env!("CARGO_PKG_VERSION");
    let arch = run_ok(Command::new("dpkg").arg("--print-architecture"));
    let deb = repo_dir().join(format!("build/deb/{PACKAGE}_{version}_{}.deb", arch.trim()));

    // Build.
    let out = run(Command::new("make")
        .arg("-C")
        .arg(repo_dir())
        .args(["--no-print-directory", "deb"])
        .env_remove("MAKEFLAGS")
        .env_remove("MAKELEVEL")
        .env_remove("MFLAGS")
        .env_remove("CARGO_TARGET_DIR"));
    assert!(out.status.success(), "make deb: {}", text(&out));
    assert!(deb.is_file(), "make deb did not make {}", deb.display());

    // Control data: Apache's module API, this Python's exact libpython and version range.
    let field = |name: &str| run_ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
    assert_eq!(field("Package").trim(), PACKAGE);
    assert_eq!(field("Version").trim(), version);
    let depends = field("Depends");
    let py = run_ok(Command::new("/usr/bin/python3").args([
        "-c",
        "import sys; print('%d.%d' % sys.version_info[:2], sys.version_info[1] + 1)",
    ]));
    let [py_version, next_minor] = py.split_whitespace().collect::<Vec<_>>()[..] else {
        panic!("{py}")
    };
    for needed in [
        "apache2-api-20120211".to_string(),
        format!("libpython{py_version} "),
        format!("python3 (>= {py_version})"),
        format!("python3 (<< 3.{next_minor})"),
    ] {
        assert!(
            depends.contains(&needed),
            "Depends lacks {needed}: {depends}"
        );
    }

    // Contents: module, conffiles in mods-available, both commands; nothing in mods-enabled.
    let listing = run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./usr/lib/apache2/modules/mod_rwsgi.so",
        "./etc/apache2/mods-available/rwsgi.load",
        "./etc/apache2/mods-available/rwsgi.conf",
        "./usr/bin/rwsgi-express",
        "./usr/bin/rwsgi-load",
        "./usr/share/man/man1/rwsgi-express.1.gz",
        "./usr/share/man/man1/rwsgi-load.1.gz",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} not in the package:\n{listing}"
        );
    }
    assert!(!listing.contains("mods-enabled"), "{listing}");
    let tmp = TempDir::new("deb");
    let control = tmp.path().join("control");
    run_ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = fs::read_to_string(control.join("conffiles")).unwrap();
    let mut conffiles: Vec<&str> = conffiles.lines().collect();
    conffiles.sort();
    assert_eq!(
        conffiles,
        [
            "/etc/apache2/mods-available/rwsgi.conf",
            "/etc/apache2/mods-available/rwsgi.load"
        ]
    );
    for (script, action) in [
        ("postinst", "apache2_invoke enmod $conf"),
        ("prerm", "apache2_invoke dismod $conf"),
        ("postrm", "apache2_invoke dismod $conf"),
    ] {
        let body = fs::read_to_string(control.join(script)).unwrap();
        assert!(
            body.contains(". /usr/share/apache2/apache2-maintscript-helper")
                && body.contains("for conf in rwsgi ")
                && body.contains(action),
            "{script} does not go through apache2-maintscript-helper ({action}):\n{body}"
        );
        assert!(
            !body.contains("invoke-rc.d"),
            "{script} calls invoke-rc.d:\n{body}"
        );
    }
    let extracted = tmp.path().join("x");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&extracted));
    let dynamic = run_ok(
        Command::new("readelf")
            .arg("-d")
            .arg(extracted.join("usr/lib/apache2/modules/mod_rwsgi.so")),
    );
    assert!(
        dynamic.contains(&format!("Shared library: [libpython{py_version}.so")),
        "{dynamic}"
    );
    assert!(
        !dynamic.contains("RUNPATH") && !dynamic.contains("(RPATH)"),
        "{dynamic}"
    );

    // lintian: no error, and no warning either.
    let out = run(Command::new("lintian")
        .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
        .arg(&deb));
    assert!(out.status.success(), "lintian: {}", text(&out));

    // Install, with service actions denied and leftovers of `make install` set aside; one
    // such test per machine at a time (the lock is released after the guard's clean-up).
    let _layout_lock = common::SystemLayoutLock::acquire();
    let service_before = system_apache();
    let aside = tmp.path().join("aside");
    fs::create_dir_all(&aside).unwrap();
    let guard = SystemGuard::new(&aside);
    let etc_before = tree(Path::new("/etc/apache2"));
    let state_before = tree(Path::new("/var/lib/apache2"));

    let out = dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(out.status.success(), "dpkg -i: {}", text(&out));
    let out = run(Command::new("a2query").args(["-m", "rwsgi"]));
    assert!(out.status.success(), "a2query -m rwsgi: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("enabled by maintainer script"),
        "{}",
        text(&out)
    );
    assert!(Path::new(MODULE).is_file());
    let out = run(Command::new("apache2ctl").arg("configtest"));
    assert!(
        out.status.success(),
        "apache2ctl configtest: {}",
        text(&out)
    );
    assert!(text(&out).contains("Syntax OK"), "{}", text(&out));
    let modules = run_ok(Command::new("apache2ctl").arg("-M"));
    assert!(modules.contains("rwsgi_module (shared)"), "{modules}");

    // The guide's first configuration, on the installed module as a2enmod enabled it.
    {
        let venv = test_venv();
        let config = ApacheConfig::new("deb-guide")
            .mpm(Mpm::Worker)
            .without_rwsgi();
        let base = config.root().join("webware");
        fs::create_dir_all(&base).unwrap();
        make_work_dir(&venv, &base.join("MyApp"));
        let guide =
            fs::read_to_string(repo_dir().join("conf-examples/01-root-with-static.conf")).unwrap();
        // README step 4: the LoadModule line goes when the module is enabled with a2enmod.
        let guide: String = guide
            .lines()
            .filter(|l| !l.trim_start().starts_with("LoadModule"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("/srv/webware/venv", &venv.display().to_string())
            .replace("/srv/webware", &base.display().to_string());
        let config = config
            .conf(
                "Include /etc/apache2/mods-enabled/rwsgi.load\n\
                 Include /etc/apache2/mods-enabled/rwsgi.conf\n",
            )
            .conf(&guide);
        let (ok, out) = config.configtest();
        assert!(ok, "apache2 -t with the guide's config:\n{out}");
        let apache = config.start();
        let main = apache.get("/");
        assert_with_log!(
            apache,
            main.status == 200 && main.text().contains("Welcome to Webware for Python!"),
            "GET /: {} {}",
            main.status,
            main.text()
        );
        let page = apache.get("/Examples/ShowTime");
        assert_with_log!(
            apache,
            page.status == 200 && page.text().contains("The current time is"),
            "GET /Examples/ShowTime: {}",
            page.status
        );
        let file = apache.get("/static/hello.txt");
        assert_eq!(file.status, 200);
        assert_eq!(file.text(), "static hello from Static/\n");
        // The daemon runs the installed module (mapped from /usr/lib/apache2/modules).
        let maps = fs::read_to_string(format!("/proc/{}/maps", apache.pid())).unwrap();
        assert!(maps.contains(MODULE), "Apache did not map {MODULE}");
    }

    // The packaged rwsgi-express names the installed module; a copy of it in a venv where
    // pip put a module prefers that one and the venv (the pip route's layout).
    let express_config = run_ok(Command::new("/usr/bin/rwsgi-express").arg("module-config"));
    assert_eq!(
        express_config,
        format!("LoadModule rwsgi_module {MODULE}\n")
    );
    let venv = tmp.path().join("venv");
    let server = venv.join(format!(
        "lib/python{py_version}/site-packages/mod_rwsgi/server"
    ));
    fs::create_dir_all(&server).unwrap();
    fs::create_dir_all(venv.join("bin")).unwrap();
    fs::write(venv.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
    fs::copy("/usr/bin/rwsgi-express", venv.join("bin/rwsgi-express")).unwrap();
    let venv_module = server.join("mod_rwsgi.cpython-3XY-test.so");
    fs::copy(MODULE, &venv_module).unwrap();
    let express_config = run_ok(Command::new(venv.join("bin/rwsgi-express")).arg("module-config"));
    assert_eq!(
        express_config,
        format!(
            "LoadModule rwsgi_module {}\nWSGIPythonHome {}\n",
            venv_module.display(),
            venv.display()
        ),
        "the venv's module and the venv, not {MODULE}"
    );

    // Remove: the module is disabled and gone, the conffiles stay; purge: nothing is left.
    let out = dpkg(&["-r", PACKAGE]);
    assert!(out.status.success(), "dpkg -r: {}", text(&out));
    assert!(
        !run(Command::new("a2query").args(["-m", "rwsgi"]))
            .status
            .success(),
        "a2query -m rwsgi after dpkg -r"
    );
    assert!(!Path::new(MODULE).exists(), "{MODULE} after dpkg -r");
    assert!(Path::new("/etc/apache2/mods-available/rwsgi.load").exists());
    let out = dpkg(&["-P", PACKAGE]);
    assert!(out.status.success(), "dpkg -P: {}", text(&out));
    let out = run(Command::new("dpkg").args(["-L", PACKAGE]));
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "dpkg -L after purge: {}",
        text(&out)
    );
    for file in SYSTEM_FILES {
        assert!(
            fs::symlink_metadata(file).is_err(),
            "{file} is left after purge"
        );
    }
    assert_eq!(tree(Path::new("/etc/apache2")), etc_before, "/etc/apache2");
    assert_eq!(
        tree(Path::new("/var/lib/apache2")),
        state_before,
        "/var/lib/apache2 (a2enmod's state)"
    );
    drop(guard);
    assert_eq!(
        system_apache(),
        service_before,
        "the system Apache's state changed"
    );
}
