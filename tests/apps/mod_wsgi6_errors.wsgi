# mod_wsgi 6's exception handling as an application sees it and as the error log shows it
# (tests/mod_wsgi6_errors.rs): RequestTimeout injected by interrupt-timeout or raised by the
# app, caught with the class imported from mod_wsgi; SystemExit and other exceptions.
import os

from mod_wsgi import RequestTimeout


def _query(environ):
    out = {}
    for part in environ.get("QUERY_STRING", "").split("&"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


def _mark(environ, text):
    marker = _query(environ).get("marker")
    if marker:
        # The test's markers directory is beside the apps directory this script is in.
        markers = os.path.join(os.path.dirname(os.path.dirname(__file__)), "markers")
        with open(os.path.join(markers, marker), "w") as f:
            f.write(text)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/fast":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fast ok %d" % os.getpid()]
    if path == "/slow":
        # A pure-Python loop: an injected exception lands at its next bytecode.
        while True:
            pass
    if path == "/catch":
        try:
            while True:
                pass
        except RequestTimeout as e:
            _mark(environ, "caught %s" % type(e).__name__)
            raise
    if path == "/raise-request-timeout":
        raise RequestTimeout("raise-request-timeout-msg")
    if path == "/raise-request-timeout-after-head":
        def body():
            yield b"first"
            raise RequestTimeout("raise-request-timeout-after-head-msg")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body()
    if path == "/raise-systemexit":
        raise SystemExit("raise-systemexit-msg")
    if path == "/raise-systemexit-midway":
        def body():
            yield b"before-exit"
            raise SystemExit("raise-systemexit-midway-msg")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body()
    if path == "/raise-first":
        raise RuntimeError("raise-first-boom")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"unknown path"]
