//! Loading scripts: load failures, reload hooks, application groups, preload.

use super::*;

#[test]
fn callable_object_and_missing_callable() {
    let host = host();
    let path = script(
        "callable",
        r#"
def app2(environ, start_response):
    start_response('200 OK', [])
    return [environ['mod_wsgi.callable_object'].encode()]
"#,
    );
    let env = env(&[]);
    let mut io = FakeIo::new();
    let spec2 = RequestSpec {
        callable: "app2",
        ..spec(&path, &env)
    };
    assert_eq!(
        host.handle(&spec2, &mut io),
        Outcome::Completed,
        "{}",
        dump(&path)
    );
    assert_eq!(io.body_text(), "app2");
    let mut io = FakeIo::new();
    assert_eq!(
        host.handle(&spec(&path, &env), &mut io),
        Outcome::LoadFailed
    );
    assert!(io.events.is_empty());
    let msg = format!("callable 'application' not found in WSGI script '{path}'");
    assert_eq!(logs_with(&msg).len(), 1, "{}", dump(&path));
}

#[test]
fn load_failure_is_logged_backed_off_and_fixed_by_touching() {
    let host = host();
    let path = script("loadfail", "raise ImportError('load-marker')\n");
    for attempt in 1..=2 {
        let mut io = FakeIo::new();
        assert_eq!(request(&host, &path, "/", &mut io), Outcome::LoadFailed);
        assert!(io.events.is_empty());
        let logged = logs_with(&format!("Unable to execute Python script file '{path}'."));
        // The second request comes within the back-off: the script is not run again.
        assert_eq!(logged.len(), 1, "attempt {attempt}");
        assert!(
            logged[0].1.contains("Traceback") && logged[0].1.contains("ImportError: load-marker")
        );
    }
    let backed_off = logs_with(&format!(
        "WSGI script '{path}' failed to load; not retrying"
    ));
    assert_eq!(backed_off.len(), 1, "{}", dump(&path));
    // That the back-off ends by itself is `loader`'s unit test (a clock passed in); here a
    // fixed and touched script is loaded at once, within the back-off.
    rewrite(
        &path,
        "def application(e, sr):\n    sr('200 OK', [])\n    return [b'ok']\n",
        1_000_000,
    );
    assert_ok(&host, &path, "/", &mut FakeIo::new());
}

/// A script with mod_wsgi's reload hooks: it counts its imports, records what its
/// `reload_required` was called with, and is told by the request path what to do.
const HOOKS_SCRIPT: &str = r#"
import builtins
_counts = builtins.__dict__.setdefault('_rwsgi_hook_imports', {})
_counts[__file__] = IMPORTS = _counts.get(__file__, 0) + 1
MODE = []
SEEN = []
def reload_required(resource):
    SEEN.append(resource)
    if MODE == ['raise']:
        raise ValueError('hook-failure-marker')
    return MODE == ['yes']
def application(environ, start_response):
    path = environ['PATH_INFO']
    if path == '/drop-mtime':
        del globals()['__mtime__']
    elif path in ('/yes', '/raise'):
        MODE[:] = [path[1:]]
    mtime = globals().get('__mtime__')
    start_response('200 OK', [])
    return [('%d|%s|%r|%s' % (IMPORTS, type(mtime).__name__, mtime, SEEN[-1] if SEEN else '')).encode()]
"#;

#[test]
fn reload_hooks_mtime_and_reload_required_in_place() {
    let host = host();
    let path = script("hooks", HOOKS_SCRIPT);
    let get = |info: &str| {
        let mut io = FakeIo::new();
        assert_eq!(
            request(&host, &path, info, &mut io),
            Outcome::Completed,
            "{}",
            dump(&path)
        );
        let body = io.body_text();
        let parts: Vec<String> = body.split('|').map(str::to_string).collect();
        (
            parts[0].parse::<u32>().unwrap(),
            parts[1].clone(),
            parts[2].clone(),
            parts[3].clone(),
        )
    };
    // __mtime__ is the file's mtime in µs, an int, as mod_wsgi sets it.
    let file_us = std::fs::metadata(&path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let (imports, ty, mtime, _) = get("/");
    assert_eq!(
        (imports, ty.as_str(), mtime),
        (1, "int", file_us.to_string())
    );
    assert_eq!(
        logs_with(&format!(
            "Loading WSGI script '{path}' into main interpreter of daemon process 'pytest'."
        ))
        .len(),
        1
    );
    // reload_required is called with the request's file, the script itself.
    assert_eq!(get("/").3, path);
    // Removing __mtime__ forces a reload.
    assert_eq!(get("/drop-mtime").0, 1);
    assert_eq!(get("/").0, 2, "{}", dump(&path));
    assert_eq!(
        logs_with(&format!(
            "Reloading WSGI script '{path}' into main interpreter of daemon process 'pytest'."
        ))
        .len(),
        1
    );
    assert_eq!(
        logs_with(&format!(
            "WSGI script '{path}' will be re-imported: its module no longer has __mtime__"
        ))
        .len(),
        1
    );
    // reload_required() returning True forces a reload.
    assert_eq!(get("/yes").0, 2);
    assert_eq!(get("/").0, 3);
    assert_eq!(
        logs_with("will be re-imported: its reload_required() returned a true value").len(),
        1
    );
    // An exception in it is logged with its traceback, and does not reload.
    assert_eq!(get("/raise").0, 3);
    assert_eq!(get("/").0, 3);
    let logged = logs_with(&format!(
        "[script {path}] ValueError exception raised processing WSGI script '{path}' for main \
         interpreter of daemon process 'pytest'."
    ));
    assert_eq!(logged.len(), 1, "{}", dump(&path));
    assert_eq!(logged[0].0, Level::Error);
    assert!(
        logged[0].1.contains("Traceback (most recent call last)"),
        "{}",
        logged[0].1
    );
    assert!(
        logged[0].1.contains("ValueError: hook-failure-marker"),
        "{}",
        logged[0].1
    );
}

#[test]
fn exception_lines_name_the_type_as_mod_wsgi() {
    let host = host();
    let path = script(
        "typename",
        r#"
import json
class AppError(Exception):
    pass
def application(environ, start_response):
    kind = environ['PATH_INFO']
    if kind == '/app':
        raise AppError('x')
    if kind == '/json':
        json.loads('{')
    int('not a number')
"#,
    );
    for (info, name) in [
        ("/app", "AppError"),
        ("/json", "JSONDecodeError"),
        ("/int", "ValueError"),
    ] {
        let mut io = FakeIo::new();
        request(&host, &path, info, &mut io);
        let needle = format!("] {name} exception raised processing WSGI script '{path}'");
        assert_eq!(logs_with(&needle).len(), 1, "{name}: {}", dump(&path));
    }
}

#[test]
fn reload_hooks_ask_a_daemon_to_replace_its_process() {
    let host = host();
    let path = script("hooks_daemon", HOOKS_SCRIPT);
    let env = env(&[("PATH_INFO", b"/yes")]);
    let daemon = RequestSpec {
        script_reloading: ScriptReloading::ReplaceProcess,
        ..spec(&path, &env)
    };
    let mut io = FakeIo::new();
    assert_eq!(host.handle(&daemon, &mut io), Outcome::Completed);
    assert!(io.body_text().starts_with("1|int|"), "{}", io.body_text());
    // The next request is not run: the daemon is to be replaced.
    let mut io = FakeIo::new();
    assert_eq!(host.handle(&daemon, &mut io), Outcome::ReloadRequired);
    assert!(io.events.is_empty(), "nothing may be sent: {:?}", io.events);
    assert_eq!(
        logs_with(&format!(
            "Forcing restart of daemon process 'pytest' due to modification of script '{path}'. \
             Reason: its reload_required() returned a true value."
        ))
        .len(),
        1,
        "{}",
        dump(&path)
    );
    // WSGIScriptReloading Off: no check at all.
    let off = RequestSpec {
        script_reloading: ScriptReloading::Off,
        ..daemon
    };
    let mut io = FakeIo::new();
    assert_eq!(host.handle(&off, &mut io), Outcome::Completed);
}

#[test]
fn reload_on_mtime_inequality_and_script_changed() {
    let host = host();
    let v =
        |n: u32| format!("def application(e, sr):\n    sr('200 OK', [])\n    return [b'v{n}']\n");
    let path = script("reload", &v(1));
    let other = script("reload_other", &v(7));
    let mut io = FakeIo::new();
    assert_eq!(request(&host, &path, "/", &mut io), Outcome::Completed);
    assert_eq!(io.body_text(), "v1");
    assert_eq!(
        request(&host, &other, "/", &mut FakeIo::new()),
        Outcome::Completed
    );
    assert!(!host.script_changed(Path::new(&path), "", 0));
    // An *older* mtime counts too: mod_wsgi tests for inequality.
    rewrite(&path, &v(2), 1_000);
    assert!(host.script_changed(Path::new(&path), "", 0));
    // Only the script asked about is checked: the other one, and one never loaded, did
    // not change; nor did this one in another application group, where it is not loaded.
    assert!(!host.script_changed(Path::new(&other), "", 0));
    assert!(!host.script_changed(Path::new("/nonexistent/never-loaded.wsgi"), "", 0));
    assert!(!host.script_changed(Path::new(&path), "another-group", 0));
    let env = env(&[]);
    let mut io = FakeIo::new();
    let no_reload = RequestSpec {
        script_reloading: ScriptReloading::Off,
        ..spec(&path, &env)
    };
    assert_eq!(host.handle(&no_reload, &mut io), Outcome::Completed);
    assert_eq!(io.body_text(), "v1");
    let mut io = FakeIo::new();
    assert_eq!(request(&host, &path, "/", &mut io), Outcome::Completed);
    assert_eq!(io.body_text(), "v2");
    assert!(!host.script_changed(Path::new(&path), "", 0));
}

#[test]
fn an_mtime_apache_saw_settles_the_reload_check_only_when_it_is_the_loaded_ones() {
    let host = host();
    let v =
        |n: u32| format!("def application(e, sr):\n    sr('200 OK', [])\n    return [b'v{n}']\n");
    let path = script("reload_seen", &v(1));
    let mtime_us = |path: &str| -> u64 {
        let t = std::fs::metadata(path).unwrap().modified().unwrap();
        u64::try_from(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_micros(),
        )
        .unwrap()
    };
    let loaded = mtime_us(&path);
    assert_eq!(
        request(&host, &path, "/", &mut FakeIo::new()),
        Outcome::Completed
    );
    assert!(!host.script_changed(Path::new(&path), "", loaded));
    // Changed on disk: an mtime Apache saw that is not the loaded one leads to the daemon's
    // own stat, which finds the change.
    rewrite(&path, &v(2), 1_000);
    let now = mtime_us(&path);
    assert!(host.script_changed(Path::new(&path), "", now));
    assert!(host.script_changed(Path::new(&path), "", 0));
    let mut io = FakeIo::new();
    assert_eq!(request(&host, &path, "/", &mut io), Outcome::Completed);
    assert_eq!(io.body_text(), "v2");
    // An mtime Apache saw before the change (a resent request) is not a change by itself:
    // the stat finds the loaded version.
    assert!(!host.script_changed(Path::new(&path), "", loaded));
    assert!(!host.script_changed(Path::new(&path), "", now));
}

#[test]
fn application_groups_get_separate_modules_in_their_own_sub_interpreters() {
    let host = host();
    let path = script(
        "groups",
        r#"
hits = []
def application(environ, start_response):
    hits.append(1)
    start_response('200 OK', [])
    return [b'%d %s' % (len(hits), __name__.encode())]
"#,
    );
    let env = env(&[]);
    let mut bodies = Vec::new();
    for group in ["grp-test-a", "grp-test-b", "grp-test-a", "grp-test-c"] {
        let mut io = FakeIo::new();
        let s = RequestSpec {
            app_group: group,
            ..spec(&path, &env)
        };
        assert_eq!(
            host.handle(&s, &mut io),
            Outcome::Completed,
            "{}",
            dump(&path)
        );
        bodies.push(io.body_text());
    }
    let split = |b: &String| {
        b.split_once(' ')
            .map(|(n, m)| (n.to_string(), m.to_string()))
            .unwrap()
    };
    let (a1, b1, a2, c1) = (
        split(&bodies[0]),
        split(&bodies[1]),
        split(&bodies[2]),
        split(&bodies[3]),
    );
    assert_eq!(
        (a1.0.as_str(), b1.0.as_str(), a2.0.as_str(), c1.0.as_str()),
        ("1", "1", "2", "1")
    );
    assert_eq!(a1.1, a2.1);
    assert_ne!(a1.1, b1.1);
    assert!(a1.1.starts_with("_mod_wsgi_") && b1.1.starts_with("_mod_wsgi_"));
    // This test process is a daemon process ('pytest'): each named group has its own
    // sub-interpreter, made once, so nothing is shared and nothing is noted.
    let notices: Vec<_> = logs_with("more than one application group")
        .into_iter()
        .filter(|(_, m)| m.contains("'grp-test-"))
        .collect();
    assert!(notices.is_empty(), "{notices:?}");
    for group in ["grp-test-a", "grp-test-b", "grp-test-c"] {
        let created = logs_with(&format!("Created Python sub-interpreter '{group}'"));
        assert_eq!(created.len(), 1, "{group}: {created:?}");
        assert_eq!(created[0].0, Level::Info);
    }
}

#[test]
fn concurrent_first_requests_load_the_script_once() {
    let host = host();
    let marker = tmpdir().join("load-once-marker");
    let _ = std::fs::remove_file(&marker);
    let path = script(
        "loadonce",
        &format!(
            "import time\ntime.sleep(0.3)\nwith open({:?}, 'a') as f:\n    f.write('x')\n\
             def application(e, sr):\n    sr('200 OK', [])\n    return [b'ok']\n",
            marker.to_str().unwrap()
        ),
    );
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert_ok(&host, &path, "/", &mut FakeIo::new()));
        }
    });
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "x");
}

#[test]
fn preload_success_and_failure() {
    let host = host();
    let good = script(
        "preload_good",
        "def application(e, sr):\n    sr('200 OK', [])\n    return [b'ok']\n",
    );
    host.preload(Path::new(&good), "").expect("preload");
    assert_ok(&host, &good, "/", &mut FakeIo::new());
    assert_eq!(
        logs_with(&format!(
            "Loading WSGI script '{good}' into main interpreter of daemon process 'pytest'."
        ))
        .len(),
        1,
        "loaded twice"
    );
    let bad = script("preload_bad", "1/0\n");
    let err = host.preload(Path::new(&bad), "").unwrap_err();
    assert!(
        err.contains("ZeroDivisionError") && err.contains(&bad),
        "{err}"
    );
}

/// A script whose file name is not UTF-8 (latin-1 é, as a URL's `%E9` reaches Apache's
/// r->filename) loads by its bytes: `__file__` and the `reload_required` argument are
/// `os.fsdecode` of them (so `os.fsencode` gives them back), the module name is the md5 of
/// them, log lines show the name lossily, and a rewritten file is re-imported in place.
#[test]
fn a_script_whose_name_is_not_utf8_loads_and_reloads_by_its_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let host = host();
    let path = tmpdir().join(std::ffi::OsStr::from_bytes(b"caf\xe9-loading.wsgi"));
    let source = |generation: &str| {
        format!(
            r#"
import hashlib, os
GENERATION = {generation:?}
SEEN = []
def reload_required(resource):
    SEEN.append(os.fsencode(resource))
    return False
def application(environ, start_response):
    raw = os.fsencode(__file__)
    assert __name__ == '_mod_wsgi_' + hashlib.md5(raw).hexdigest(), __name__
    start_response('200 OK', [])
    return [GENERATION.encode(), b'|', raw, b'|', SEEN[-1] if SEEN else b'-']
"#
        )
    };
    std::fs::write(&path, source("one")).unwrap();
    let env = env(&[]);
    let spec = RequestSpec {
        script_path: &path,
        ..spec("", &env)
    };
    let shown = path.display().to_string();
    assert!(shown.contains('\u{fffd}'), "{shown}");
    let serve = || {
        let mut io = FakeIo::new();
        assert_eq!(
            host.handle(&spec, &mut io),
            Outcome::Completed,
            "{}",
            dump(&shown)
        );
        io.body()
    };
    let raw = path.as_os_str().as_bytes();
    // Each request asks reload_required first, with the path as os.fsdecode shows it.
    assert_eq!(serve(), [b"one|", raw, b"|", raw].concat());
    assert_eq!(serve(), [b"one|", raw, b"|", raw].concat());
    assert_eq!(
        logs_with(&format!("Loading WSGI script '{shown}' into ")).len(),
        1,
        "{}",
        dump(&shown)
    );
    // Touched (a new mtime): re-imported in place, found by its bytes again (the fresh
    // module is not asked again for this request).
    std::fs::write(&path, source("two")).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
        .unwrap();
    assert_eq!(serve(), [b"two|", raw, b"|-"].concat());
    assert_eq!(
        logs_with(&format!("Reloading WSGI script '{shown}' into ")).len(),
        1,
        "{}",
        dump(&shown)
    );
}

/// A script whose file name is not UTF-8 that fails: its traceback (which names the file as
/// `os.fsdecode` shows it, with a lone surrogate) is still logged, the name shown lossily.
#[test]
fn a_failing_script_whose_name_is_not_utf8_logs_its_traceback() {
    use std::os::unix::ffi::OsStrExt;
    let host = host();
    let path = tmpdir().join(std::ffi::OsStr::from_bytes(b"caf\xe9-raises.wsgi"));
    std::fs::write(&path, "raise ValueError('raised-by-caf\\xe9')\n").unwrap();
    let env = env(&[]);
    let spec = RequestSpec {
        script_path: &path,
        ..spec("", &env)
    };
    let mut io = FakeIo::new();
    assert_eq!(host.handle(&spec, &mut io), Outcome::LoadFailed);
    let shown = path.display().to_string();
    let logged = logs_with(&format!("Unable to execute Python script file '{shown}'."));
    assert_eq!(logged.len(), 1, "{}", dump(&shown));
    let text = &logged[0].1;
    assert!(
        text.contains("Traceback") && text.contains("ValueError: raised-by-caf\u{e9}"),
        "{text}"
    );
    assert!(text.contains("caf\u{fffd}-raises.wsgi\", line 1"), "{text}");
}

#[test]
fn a_thread_back_from_a_sub_interpreter_attaches_to_the_main_interpreter_again() {
    // On 3.12+ entering a sub-interpreter binds the thread's PyGILState state to it; leaving
    // must bind the main interpreter's again, or the thread's next `Python::attach` (and its
    // next %{GLOBAL} request) would run in the sub-interpreter.
    let host = host();
    let path = script(
        "which-interp",
        r#"
import mod_wsgi
def application(environ, start_response):
    start_response('200 OK', [])
    return [b'[' + mod_wsgi.application_group.encode() + b']']
"#,
    );
    let env = env(&[]);
    let std_thread = std::thread::spawn(move || {
        let mut answers = Vec::new();
        for group in ["grp-bind", "", "grp-bind", ""] {
            let mut io = FakeIo::new();
            let s = RequestSpec {
                app_group: group,
                ..spec(&path, &env)
            };
            assert_eq!(host.handle(&s, &mut io), Outcome::Completed);
            answers.push(io.body_text());
            let outside = Python::attach(|py| -> PyResult<String> {
                py.import("mod_wsgi")?
                    .getattr("application_group")?
                    .extract()
            });
            answers.push(format!("attach:{}", outside.unwrap()));
        }
        answers
    });
    let answers = std_thread.join().unwrap();
    assert_eq!(
        answers,
        [
            "[grp-bind]",
            "attach:",
            "[]",
            "attach:",
            "[grp-bind]",
            "attach:",
            "[]",
            "attach:"
        ]
    );
}

#[test]
fn each_sub_interpreter_has_its_own_mod_wsgi_module_and_event_subscribers() {
    let host = host();
    let path = script(
        "events-per-interp",
        r#"
import mod_wsgi
seen = []
if mod_wsgi.application_group == 'grp-events':
    mod_wsgi.subscribe_events(lambda name, **event: seen.append(name))
def application(environ, start_response):
    start_response('200 OK', [])
    return [('%s %d %s' % (mod_wsgi.application_group, len(mod_wsgi.event_callbacks),
                           ','.join(seen))).encode()]
"#,
    );
    let env = env(&[]);
    let mut answers = Vec::new();
    for group in ["grp-events", "grp-quiet", "grp-events"] {
        let mut io = FakeIo::new();
        let s = RequestSpec {
            app_group: group,
            ..spec(&path, &env)
        };
        assert_eq!(host.handle(&s, &mut io), Outcome::Completed);
        answers.push(io.body_text());
    }
    assert!(
        answers[0].starts_with("grp-events 1 request_started"),
        "{answers:?}"
    );
    assert_eq!(answers[1], "grp-quiet 0 ", "no subscriber of another group");
    assert!(
        answers[2].starts_with("grp-events 1 request_started")
            && answers[2].contains("request_finished"),
        "{answers:?}"
    );
}

/// A thread without the GIL is not attached while another thread holds it (on Python 3.11
/// the current thread state is the holder's, not per thread): a script module released there
/// is leaked, never decref'd without the GIL (pyo3 aborts the process on that).
#[test]
fn a_thread_is_attached_only_while_it_holds_the_gil_itself() {
    init();
    let (inside_tx, inside_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        crate::python::subinterp::attach_main(|_py| {
            assert!(crate::python::subinterp::this_thread_is_attached());
            inside_tx.send(()).unwrap();
            // Holds the GIL (no detach) until the other thread has looked.
            done_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        })
    });
    inside_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let seen = crate::python::subinterp::this_thread_is_attached();
    done_tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(!seen, "a thread without the GIL counted as attached");
}
