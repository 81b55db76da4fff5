# Answers with what the application sees of authentication and dispatch, and leaves a marker
# file per call so a test can tell whether the application ran at all.
import json
import os

MARKERS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "markers")


def _answer(environ, start_response, callable_name):
    if os.path.isdir(MARKERS):
        with open(os.path.join(MARKERS, "called-%d" % os.getpid()), "a") as f:
            f.write(environ.get("REQUEST_URI", "") + "\n")
    facts = {
        "callable": callable_name,
        "pid": os.getpid(),
    }
    for key in ("REMOTE_USER", "AUTH_TYPE", "HTTP_AUTHORIZATION", "mod_wsgi.process_group",
                "mod_wsgi.application_group"):
        facts[key] = environ.get(key)
    body = json.dumps(facts).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    return _answer(environ, start_response, "application")


def other(environ, start_response):
    return _answer(environ, start_response, "other")
