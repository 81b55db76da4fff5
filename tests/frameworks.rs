//! Flask and Django apps (tests/apps/flask_app.wsgi, tests/apps/django_app.wsgi, run from the
//! pinned test venv) served side by side in daemon mode, so the module is not tuned to one
//! framework: page renders with links through the mount point, and form POSTs (Django's
//! with its CSRF token).

mod common;

use common::http::{Json, Response, hidden_field, json};
use common::{Apache, ApacheConfig, set_cookie, test_venv};

fn start() -> Apache {
    let venv = test_venv();
    let config = ApacheConfig::new("frameworks");
    let flask = config.install_app("flask_app.wsgi");
    let django = config.install_app("django_app.wsgi");
    let conf = format!(
        "WSGIDaemonProcess flask threads=4 python-home={venv}\n\
         WSGIDaemonProcess django threads=4 python-home={venv}\n\
         WSGIScriptAlias /flask {flask} process-group=flask\n\
         WSGIScriptAlias /django {django} process-group=django\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
        venv = venv.display(),
        flask = flask.display(),
        django = django.display(),
    );
    config.conf(&conf).start()
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// Fails with the error log unless `resp` is a 200.
fn assert_ok(apache: &Apache, resp: &Response) {
    assert_with_log!(
        apache,
        resp.status == 200,
        "{} {}",
        resp.status,
        resp.text()
    );
}

#[test]
fn flask_and_django_render_pages_and_accept_form_posts() {
    let apache = start();

    // Flask: a Jinja page whose url_for links include SCRIPT_NAME, then its form's POST.
    let page = apache.get("/flask/");
    assert_ok(&apache, &page);
    let text = page.text();
    assert!(text.contains("<h1>Flask on mod_rwsgi</h1>"), "{text}");
    assert!(text.contains("Hello from Flask 3.0.3 at /flask/"), "{text}");
    assert!(text.contains("action=\"/flask/greet\""), "{text}");
    let posted = apache.request("POST", "/flask/greet", &[FORM], b"name=Ada+Lovelace");
    assert_ok(&apache, &posted);
    let answer = json(&posted);
    assert_eq!(answer["greeting"].str(), "Hello, Ada Lovelace!", "{answer}");
    assert_eq!(answer["back"].str(), "/flask/", "{answer}");
    assert_eq!(answer["multithread"], true, "{answer}");
    let empty = apache.request("POST", "/flask/greet", &[FORM], b"");
    assert_eq!(empty.status, 400, "{}", empty.text());

    // Django: the page sets the CSRF cookie and embeds the form token; the POST carries both.
    let page = apache.get("/django/");
    assert_ok(&apache, &page);
    let text = page.text();
    assert!(text.contains("<h1>Django 4.2.30</h1>"), "{text}");
    assert!(text.contains("action=\"/django/greet\""), "{text}");
    let cookie = set_cookie(&page, "csrftoken")
        .unwrap_or_else(|| panic!("no csrftoken cookie: {:?}", page.headers));
    let token = hidden_field(&text, "csrfmiddlewaretoken");
    let body = format!("csrfmiddlewaretoken={token}&name=Grace");
    let posted = apache.request(
        "POST",
        "/django/greet",
        &[FORM, ("Cookie", &cookie)],
        body.as_bytes(),
    );
    assert_ok(&apache, &posted);
    let answer = json(&posted);
    assert_eq!(answer["greeting"].str(), "Hello, Grace!", "{answer}");
    assert_eq!(answer["back"].str(), "/django/", "{answer}");
    // Without the token Django's CSRF protection refuses the POST.
    let refused = apache.request("POST", "/django/greet", &[FORM], b"name=Mallory");
    assert_eq!(refused.status, 403, "{}", refused.text());
    let wrong = apache.request(
        "POST",
        "/django/greet",
        &[FORM, ("Cookie", &cookie)],
        b"csrfmiddlewaretoken=forged&name=Mallory",
    );
    assert_eq!(wrong.status, 403, "{}", wrong.text());
}
