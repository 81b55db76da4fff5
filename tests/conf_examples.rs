//! Every configuration of the deployment guide (conf-examples/) passes `apache2 -t` with
//! mod_rwsgi, under each MPM.

mod common;

use common::{ApacheConfig, Mpm};

fn example(name: &str) -> String {
    let path = common::repo_dir().join("conf-examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // The harness loads the module under test itself; the example's own LoadModule line
    // names the installed path. Apache's own modules (the balancer front's) stay.
    text.lines()
        .filter(|l| !l.trim_start().starts_with("LoadModule rwsgi_module"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The example with /srv/webware moved into the test's own directory, where the guide's
/// working-dir layout (Static/, Scripts/WSGIScript.py) exists.
fn localized(config: &ApacheConfig, name: &str) -> String {
    let base = config.root().join("webware");
    for app in ["MyApp", "app1", "app2"] {
        std::fs::create_dir_all(base.join(app).join("Static")).unwrap();
        std::fs::create_dir_all(base.join(app).join("Scripts")).unwrap();
        std::fs::write(
            base.join(app).join("Scripts/WSGIScript.py"),
            "application = None\n",
        )
        .unwrap();
    }
    example(name).replace("/srv/webware", &base.display().to_string())
}

fn configtest(name: &str, mpm: Mpm) {
    let config = ApacheConfig::new("example").mpm(mpm);
    let text = localized(&config, name);
    let mut config = config.conf(&text);
    if name.contains("macro") {
        config = config.module("macro");
    }
    let (ok, out) = config.configtest();
    assert!(ok, "{name} under {mpm:?}: apache2 -t failed:\n{out}");
    assert!(
        out.contains("Syntax OK"),
        "{name}: no 'Syntax OK' in:\n{out}"
    );
}

#[test]
fn every_example_is_listed() {
    let mut names: Vec<String> = std::fs::read_dir(common::repo_dir().join("conf-examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conf"))
        .collect();
    names.sort();
    assert_eq!(names, EXAMPLES);
}

const EXAMPLES: [&str; 6] = [
    "01-root-with-static.conf",
    "02-app-prefix.conf",
    "03-long-options.conf",
    "04-macro-two-apps.conf",
    "05-balancer-front.conf",
    "06-balancer-backend.conf",
];

#[test]
fn examples_pass_configtest_under_event() {
    for name in EXAMPLES {
        configtest(name, Mpm::Event);
    }
}

#[test]
fn examples_pass_configtest_under_worker() {
    for name in EXAMPLES {
        configtest(name, Mpm::Worker);
    }
}

#[test]
fn examples_pass_configtest_under_prefork() {
    for name in EXAMPLES {
        configtest(name, Mpm::Prefork);
    }
}

#[test]
fn examples_keep_the_guides_directives_unchanged() {
    // The guide's WSGI lines must appear verbatim (modulo paths) in the examples.
    let long = example("03-long-options.conf");
    for line in [
        "display-name='%{GROUP}' \\",
        "lang='de_DE.UTF-8' locale='de_DE.UTF-8' \\",
        "queue-timeout=45 socket-timeout=60 connect-timeout=15 \\",
        "restart-interval=0 shutdown-timeout=5 maximum-requests=0",
    ] {
        assert!(long.contains(line), "03-long-options.conf lacks {line:?}");
    }
    assert!(example("04-macro-two-apps.conf").contains("Use WSGIProcess app2 10"));
    // Scale-out: the guide's group with processes=2 behind a health-checked balancer.
    assert!(example("06-balancer-backend.conf").contains(
        "WSGIDaemonProcess webware processes=2 threads=20 python-home=/srv/webware/venv"
    ));
    let front = example("05-balancer-front.conf");
    for needle in [
        "lbmethod=byrequests",
        "hcmethod=GET",
        "SetHandler balancer-manager",
    ] {
        assert!(
            front.contains(needle),
            "05-balancer-front.conf lacks {needle:?}"
        );
    }
}
