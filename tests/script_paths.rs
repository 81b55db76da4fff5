//! WSGI script files whose path is not UTF-8, against a real Apache and CPython, in daemon
//! and embedded mode. A URL's `%E9` is the byte 0xE9 in Apache's `r->filename`; the script
//! must be found by those bytes (not by a lossy UTF-8 copy of them), get `__file__` as
//! `os.fsdecode` of them and a module name that is the md5 of them, as under mod_wsgi, and be
//! reloaded when touched. Two ways mod_wsgi users reach such a file: `AddHandler wsgi-script`
//! in a directory, and a WSGIScriptAliasMatch whose `$1` takes the bytes from the URL (to an
//! absolute script path, and to one relative to ServerRoot).

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::http::{Json, json};
use common::{Apache, ApacheConfig, repo_dir};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Daemon,
    Embedded,
}

/// latin-1 "déjà" and "café": bytes that are not UTF-8.
const DIR_NAME: &[u8] = b"d\xe9j\xe0";
const FILE_NAME: &[u8] = b"caf\xe9.wsgi";
/// The URLs of the script: through AddHandler (the file under an Alias), and through a
/// WSGIScriptAliasMatch substituting the URL's bytes.
const HANDLER_URL: &str = "/files/d%E9j%E0/caf%E9.wsgi";
const ALIAS_MATCH_URL: &str = "/match/d%E9j%E0/caf%E9";
/// The same, to a script path relative to ServerRoot.
const RELATIVE_MATCH_URL: &str = "/relative/d%E9j%E0/caf%E9";

/// Copies tests/apps/file_name.wsgi to `apps/déjà/café.wsgi` (latin-1 bytes), readable by
/// www-data (daemons run as it), and returns its path.
fn install_script(config: &ApacheConfig) -> PathBuf {
    let dir = config.root().join("apps").join(OsStr::from_bytes(DIR_NAME));
    fs::create_dir_all(&dir).unwrap();
    for d in [dir.parent().unwrap(), &dir] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let script = dir.join(OsStr::from_bytes(FILE_NAME));
    fs::copy(repo_dir().join("tests/apps/file_name.wsgi"), &script).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    script
}

fn start(mode: Mode) -> (Apache, PathBuf) {
    let config = ApacheConfig::new(match mode {
        Mode::Daemon => "paths-daemon",
        Mode::Embedded => "paths-embedded",
    });
    let script = install_script(&config);
    let group = match mode {
        Mode::Daemon => "WSGIDaemonProcess paths processes=1 threads=4\nWSGIProcessGroup paths\n",
        // One Apache child, so every request meets the same interpreter.
        Mode::Embedded => "ServerLimit 1\nMaxRequestWorkers 16\n",
    };
    let conf = format!(
        "{group}WSGIApplicationGroup %{{GLOBAL}}\n\
         Alias /files @DIR@/apps\n\
         <Directory @DIR@/apps>\n    Require all granted\n    Options +ExecCGI\n    \
         AddHandler wsgi-script .wsgi\n</Directory>\n\
         WSGIScriptAliasMatch ^/match/([^/]+)/([^/]+)$ @DIR@/apps/$1/$2.wsgi\n\
         WSGIScriptAliasMatch ^/relative/([^/]+)/([^/]+)$ apps/$1/$2.wsgi\n"
    );
    (config.conf(&conf).start(), script)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn get(apache: &Apache, url: &str) -> serde_json::Value {
    let resp = apache.get(url);
    assert_eq!(
        resp.status,
        200,
        "{url}: {}\n{}",
        resp.text(),
        apache.error_log()
    );
    json(&resp)
}

/// Moves the file's mtime (touch-to-reload), certainly away from the one it had.
fn touch(path: &Path) {
    let file = fs::File::options().write(true).open(path).unwrap();
    let mtime = file.metadata().unwrap().modified().unwrap();
    file.set_modified(mtime + Duration::from_secs(7)).unwrap();
}

#[test]
fn a_script_file_whose_path_is_not_utf8_runs_and_reloads_in_both_modes() {
    for mode in [Mode::Daemon, Mode::Embedded] {
        let (apache, script) = start(mode);
        let raw = script.as_os_str().as_bytes();
        let first = get(&apache, HANDLER_URL);
        // __file__ gives the file's bytes back through os.fsencode; the module is named
        // after them; SCRIPT_FILENAME carries them (latin-1 str).
        assert_eq!(first["file"].str(), hex(raw), "{mode:?}");
        assert_eq!(first["module_is_md5_of_file"], true, "{mode:?}");
        assert_eq!(first["script_filename"].str(), hex(raw), "{mode:?}");
        // The URL's bytes substituted into WSGIScriptAliasMatch reach the same file: the same
        // module (one import) serves it.
        for url in [ALIAS_MATCH_URL, RELATIVE_MATCH_URL] {
            let matched = get(&apache, url);
            assert_eq!(matched["file"].str(), hex(raw), "{mode:?} {url}");
            assert_eq!(matched["import_id"], first["import_id"], "{mode:?} {url}");
        }

        // Log lines show the path lossily: U+FFFD for each byte that is not UTF-8, which
        // Apache's error log escapes as the three bytes of its UTF-8 form.
        let shown = script.display().to_string();
        assert!(shown.contains('\u{fffd}'), "{shown}");
        let shown = shown.replace('\u{fffd}', r"\xef\xbf\xbd");
        apache.wait_for_log(
            &format!("Loading WSGI script '{shown}' into "),
            Duration::from_secs(5),
        );

        // Touch-to-reload: the script is imported again, found by its bytes.
        touch(&script);
        let reloaded = get(&apache, HANDLER_URL);
        assert_ne!(
            reloaded["import_id"], first["import_id"],
            "{mode:?}: not reloaded"
        );
        assert_eq!(reloaded["file"].str(), hex(raw), "{mode:?}");
        match mode {
            // A new daemon process, which imported the script (handed over as bytes)
            // before it took over.
            Mode::Daemon => {
                assert_ne!(reloaded["pid"], first["pid"], "daemon not replaced");
                let log = apache.error_log();
                assert!(
                    log.contains("the WSGI script changed (touch-to-reload)"),
                    "{log}"
                );
                assert!(!log.contains("failed to preload"), "{log}");
            }
            // The same Apache child re-imports the script in place.
            Mode::Embedded => {
                assert_eq!(
                    reloaded["pid"], first["pid"],
                    "another Apache child answered"
                );
                apache.wait_for_log(
                    &format!("Reloading WSGI script '{shown}' into "),
                    Duration::from_secs(5),
                );
            }
        }
        let again = get(&apache, ALIAS_MATCH_URL);
        assert_eq!(again["import_id"], reloaded["import_id"], "{mode:?}");
    }
}
