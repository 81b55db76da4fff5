# The app of tests/phase_scripts.rs. As a WSGIHandlerScript it answers through
# handle_request (never `application`, which would return 418); as a WSGIScriptAlias
# target through `application`. /status/NNN answers NNN with a body the app wrote.
import os


def _describe(environ, via):
    keys = (
        "SCRIPT_FILENAME", "SCRIPT_NAME", "PATH_INFO", "REQUEST_METHOD",
        "mod_wsgi.handler_script", "mod_wsgi.request_handler",
        "mod_wsgi.process_group", "mod_wsgi.application_group",
        "mod_wsgi.callable_object",
    )
    lines = ["via=" + via, "pid=%d" % os.getpid()]
    lines += ["%s=%s" % (k, environ.get(k, "<missing>")) for k in keys]
    return ("\n".join(lines) + "\n").encode("latin-1")


def _answer(environ, start_response, via):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/status/"):
        code = path[len("/status/"):]
        body = ("app body for status %s\n" % code).encode()
        start_response("%s From The App" % code, [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("X-From-App", "yes"),
        ])
        return [body]
    body = _describe(environ, via)
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def handle_request(environ, start_response):
    return _answer(environ, start_response, "handle_request")


def application(environ, start_response):
    if environ.get("mod_wsgi.handler_script"):
        start_response("418 Wrong Callable", [("Content-Type", "text/plain")])
        return [b"application called for a handler script\n"]
    return _answer(environ, start_response, "application")
