//! Bad configurations fail `apache2 -t` with a message that names the directive and the
//! offending token.

mod common;

use common::ApacheConfig;

struct Case {
    name: &'static str,
    conf: &'static str,
    /// Every one of these must appear in apache2 -t's output.
    expect: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "WSGIScriptAliasMatch regex that does not compile",
        conf: "WSGIScriptAliasMatch ^/app/(unclosed /srv/app.wsgi",
        expect: &[
            "WSGIScriptAliasMatch",
            "^/app/(unclosed",
            "does not compile",
        ],
    },
    Case {
        name: "non-numeric threads",
        conf: "WSGIDaemonProcess g threads=abc",
        expect: &["WSGIDaemonProcess", "threads=abc"],
    },
    Case {
        name: "unknown option",
        conf: "WSGIDaemonProcess g frobnicate=1",
        expect: &["WSGIDaemonProcess", "frobnicate=1"],
    },
    Case {
        name: "negative processes",
        conf: "WSGIDaemonProcess g processes=-2",
        expect: &["WSGIDaemonProcess", "processes=-2"],
    },
    Case {
        name: "negative timeout",
        conf: "WSGIDaemonProcess g socket-timeout=-5",
        expect: &["WSGIDaemonProcess", "socket-timeout=-5"],
    },
    Case {
        name: "asgi-blocked-loop-timeout not a number of seconds",
        conf: "WSGIDaemonProcess g asgi-blocked-loop-timeout=5s",
        expect: &[
            "WSGIDaemonProcess",
            "asgi-blocked-loop-timeout=5s",
            "expected a non-negative",
        ],
    },
    Case {
        name: "bad umask",
        conf: "WSGIDaemonProcess g umask=99x",
        expect: &["WSGIDaemonProcess", "umask=99x"],
    },
    Case {
        name: "option without value",
        conf: "WSGIDaemonProcess g threads",
        expect: &["WSGIDaemonProcess", "threads"],
    },
    Case {
        name: "empty quoted value of an option that needs one",
        conf: "WSGIDaemonProcess g home=''",
        expect: &["WSGIDaemonProcess", "'home='", "expected a value after '='"],
    },
    Case {
        name: "missing group name",
        conf: "WSGIDaemonProcess",
        expect: &["WSGIDaemonProcess"],
    },
    Case {
        name: "duplicate group",
        conf: "WSGIDaemonProcess twice threads=2\nWSGIDaemonProcess twice threads=3",
        expect: &["WSGIDaemonProcess", "twice"],
    },
    Case {
        name: "user root",
        conf: "WSGIDaemonProcess g user=root",
        expect: &["user=root"],
    },
    Case {
        name: "unknown user",
        conf: "WSGIDaemonProcess g user=no_such_user_rwsgi",
        expect: &["no_such_user_rwsgi"],
    },
    Case {
        name: "process group referenced but never defined",
        conf: "WSGIProcessGroup nowhere",
        expect: &["WSGIProcessGroup", "nowhere"],
    },
    Case {
        name: "script alias to an undefined group",
        conf: "WSGIScriptAlias /x /tmp/x.wsgi process-group=missing",
        expect: &["WSGIScriptAlias", "missing"],
    },
    Case {
        name: "handler script for an undefined group",
        conf: "WSGIHandlerScript h /tmp/h.wsgi process-group=undefinedgroup",
        expect: &[
            "WSGIHandlerScript",
            "undefinedgroup",
            "no WSGIDaemonProcess defines it",
        ],
    },
    Case {
        name: "handler script for an undefined group, in a Location",
        conf: "WSGIDaemonProcess known
<Location /h>
    \
               WSGIHandlerScript h /tmp/h.wsgi process-group=elsewhere \
               application-group=%{GLOBAL}
</Location>",
        expect: &[
            "WSGIHandlerScript",
            "'elsewhere'",
            "no WSGIDaemonProcess defines it",
        ],
    },
    Case {
        name: "script alias with an unknown option",
        conf: "WSGIScriptAlias /x /tmp/x.wsgi colour=blue",
        expect: &["WSGIScriptAlias", "colour=blue"],
    },
    Case {
        name: "script alias with one argument",
        conf: "WSGIScriptAlias /only",
        expect: &["WSGIScriptAlias"],
    },
    Case {
        name: "flag that is not On or Off",
        conf: "WSGIRestrictStdout maybe",
        expect: &["WSGIRestrictStdout", "maybe"],
    },
    Case {
        name: "unterminated quote",
        conf: "WSGIDaemonProcess g display-name='%{GROUP}",
        expect: &["WSGIDaemonProcess"],
    },
    Case {
        name: "bad trusted proxy address",
        conf: "WSGITrustedProxies 10.0.0.1 1.2.3.400",
        expect: &["WSGITrustedProxies", "1.2.3.400"],
    },
    Case {
        name: "server-only directive inside a virtual host",
        conf: "<VirtualHost 127.0.0.1:*>\nWSGIPythonHome /usr\n</VirtualHost>",
        expect: &["WSGIPythonHome", "cannot occur within"],
    },
    Case {
        name: "daemon process inside a directory",
        conf: "<Directory /tmp>\nWSGIDaemonProcess g\n</Directory>",
        expect: &["WSGIDaemonProcess", "cannot occur within"],
    },
    Case {
        name: "telemetry target that is not a unix socket",
        conf: "WSGITelemetryService udp:127.0.0.1:9000",
        expect: &[
            "WSGITelemetryService: argument 'udp:127.0.0.1:9000': expected a target of the \
             form unix:/path",
        ],
    },
    Case {
        name: "auth script at server level",
        conf: "WSGIAuthUserScript /tmp/auth.py",
        expect: &["WSGIAuthUserScript is only allowed in <Directory>"],
    },
    Case {
        name: "dispatch script with an option it does not take",
        conf: "WSGIDispatchScript /tmp/dispatch.py process-group=g",
        expect: &["WSGIDispatchScript", "'process-group=g'"],
    },
    Case {
        name: "a directive not allowed inside <WSGIInterpreterOptions>",
        conf: "<WSGIInterpreterOptions process-group=x>\n    WSGIMapHEADToGET Off\n\
               </WSGIInterpreterOptions>",
        expect: &[
            "WSGIMapHEADToGET is not allowed inside <WSGIInterpreterOptions>",
            "httpd.conf:",
        ],
    },
    Case {
        name: "a bad argument inside <WSGIInterpreterOptions>",
        conf: "<WSGIInterpreterOptions application-group=a>\n    WSGIRestrictStdout Maybe\n\
               </WSGIInterpreterOptions>",
        expect: &["WSGIRestrictStdout", "'Maybe'"],
    },
    Case {
        name: "an unknown <WSGIInterpreterOptions> selector",
        conf: "<WSGIInterpreterOptions colour=red>\n</WSGIInterpreterOptions>",
        expect: &[
            "<WSGIInterpreterOptions>",
            "'colour=red'",
            "unknown selector",
        ],
    },
    Case {
        name: "an unclosed <WSGIInterpreterOptions>",
        conf: "<WSGIInterpreterOptions process-group=x>\n    WSGIRestrictStdout On",
        expect: &["<WSGIInterpreterOptions", "was not closed"],
    },
    Case {
        name: "<WSGIInterpreterOptions> inside a virtual host",
        conf: "<VirtualHost *:80>\n<WSGIInterpreterOptions>\n</WSGIInterpreterOptions>\n\
               </VirtualHost>",
        expect: &["<WSGIInterpreterOptions", "cannot occur within"],
    },
    Case {
        name: "bad Python hash seed",
        conf: "WSGIPythonHashSeed sometimes",
        expect: &["WSGIPythonHashSeed", "'sometimes'", "random"],
    },
    Case {
        name: "bad Python optimisation level",
        conf: "WSGIPythonOptimize 3",
        expect: &["WSGIPythonOptimize", "'3'", "expected 0, 1 or 2"],
    },
    Case {
        name: "bad switch interval",
        conf: "WSGISwitchInterval -0.1",
        expect: &["WSGISwitchInterval", "'-0.1'", "positive number of seconds"],
    },
    Case {
        name: "Python start-up directive inside a virtual host",
        conf: "<VirtualHost 127.0.0.1:*>\nWSGIRestrictSignal Off\n</VirtualHost>",
        expect: &["WSGIRestrictSignal", "cannot occur within"],
    },
    Case {
        name: "WSGIHeapPolicy value that is not On or Off",
        conf: "WSGIHeapPolicy glibc",
        expect: &["WSGIHeapPolicy", "'glibc'", "expected On or Off"],
    },
    Case {
        name: "WSGIHeapPolicy inside a virtual host",
        conf: "<VirtualHost 127.0.0.1:*>\nWSGIHeapPolicy Off\n</VirtualHost>",
        expect: &["WSGIHeapPolicy", "cannot occur within"],
    },
    Case {
        name: "bad application group token",
        conf: "WSGIApplicationGroup %{NOPE}",
        expect: &["WSGIApplicationGroup", "%{NOPE}"],
    },
    Case {
        name: "interface= value that is neither wsgi nor asgi",
        conf: "WSGIDaemonProcess g\nWSGIScriptAlias /a /srv/a.py process-group=g interface=asgi3",
        expect: &[
            "WSGIScriptAlias",
            "interface=asgi3",
            "expected wsgi or asgi",
        ],
    },
    Case {
        name: "ASGI script without a daemon process group",
        conf: "WSGIScriptAlias /a /srv/a.py interface=asgi",
        expect: &["WSGIScriptAlias", "interface=asgi", "daemon mode only"],
    },
    Case {
        name: "ASGI script in embedded mode (%{GLOBAL})",
        conf: "WSGIScriptAliasMatch ^/a /srv/a.py process-group=%{GLOBAL} interface=asgi",
        expect: &[
            "WSGIScriptAliasMatch",
            "interface=asgi",
            "%{GLOBAL} is embedded mode",
        ],
    },
    Case {
        name: "ASGI handler script without a daemon process group",
        conf: "WSGIHandlerScript h /srv/h.py interface=asgi",
        expect: &["WSGIHandlerScript", "interface=asgi", "daemon mode only"],
    },
];

#[test]
fn bad_configs_fail_configtest_with_a_precise_message() {
    let mut failures = Vec::new();
    for case in CASES {
        let (ok, out) = ApacheConfig::new("bad").conf(case.conf).configtest();
        if ok {
            failures.push(format!(
                "[{}] apache2 -t accepted:\n{}\n",
                case.name, case.conf
            ));
            continue;
        }
        for needle in case.expect {
            if !out.contains(needle) {
                failures.push(format!(
                    "[{}] output lacks {needle:?}; config:\n{}\noutput:\n{out}",
                    case.name, case.conf
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn good_config_is_accepted_alongside() {
    // The same harness with a valid config passes, so failures above are the bad lines.
    let (ok, out) = ApacheConfig::new("good")
        .conf(
            "WSGIDaemonProcess g threads=2 processes=1\nWSGIProcessGroup g\n\
             WSGIScriptAlias /x /tmp/x.wsgi\nWSGIHandlerScript h /tmp/h.wsgi process-group=g",
        )
        .configtest();
    assert!(ok, "{out}");
}

#[test]
fn empty_quoted_values_pass_configtest() {
    // As mod_wsgi-express writes them; mod_wsgi accepts these options empty.
    let (ok, out) = ApacheConfig::new("empty")
        .conf(
            "WSGIPythonHome ''\nWSGIPythonPath ''\n\
             WSGIDaemonProcess g python-home='' python-path='' python-eggs='' lang='' \
             locale='' supplementary-groups='' display-name=\"\"\n\
             WSGIProcessGroup g\nWSGIScriptAlias /x /tmp/x.wsgi",
        )
        .configtest();
    assert!(ok, "{out}");
}

#[test]
fn non_utf8_arguments_are_refused_naming_the_directive() {
    let config = ApacheConfig::new("nonutf8");
    let path = config.write();
    let mut conf = std::fs::read(&path).unwrap();
    conf.extend_from_slice(b"WSGIScriptAlias /app /srv/caf\xe9.wsgi\n");
    std::fs::write(&path, conf).unwrap();
    let out = std::process::Command::new(common::APACHE_BIN)
        .arg("-t")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("WSGIScriptAlias: the arguments are not valid UTF-8")
            && text.contains("xe9.wsgi"),
        "{text}"
    );
}

#[test]
fn free_threading_on_warns_on_a_gil_build_and_off_is_silent() {
    let free_threaded = common::module_python_is_free_threaded();
    for setting in ["On", "Off"] {
        let (ok, out) = ApacheConfig::new("freethreading")
            .conf(&format!(
                "WSGIFreeThreading {setting}\nWSGIDaemonProcess g\nWSGIProcessGroup g\n\
                 WSGIScriptAlias /x /tmp/x.wsgi"
            ))
            .configtest();
        assert!(ok, "WSGIFreeThreading {setting}: {out}");
        let warned = out.contains("WSGIFreeThreading On has no effect")
            && out.contains(common::MODULE_PYTHON)
            && out.contains("--disable-gil");
        assert_eq!(
            warned,
            setting == "On" && !free_threaded,
            "WSGIFreeThreading {setting}, free-threaded build: {free_threaded}: {out}"
        );
    }
    let (ok, out) = ApacheConfig::new("freethreading-bad")
        .conf("WSGIFreeThreading maybe")
        .configtest();
    assert!(
        !ok && out.contains("WSGIFreeThreading") && out.contains("maybe"),
        "{out}"
    );
}

/// WSGIPerInterpreterGIL (issue 32): Off (mod_wsgi's default) is accepted; On, at the top
/// level or in a <WSGIInterpreterOptions> section, is refused by configtest on Python < 3.12
/// naming the embedded Python's version (PEP 684), and accepted on 3.12+ (the own-GIL
/// runtime, tests/subinterpreters.rs). A bad token is named with the directive.
#[test]
fn per_interpreter_gil_on_is_refused_before_python_3_12_naming_the_version_and_accepted_after() {
    let site = "WSGIDaemonProcess g\nWSGIProcessGroup g\nWSGIApplicationGroup app\n\
                WSGIScriptAlias /x /tmp/x.wsgi";
    let (ok, out) = ApacheConfig::new("owngil-off")
        .conf(&format!("WSGIPerInterpreterGIL Off\n{site}"))
        .configtest();
    assert!(ok, "WSGIPerInterpreterGIL Off: {out}");

    let version = common::MODULE_PYTHON_VERSION;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let before_3_12 = (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < (3, 12);
    for (name, conf) in [
        ("owngil-on", "WSGIPerInterpreterGIL On"),
        (
            "owngil-section",
            "<WSGIInterpreterOptions application-group=app>\n    WSGIPerInterpreterGIL On\n\
             </WSGIInterpreterOptions>",
        ),
    ] {
        let (ok, out) = ApacheConfig::new(name)
            .conf(&format!("{conf}\n{site}"))
            .configtest();
        if before_3_12 {
            assert!(
                !ok && out.contains("WSGIPerInterpreterGIL On needs Python 3.12 or later")
                    && out.contains(&format!("Python {version}")),
                "{conf} with Python {version}: {out}"
            );
        } else {
            assert!(ok, "{conf} with Python {version}: {out}");
        }
    }

    let (ok, out) = ApacheConfig::new("owngil-bad")
        .conf("WSGIPerInterpreterGIL Maybe")
        .configtest();
    assert!(
        !ok && out.contains("WSGIPerInterpreterGIL") && out.contains("'Maybe'"),
        "{out}"
    );
}

/// The first pyenv Python whose "major.minor" differs from the module's, with that version
/// (configtest-only tests: daemons as www-data cannot read /root).
fn another_python() -> Option<(std::path::PathBuf, String)> {
    ["3.12.1", "3.13.0"].iter().find_map(|v| {
        let python = std::path::PathBuf::from(format!("/root/.pyenv/versions/{v}/bin/python3"));
        let minor = v.rsplit_once('.').map(|(mm, _)| mm.to_string())?;
        (python.exists() && minor != common::MODULE_PYTHON_VERSION).then_some((python, minor))
    })
}

/// Issue 35: a daemon group whose venv was made with another Python than the module's runs
/// on a daemon host for that Python from the venv (`pip install mod_rwsgi` puts one in its
/// bin/). Without one, `apache2 -t` fails naming the group, the venv, its Python, the
/// module's and the command that installs it; a host there that embeds yet another Python is
/// named; one that embeds the venv's Python (its `--probe` says so) passes.
/// `apache2 -t` of `config` fails, and its output has a line with `code`, returned.
fn refused_with(config: &ApacheConfig, code: &str) -> String {
    let (ok, out) = config.configtest();
    assert!(!ok, "apache2 -t passed:\n{out}");
    out.lines()
        .find(|l| l.contains(code))
        .unwrap_or_else(|| panic!("no {code} line:\n{out}"))
        .to_string()
}

#[test]
fn a_venv_of_another_python_needs_its_own_daemon_host() {
    let Some((python, version)) = another_python() else {
        eprintln!(
            "skipped: no pyenv Python other than {}",
            common::MODULE_PYTHON_VERSION
        );
        return;
    };
    let config = ApacheConfig::new("venv-other-python");
    let venv = config.root().join("venv");
    common::run(
        std::process::Command::new(&python)
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv),
    );
    let config = config.conf(&format!(
        "WSGIDaemonProcess other threads=1 python-home={}\n",
        venv.display()
    ));
    let line = refused_with(&config, "RW0296:");
    for part in [
        "WSGIDaemonProcess other".to_string(),
        format!("'{}'", venv.display()),
        format!("Python {version}"),
        format!("embeds Python {}", common::MODULE_PYTHON_VERSION),
        format!("{}/bin/pip install mod_rwsgi==", venv.display()),
    ] {
        assert!(line.contains(&part), "{part:?} not in: {line}");
    }
    // A host there for yet another Python is refused, naming what it embeds.
    let host = venv.join("bin/rwsgi-daemon");
    let fake_host = |python: &str| {
        std::fs::write(
            &host,
            format!(
                "#!/bin/sh\necho 'rwsgi-daemon 0.1.0 plan-version={} python={python} \
                 executable=/x/bin/python'\n",
                mod_rwsgi::daemon::plan_wire::PLAN_VERSION
            ),
        )
        .unwrap();
        std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    };
    fake_host("3.99");
    let (ok, out) = config.configtest();
    assert!(
        !ok && out.contains("embeds Python 3.99"),
        "a host of another Python:\n{out}"
    );
    // One for the venv's Python: the group is served by it, and apache2 -t passes.
    fake_host(&version);
    let (ok, out) = config.configtest();
    assert!(ok, "with a host for Python {version} in the venv:\n{out}");
    // WSGIFreeThreading On for that group cannot take effect on its Python with the GIL.
    let (ok, out) = config
        .conf("<WSGIInterpreterOptions process-group=other>\nWSGIFreeThreading On\n</WSGIInterpreterOptions>")
        .configtest();
    let line = out.lines().find(|l| l.contains("RW0320:"));
    assert!(
        ok && line.is_some_and(
            |l| l.contains("group 'other'") && l.contains(&format!("Python {version},"))
        ),
        "WSGIFreeThreading On for a group on Python {version}:\n{out}"
    );
}

/// Issue 35, free-threaded Python: pyvenv.cfg's version does not say "t", but a venv of a
/// free-threaded build (lib/python3.14t) is another Python than the module's build with the
/// GIL of the same version (and the reverse): `apache2 -t` fails naming "3.14t" until the
/// venv has a host of that very build; a host of the other build of the version is refused.
/// The venv is made by hand (no free-threaded CPython here): only its files are read.
#[test]
fn a_venv_of_the_other_build_of_the_modules_python_needs_its_own_daemon_host() {
    let version = common::MODULE_PYTHON_VERSION;
    let module_ft = common::module_python_is_free_threaded();
    let tag = |ft: bool| format!("{version}{}", if ft { "t" } else { "" });
    let config = ApacheConfig::new("venv-free-threaded");
    let venv = config.root().join("venv");
    std::fs::create_dir_all(venv.join("bin")).unwrap();
    std::fs::create_dir_all(venv.join(format!("lib/python{}/site-packages", tag(!module_ft))))
        .unwrap();
    std::fs::write(
        venv.join("pyvenv.cfg"),
        format!(
            "home = /opt/py/bin\ninclude-system-site-packages = false\nversion = {version}.1\n"
        ),
    )
    .unwrap();
    let config = config.conf(&format!(
        "WSGIDaemonProcess ft threads=2 python-home={}\n",
        venv.display()
    ));
    let line = refused_with(&config, "RW0296:");
    for part in [
        "WSGIDaemonProcess ft".to_string(),
        format!("virtual environment of Python {},", tag(!module_ft)),
        format!("embeds Python {}", tag(module_ft)),
        "free-threaded".to_string(),
        format!("{}/bin/pip install mod_rwsgi==", venv.display()),
    ] {
        assert!(line.contains(&part), "{part:?} not in: {line}");
    }
    let host = venv.join("bin/rwsgi-daemon");
    let fake_host = |free_threaded: bool| {
        std::fs::write(
            &host,
            format!(
                "#!/bin/sh\necho 'rwsgi-daemon 0.1.0 plan-version={} python={version} \
                 free-threaded={} executable=/x/bin/python'\n",
                mod_rwsgi::daemon::plan_wire::PLAN_VERSION,
                if free_threaded { "yes" } else { "no" }
            ),
        )
        .unwrap();
        std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    };
    // A host of the module's build of that version does not fit the venv.
    fake_host(module_ft);
    let (ok, out) = config.configtest();
    assert!(
        !ok && out.contains(&format!("embeds Python {})", tag(module_ft))),
        "a host of the other build:\n{out}"
    );
    // One of the venv's build does.
    fake_host(!module_ft);
    let (ok, out) = config.configtest();
    assert!(ok, "with a host for Python {}:\n{out}", tag(!module_ft));
    // WSGIFreeThreading On for the group takes effect in a free-threaded venv's host (no
    // warning), not in one with the GIL (RW0320).
    let (ok, out) = config
        .conf("<WSGIInterpreterOptions process-group=ft>\nWSGIFreeThreading On\n</WSGIInterpreterOptions>")
        .configtest();
    assert!(ok, "{out}");
    let warned = out.contains("has no effect");
    assert_eq!(
        warned, module_ft,
        "WSGIFreeThreading On in the venv's host:\n{out}"
    );
}
