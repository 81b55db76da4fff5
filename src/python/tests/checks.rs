//! Pure checks: Python version and venv checks, status and header validation.

use super::*;

fn settings_311() -> InterpreterSettings {
    InterpreterSettings {
        build_executable: "/usr/bin/python3".into(),
        build_version: "3.11".into(),
        ..InterpreterSettings::default()
    }
}

#[test]
fn venv_version_mismatch_names_both_versions_and_paths() {
    let venv = tmpdir().join("venv39");
    std::fs::create_dir_all(&venv).unwrap();
    std::fs::write(
        venv.join("pyvenv.cfg"),
        "home = /opt/py39/bin\ninclude-system-site-packages = false\nversion = 3.9.18\n",
    )
    .unwrap();
    let err = check_venv(&venv, &settings_311()).unwrap_err();
    for needle in [
        "3.9",
        "3.11",
        venv.to_str().unwrap(),
        "/opt/py39/bin",
        "/usr/bin/python3",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
    let ok = tmpdir().join("venv311");
    std::fs::create_dir_all(&ok).unwrap();
    std::fs::write(
        ok.join("pyvenv.cfg"),
        "home = /usr/bin\nversion_info = 3.11.2.final.0\n",
    )
    .unwrap();
    assert_eq!(check_venv(&ok, &settings_311()), Ok(()));
    // No version line: inferred from lib/pythonX.Y.
    let old = tmpdir().join("venv-old");
    std::fs::create_dir_all(old.join("lib/python3.8")).unwrap();
    std::fs::write(old.join("pyvenv.cfg"), "home = /opt/py38/bin\n").unwrap();
    assert!(
        check_venv(&old, &settings_311())
            .unwrap_err()
            .contains("3.8")
    );
}

#[test]
fn runtime_version_check() {
    assert_eq!(
        major_minor("3.11.2 (main, Mar 13 2023, 12:18:29) [GCC 12.2.0]").as_deref(),
        Some("3.11")
    );
    assert_eq!(major_minor("3.9.18").as_deref(), Some("3.9"));
    assert_eq!(major_minor("garbage"), None);
    assert_eq!(
        check_runtime_version("3.11.7 (main)", &settings_311()),
        Ok(())
    );
    let err = check_runtime_version("3.12.1 (main)", &settings_311()).unwrap_err();
    assert!(
        err.contains("3.12") && err.contains("3.11") && err.contains("/usr/bin/python3"),
        "{err}"
    );
}

#[test]
fn status_and_header_validation_rules() {
    let msg = |r: Result<(), start_response::Invalid>| r.err().map(|e| e.message);
    let status = |s: &[u8]| validate_status(s).err().map(|e| e.message);
    assert_eq!(validate_status(b"200 OK"), Ok((200, b"OK".to_vec())));
    assert_eq!(validate_status(b"404 "), Ok((404, Vec::new())));
    // A bare code, as mod_wsgi 6 (HTTP/2 has no reason phrase).
    assert_eq!(validate_status(b"200"), Ok((200, Vec::new())));
    assert_eq!(
        status(b"20x OK"),
        Some("status code must be a 3 digit integer")
    );
    assert_eq!(
        status(b"2000 OK"),
        Some("status code must be a 3 digit integer")
    );
    assert_eq!(
        status(b"000 Zero"),
        Some("status code must be between 100 and 999")
    );
    assert_eq!(status(b"200OK"), Some("no space following status code"));
    assert_eq!(
        status(b"200 a\x7fb"),
        Some("control character in status reason phrase")
    );
    assert_eq!(validate_header_value(b"a\tb"), Ok(()));
    assert_eq!(validate_header_name(b"X-Ok"), Ok(()));
    assert_eq!(msg(validate_header_name(b"")), Some("header name is empty"));
    assert!(validate_header_name(b"").unwrap_err().bare);
    assert_eq!(
        msg(validate_header_name(b"X\tY")),
        Some("control character in header name")
    );
    assert_eq!(
        msg(validate_header_name(b"X Y")),
        Some("space character in header name")
    );
    assert_eq!(
        msg(validate_header_name(b"X:Y")),
        Some("invalid character in header name")
    );
    for v in [&b"a\nb"[..], b"a\rb"] {
        assert_eq!(
            msg(validate_header_value(v)),
            Some("carriage return/line feed character in header value")
        );
    }
    assert_eq!(
        msg(validate_header_value(b"a\x01")),
        Some("control character in header value")
    );
}

#[test]
fn a_body_short_of_its_content_length_is_a_failure_except_for_head() {
    let host = host();
    let path = script(
        "shortbody",
        "def application(environ, start_response):\n    \
         start_response('200 OK', [('Content-Length', '10')])\n    \
         return [b'abc'] if environ['PATH_INFO'] == '/short' else [b'0123456789']\n",
    );
    let mut io = FakeIo::new();
    assert_eq!(
        request(&host, &path, "/short", &mut io),
        Outcome::AppError { head_sent: true },
        "{}",
        dump(&path)
    );
    assert_eq!(io.body_text(), "abc");
    assert_eq!(
        logs_with("sent 3 body bytes of the 10 its Content-Length promised").len(),
        1
    );
    assert_ok_full(&host, &path, "/full");
    // HEAD: no body is expected whatever Content-Length says.
    let env = env(&[("PATH_INFO", b"/short"), ("REQUEST_METHOD", b"HEAD")]);
    let mut io = FakeIo::new();
    assert_eq!(host.handle(&spec(&path, &env), &mut io), Outcome::Completed);
}

fn assert_ok_full(host: &AppHost, path: &str, path_info: &str) {
    let mut io = FakeIo::new();
    assert_eq!(request(host, path, path_info, &mut io), Outcome::Completed);
    assert_eq!(io.body_text(), "0123456789");
}

#[test]
fn a_venv_of_the_other_build_of_the_same_version_is_refused_naming_it() {
    // A daemon (host) refuses a venv of its version made by the other build: a free-threaded
    // one (lib/python3.11t) beside a build with the GIL, or the reverse.
    let ft = crate::python::FREE_THREADED_BUILD;
    let venv = tmpdir().join("venv311-other-build");
    let lib = format!("lib/python3.11{}", if ft { "" } else { "t" });
    std::fs::create_dir_all(venv.join(lib)).unwrap();
    std::fs::write(
        venv.join("pyvenv.cfg"),
        "home = /opt/bin\nversion = 3.11.2\n",
    )
    .unwrap();
    let err = check_venv(&venv, &settings_311()).unwrap_err();
    let (theirs, ours) = if ft {
        ("3.11", "3.11t")
    } else {
        ("3.11t", "3.11")
    };
    for needle in [
        format!("created with Python {theirs} "),
        format!("embeds Python {ours};"),
        format!("{}/bin/pip install mod_rwsgi==", venv.display()),
    ] {
        assert!(err.contains(&needle), "{needle} missing from: {err}");
    }
}
