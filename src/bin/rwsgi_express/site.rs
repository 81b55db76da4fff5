//! Turns the command line into a checked `Site`: absolute paths that exist, the identity the
//! daemon runs as, the server root, and — when that identity cannot read the application
//! (a checkout under /root served as www-data) — a copy of it inside the server root.
//! Every problem is one `Fail` line.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::{AccessFlags, Gid, Group, Uid, User};

use super::Fail;
use super::cli::ServerArgs;

/// Where Debian's Apache keeps its modules (mpm_event, authz_core, mime, alias, dir).
pub const MODULES_DIR: &str = "/usr/lib/apache2/modules";
/// The installed module, preferred when present.
const INSTALLED_MODULE: &str = "/usr/lib/apache2/modules/mod_rwsgi.so";
/// Files copied at most when the application has to be copied.
const COPY_MAX_FILES: usize = 5000;
const COPY_MAX_BYTES: u64 = 200 << 20;

/// The account Apache's children and the daemon process run as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub group: String,
    pub uid: u32,
    pub gid: u32,
    /// Apache starts as root and switches to this identity (User/Group lines).
    pub switch: bool,
}

/// Everything the configuration is generated from, checked.
#[derive(Debug, Clone)]
pub struct Site {
    pub host: String,
    pub port: u16,
    pub server_root: PathBuf,
    /// The script Apache serves (the copy, if the application had to be copied).
    pub script: PathBuf,
    /// The daemon's working directory and first python-path entry.
    pub app_dir: PathBuf,
    pub aliases: Vec<(String, PathBuf)>,
    pub mount_point: String,
    pub module: PathBuf,
    pub identity: Identity,
    pub processes: u32,
    pub threads: u32,
    pub python_home: Option<PathBuf>,
    pub reload_on_changes: bool,
    pub log_to_terminal: bool,
    pub access_log: bool,
    pub log_level: String,
    /// One-line notes to show the user (e.g. "serving a copy").
    pub notes: Vec<String>,
}

impl Site {
    pub fn conf_path(&self) -> PathBuf {
        self.server_root.join("httpd.conf")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.server_root.join("run")
    }
    pub fn error_log(&self) -> PathBuf {
        self.server_root.join("error.log")
    }
    /// The URL to print.
    pub fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mount = self.mount_point.trim_end_matches('/');
        format!("http://{host}:{}{mount}/", self.port)
    }
}

/// Resolves and checks `args`. `start` also checks that the port is free.
pub fn resolve(args: &ServerArgs, start: bool) -> Result<Site, Fail> {
    let module = find_module(args.module.as_deref())?;
    let App {
        script,
        dir: app_dir,
        mut aliases,
    } = application(args)?;
    for (url, path) in args.url_aliases() {
        check_url("--url-alias", &url)?;
        let abs = existing(&path, "--url-alias path")?;
        aliases.push((url.trim_end_matches('/').to_string(), abs));
    }
    let python_home = match &args.python_home {
        Some(p) => {
            let abs = existing(p, "--python-home")?;
            if !abs.is_dir() {
                return Err(Fail(format!(
                    "--python-home {}: not a directory",
                    abs.display()
                )));
            }
            Some(abs)
        }
        // Installed into a venv by pip: serve with that venv, as module-config says.
        None => own_venv(),
    };
    check_url("--mount-point", &args.mount_point)?;
    let mount_point = match args.mount_point.trim_end_matches('/') {
        "" => "/".to_string(),
        m => m.to_string(),
    };
    check_host(&args.host)?;
    let identity = identity(args.user.as_deref(), args.group.as_deref())?;
    if start {
        check_port(&args.host, args.port)?;
    }
    let server_root = match &args.server_root {
        Some(p) => absolute(p)?,
        None => PathBuf::from(format!(
            "/tmp/rwsgi-express-{}:{}-{}",
            args.host,
            args.port,
            Uid::current()
        )),
    };
    // Daemon sockets are <root>/run/rwsgi.<pid>.<generation>.<index>.sock, and a Unix
    // socket path has at most 107 bytes.
    if server_root.as_os_str().len() + 45 > 107 {
        return Err(Fail(format!(
            "--server-root {} is too long for the daemon's Unix socket paths; use a shorter \
             directory",
            server_root.display()
        )));
    }
    for p in [&script, &app_dir, &module, &server_root]
        .into_iter()
        .chain(aliases.iter().map(|(_, p)| p))
        .chain(python_home.iter())
    {
        check_config_safe(p)?;
    }
    make_dir(&server_root)?;
    for sub in ["run", "htdocs"] {
        make_dir(&server_root.join(sub))?;
    }

    let mut site = Site {
        host: args.host.clone(),
        port: args.port,
        server_root,
        script,
        app_dir,
        aliases,
        mount_point,
        module,
        identity,
        processes: args.processes,
        threads: args.threads,
        python_home,
        reload_on_changes: args.reload_on_changes,
        log_to_terminal: args.log_to_terminal,
        access_log: args.access_log,
        log_level: args.log_level.clone(),
        notes: Vec::new(),
    };
    make_readable(&mut site)?;
    Ok(site)
}

/// What the command line names: the script, the application directory and the aliases
/// implied by it (Webware's /static).
struct App {
    script: PathBuf,
    dir: PathBuf,
    aliases: Vec<(String, PathBuf)>,
}

fn application(args: &ServerArgs) -> Result<App, Fail> {
    if let Some(dir) = &args.webware_dir {
        let dir = existing(dir, "--webware-dir")?;
        if !dir.is_dir() {
            return Err(Fail(format!(
                "--webware-dir {}: not a directory",
                dir.display()
            )));
        }
        let script = dir.join("Scripts/WSGIScript.py");
        if !script.is_file() {
            return Err(Fail(format!(
                "{}: not a Webware working directory (no Scripts/WSGIScript.py; create one \
                 with `webware make`)",
                dir.display()
            )));
        }
        let mut aliases = Vec::new();
        if dir.join("Static").is_dir() {
            aliases.push(("/static".to_string(), dir.join("Static")));
        }
        return Ok(App {
            script,
            dir,
            aliases,
        });
    }
    let Some(script) = &args.script else {
        return Err(Fail(
            "no WSGI script given (APP.wsgi or --webware-dir DIR)".into(),
        ));
    };
    let script = existing(script, "WSGI script")?;
    if !script.is_file() {
        return Err(Fail(format!(
            "{}: not a file (expected a WSGI script)",
            script.display()
        )));
    }
    let dir = script
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    Ok(App {
        script,
        dir,
        aliases: Vec::new(),
    })
}

/// The module to load: `--module`, else the one pip installed beside this command (a venv's
/// or a `--user` install's, built for that Python), else the system's, else this checkout's
/// build.
pub fn find_module(given: Option<&Path>) -> Result<PathBuf, Fail> {
    if let Some(p) = given {
        let abs = existing(p, "--module")?;
        if !abs.is_file() {
            return Err(Fail(format!("--module {}: not a file", abs.display())));
        }
        return Ok(abs);
    }
    let exe = std::env::current_exe().ok();
    let bin_dir = exe.as_deref().and_then(Path::parent);
    let mut looked = Vec::new();
    if let Some(bin_dir) = bin_dir {
        for dir in pip_module_dirs(bin_dir, env!("RWSGI_BUILD_PYTHON_VERSION")) {
            if let Some(found) = module_in(&dir) {
                return fs::canonicalize(&found)
                    .map_err(|e| Fail(format!("{}: {e}", found.display())));
            }
            looked.push(dir.join("mod_rwsgi*.so"));
        }
    }
    looked.push(PathBuf::from(INSTALLED_MODULE));
    if let Some(bin_dir) = bin_dir {
        // target/<dir>/release/rwsgi-express, or target/release/rwsgi-express.
        looked.push(bin_dir.join("../../../build/mod_rwsgi.so"));
        looked.push(bin_dir.join("../../build/mod_rwsgi.so"));
    }
    if let Ok(cwd) = std::env::current_dir() {
        looked.push(cwd.join("build/mod_rwsgi.so"));
    }
    for p in &looked {
        if p.is_file() {
            return fs::canonicalize(p).map_err(|e| Fail(format!("{}: {e}", p.display())));
        }
    }
    let list: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
    Err(Fail(format!(
        "mod_rwsgi.so not found (looked at {}); build it with `make`, install it with \
         `pip install mod-rwsgi` or pass --module PATH",
        list.join(", ")
    )))
}

/// Where `pip install` puts the module when this command is in `bin_dir`: the Python
/// package `mod_rwsgi/server/` in `lib/pythonX.Y/{site,dist}-packages` beside `bin/`
/// (a venv, `--user` or `--prefix`).
fn pip_module_dirs(bin_dir: &Path, python_version: &str) -> Vec<PathBuf> {
    let lib = bin_dir
        .join("..")
        .join("lib")
        .join(format!("python{python_version}"));
    ["site-packages", "dist-packages"]
        .iter()
        .map(|packages| lib.join(packages).join("mod_rwsgi").join("server"))
        .collect()
}

/// The built module in a `mod_rwsgi/server` directory (`mod_rwsgi.cpython-3XY-….so`).
fn module_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("mod_rwsgi") && n.ends_with(".so"))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// The virtual environment this command belongs to (`bin/..` holding `pyvenv.cfg`).
pub fn own_venv() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    venv_of(exe.parent()?)
}

fn venv_of(bin_dir: &Path) -> Option<PathBuf> {
    let root = bin_dir.parent()?;
    if root.join("pyvenv.cfg").is_file() {
        fs::canonicalize(root).ok()
    } else {
        None
    }
}

/// `path` made absolute and canonical, or a one-line error naming `what`.
fn existing(path: &Path, what: &str) -> Result<PathBuf, Fail> {
    fs::canonicalize(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        Fail(format!("{what} {}: {why}", path.display()))
    })
}

fn absolute(path: &Path) -> Result<PathBuf, Fail> {
    std::path::absolute(path).map_err(|e| Fail(format!("{}: {e}", path.display())))
}

fn check_url(what: &str, url: &str) -> Result<(), Fail> {
    if !url.starts_with('/') || url.chars().any(|c| c.is_whitespace() || c == '"') {
        return Err(Fail(format!(
            "{what} {url:?}: expected a URL path starting with / (no spaces or quotes)"
        )));
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), Fail> {
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '/' | '$'))
    {
        return Err(Fail(format!(
            "--host {host:?}: expected an IP address or host name"
        )));
    }
    Ok(())
}

/// Paths go into the configuration inside double quotes: refuse what cannot be written there.
fn check_config_safe(path: &Path) -> Result<(), Fail> {
    let Some(s) = path.to_str() else {
        return Err(Fail(format!(
            "{}: paths must be valid UTF-8 to be written into an Apache configuration",
            path.display()
        )));
    };
    if s.contains(['"', '\\', '\n', '\r']) || s.contains("${") {
        return Err(Fail(format!(
            "{s:?}: a path containing a quote, backslash, newline or ${{ cannot be written \
             into an Apache configuration"
        )));
    }
    Ok(())
}

/// Binds the port once so a busy one gives a clear message instead of Apache's.
fn check_port(host: &str, port: u16) -> Result<(), Fail> {
    let bind_host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    match TcpListener::bind(format!("{bind_host}:{port}")) {
        Ok(listener) => {
            drop(listener);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(Fail(format!(
            "port {port} on {host} is already in use (another server is listening; pick \
             another with --port)"
        ))),
        Err(e) => Err(Fail(format!("cannot listen on {host}:{port}: {e}"))),
    }
}

/// Who the daemon runs as. Root: `--user`/`--group`, default www-data. Anyone else: themself,
/// because an unprivileged Apache cannot switch user.
fn identity(user: Option<&str>, group: Option<&str>) -> Result<Identity, Fail> {
    if Uid::effective().is_root() {
        let user_name = user.unwrap_or("www-data");
        let u = User::from_name(user_name)
            .ok()
            .flatten()
            .ok_or_else(|| Fail(format!("--user {user_name}: no such user")))?;
        let g = match group {
            Some(name) => Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| Fail(format!("--group {name}: no such group")))?,
            None if user.is_none() => Group::from_name("www-data")
                .ok()
                .flatten()
                .ok_or_else(|| Fail("group www-data does not exist; pass --group".into()))?,
            None => Group::from_gid(u.gid)
                .ok()
                .flatten()
                .ok_or_else(|| Fail(format!("--user {user_name}: its group has no name")))?,
        };
        if u.uid.is_root() {
            return Err(Fail(
                "--user root: Apache and mod_rwsgi refuse to serve as root; pick another user"
                    .into(),
            ));
        }
        return Ok(Identity {
            user: u.name,
            group: g.name,
            uid: u.uid.as_raw(),
            gid: g.gid.as_raw(),
            switch: true,
        });
    }
    let uid = Uid::effective();
    let gid = Gid::effective();
    let me = User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("#{uid}"));
    let my_group = Group::from_gid(gid)
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| format!("#{gid}"));
    if let Some(u) = user.filter(|u| *u != me) {
        return Err(Fail(format!(
            "--user {u}: only root can run Apache as another user (you are {me})"
        )));
    }
    if let Some(g) = group.filter(|g| *g != my_group) {
        return Err(Fail(format!(
            "--group {g}: only root can run Apache as another group (yours is {my_group})"
        )));
    }
    Ok(Identity {
        user: me,
        group: my_group,
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        switch: false,
    })
}

/// Creates `dir` (and parents) and makes it 0755, so the daemon user can read it.
fn make_dir(dir: &Path) -> Result<(), Fail> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| Fail(format!("cannot create {}: {e}", dir.display())))?;
    let meta = fs::metadata(dir).map_err(|e| Fail(format!("{}: {e}", dir.display())))?;
    if meta.permissions().mode() & 0o777 != 0o755 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(|e| {
            Fail(format!(
                "cannot make {} readable (0755): {e}",
                dir.display()
            ))
        })?;
    }
    if nix::unistd::access(dir, AccessFlags::W_OK).is_err() {
        return Err(Fail(format!(
            "{}: not writable by you; pick another --server-root",
            dir.display()
        )));
    }
    Ok(())
}

/// Access kinds checked as the daemon's identity.
#[derive(Clone, Copy)]
enum Need {
    /// A file to read.
    File,
    /// A directory to list and enter.
    Dir,
}

/// Can the daemon identity read `path`, through every directory above it?
fn readable_by(id: &Identity, path: &Path, need: Need) -> bool {
    let flags = match need {
        Need::File => AccessFlags::R_OK,
        Need::Dir => AccessFlags::R_OK | AccessFlags::X_OK,
    };
    if !id.switch || id.uid == Uid::effective().as_raw() {
        return nix::unistd::access(path, flags).is_ok();
    }
    // Ask as that user: a `test` run under its uid and gid follows the same rules (ACLs
    // included) as the daemon will.
    use std::os::unix::process::CommandExt;
    let ok = |flag: &str| {
        Command::new("/usr/bin/test")
            .uid(id.uid)
            .gid(id.gid)
            .arg(flag)
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    match need {
        Need::File => ok("-r"),
        Need::Dir => ok("-r") && ok("-x"),
    }
}

fn need_for(path: &Path) -> Need {
    if path.is_dir() { Need::Dir } else { Need::File }
}

/// Makes sure the daemon identity can read the application, its static files, its Python
/// and the server root; copies the application (or an alias) into the server root when it
/// cannot, and fails with one line when copying cannot help.
fn make_readable(site: &mut Site) -> Result<(), Fail> {
    let id = site.identity.clone();
    let who = if id.switch {
        format!("user {}", id.user)
    } else {
        "you".to_string()
    };
    if !readable_by(&id, &site.server_root, Need::Dir) {
        return Err(Fail(format!(
            "server root {} is not readable by {who}; pick another --server-root",
            site.server_root.display()
        )));
    }
    let app_ok =
        readable_by(&id, &site.app_dir, Need::Dir) && readable_by(&id, &site.script, Need::File);
    if !app_ok {
        if !id.switch {
            return Err(Fail(format!(
                "cannot read {} (check its permissions)",
                site.script.display()
            )));
        }
        let copy = site.server_root.join("app");
        copy_tree(&site.app_dir, &copy, &site.server_root)?;
        let original = site.app_dir.clone();
        let original_script = site.script.clone();
        let rel = original_script
            .strip_prefix(&original)
            .unwrap_or(&original_script);
        site.script = copy.join(rel);
        for (_, path) in site.aliases.iter_mut() {
            if let Ok(rel) = path.strip_prefix(&original) {
                *path = copy.join(rel);
            }
        }
        site.app_dir = copy.clone();
        site.notes.push(format!(
            "{who} cannot read {}; serving a copy of {} from {} (edits to the original are \
             not seen until the next start)",
            original_script.display(),
            original.display(),
            copy.display()
        ));
    }
    for (i, (url, path)) in site.aliases.iter_mut().enumerate() {
        if readable_by(&id, path, need_for(path)) {
            continue;
        }
        if !id.switch {
            return Err(Fail(format!(
                "cannot read {} (--url-alias {url})",
                path.display()
            )));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let copy = site.server_root.join(format!("alias-{i}")).join(name);
        copy_tree(path, &copy, &site.server_root)?;
        site.notes.push(format!(
            "{who} cannot read {}; serving a copy from {} at {url}",
            path.display(),
            copy.display()
        ));
        *path = copy;
    }
    if !readable_by(&id, &site.script, Need::File) {
        return Err(Fail(format!(
            "{} is not readable by {who}",
            site.script.display()
        )));
    }
    if let Some(home) = &site.python_home {
        if !readable_by(&id, home, Need::Dir) {
            return Err(Fail(format!(
                "--python-home {} is not readable by {who}; the daemon runs as {} and must \
                 read its Python",
                home.display(),
                id.user
            )));
        }
    }
    Ok(())
}

/// Copies a file or a directory tree to `dest` (replacing it), readable by everyone.
/// Skips `.git` and `__pycache__`; refuses trees that are too large to copy.
fn copy_tree(src: &Path, dest: &Path, server_root: &Path) -> Result<(), Fail> {
    if dest.exists() {
        let removed = if dest.is_dir() {
            fs::remove_dir_all(dest)
        } else {
            fs::remove_file(dest)
        };
        removed.map_err(|e| Fail(format!("cannot replace {}: {e}", dest.display())))?;
    }
    if let Some(parent) = dest.parent() {
        make_dir(parent)?;
    }
    if src.parent().is_none() {
        return Err(Fail(
            "refusing to copy / (put the application in a directory)".into(),
        ));
    }
    let mut budget = (COPY_MAX_FILES, COPY_MAX_BYTES);
    // The server root may lie inside the tree being copied: never copy it into itself.
    copy_rec(src, dest, server_root, &mut budget, 0).map_err(|e| match e {
        CopyError::TooLarge => Fail(format!(
            "{} is not readable by the daemon user and too large to copy (over {} files or \
             {} MiB); make it readable or pass --user",
            src.display(),
            COPY_MAX_FILES,
            COPY_MAX_BYTES >> 20
        )),
        CopyError::Io(path, e) => Fail(format!("cannot copy {}: {e}", path.display())),
    })
}

enum CopyError {
    TooLarge,
    Io(PathBuf, std::io::Error),
}

fn copy_rec(
    src: &Path,
    dest: &Path,
    skip: &Path,
    budget: &mut (usize, u64),
    depth: usize,
) -> Result<(), CopyError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| CopyError::Io(p, e)
    };
    if depth > 32 {
        return Err(CopyError::TooLarge);
    }
    let meta = fs::metadata(src).map_err(io(src))?;
    if meta.is_dir() {
        fs::DirBuilder::new()
            .mode(0o755)
            .create(dest)
            .map_err(io(dest))?;
        fs::set_permissions(dest, fs::Permissions::from_mode(0o755)).map_err(io(dest))?;
        let mut entries: Vec<_> = fs::read_dir(src)
            .map_err(io(src))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            if name == ".git" || name == "__pycache__" || entry.path() == skip {
                continue;
            }
            copy_rec(&entry.path(), &dest.join(&name), skip, budget, depth + 1)?;
        }
    } else if meta.is_file() {
        if budget.0 == 0 || budget.1 < meta.len() {
            return Err(CopyError::TooLarge);
        }
        budget.0 -= 1;
        budget.1 -= meta.len();
        fs::copy(src, dest).map_err(io(src))?;
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        fs::set_permissions(dest, fs::Permissions::from_mode(mode)).map_err(io(dest))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir = std::env::temp_dir()
                .join(format!("rwsgi-express-unit-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_module_pip_installed_in_a_venv_is_found_from_its_bin_dir() {
        let venv = Scratch::new("venv");
        let server = venv.0.join("lib/python3.11/site-packages/mod_rwsgi/server");
        fs::create_dir_all(&server).unwrap();
        fs::create_dir_all(venv.0.join("bin")).unwrap();
        let dirs = pip_module_dirs(&venv.0.join("bin"), "3.11");
        assert_eq!(
            module_in(&dirs[0]),
            None,
            "an empty server/ dir has no module"
        );
        fs::write(server.join("__init__.py"), "").unwrap();
        fs::write(server.join("mod_rwsgi.cpython-311-x86_64-linux-gnu.so"), "").unwrap();
        assert_eq!(
            module_in(&dirs[0]).map(|p| fs::canonicalize(p).unwrap()),
            Some(server.join("mod_rwsgi.cpython-311-x86_64-linux-gnu.so"))
        );
        // Another Python version's lib dir is not looked at.
        let other = pip_module_dirs(&venv.0.join("bin"), "3.12");
        assert!(other.iter().all(|d| module_in(d).is_none()));
        // dist-packages (Debian's /usr/local layout) is looked at too.
        assert!(dirs[1].ends_with("lib/python3.11/dist-packages/mod_rwsgi/server"));
    }

    #[test]
    fn a_venv_is_recognised_by_its_pyvenv_cfg() {
        let venv = Scratch::new("cfg");
        fs::create_dir_all(venv.0.join("bin")).unwrap();
        assert_eq!(venv_of(&venv.0.join("bin")), None);
        fs::write(venv.0.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        assert_eq!(
            venv_of(&venv.0.join("bin")),
            Some(fs::canonicalize(&venv.0).unwrap())
        );
    }
}
