# The app of tests/express_options.rs: served as a WSGI script and, by module name, with
# rwsgi-express --application-type module. Each path answers one question about how it runs.
import json
import os
import sys
import time

try:
    import mod_wsgi
except ImportError:  # imported outside Apache
    mod_wsgi = None


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream()
    if path == "/status":
        # The application's own error response (for --error-override).
        status = environ.get("QUERY_STRING") or "404"
        body = b"the application's own " + status.encode()
        start_response(status + " Whatever", [("Content-Type", "text/plain"),
                                              ("Content-Length", str(len(body)))])
        return [body]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](open(__file__, "rb"))
    if path == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or "5"))
        body = b"slept"
    else:
        info = {
            "environ": {k: v for k, v in environ.items() if isinstance(v, str)},
            "url_scheme": environ["wsgi.url_scheme"],
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "cwd": os.getcwd(),
            "sys_path": sys.path,
            "callable": "application",
            "maximum_processes": getattr(mod_wsgi, "maximum_processes", None),
            "threads_per_process": getattr(mod_wsgi, "threads_per_process", None),
            "marker": MARKER,
            "warnoptions": sys.warnoptions,
            "os_environ": {k: os.environ.get(k) for k in ("LANG", "LC_ALL", "PYTHON_EGG_CACHE")},
            "switch_interval": sys.getswitchinterval(),
            "server_metrics": _server_metrics_summary(),
        }
        body = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body))),
                              ("X-Method", environ["REQUEST_METHOD"])])
    return [body]


def _server_metrics_summary():
    """What mod_wsgi.server_metrics() shows, in short (None when the gate is closed)."""
    metrics = mod_wsgi.server_metrics() if mod_wsgi else None
    if metrics is None:
        return None
    requests = [w["request"] for p in metrics["processes"] for w in p["workers"]
                if w["status"] == "W"]
    return {"server_limit": metrics["server_limit"], "requests": requests}


def _stream():
    for i in range(4):
        yield ("chunk %d\n" % i).encode()
        time.sleep(0.4)


def other(environ, start_response):
    """The same app under another name, for --callable-object."""
    body = b"other callable"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


MARKER = "one"


def paste_factory(global_config, **settings):
    """Paste Deploy's app factory (tests/apps/express_paste.ini)."""
    greeting = settings["greeting"].encode()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(greeting)))])
        return [greeting]

    return app
