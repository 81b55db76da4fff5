# mod_wsgi 6's one-shot reload hook (tests/reload_hooks.rs, as mod_wsgi's own
# triggered_reload.py fixture): reload_required(resource) returns True once when the file
# trigger/reload-trigger beside the apps directory exists, removing it first, so the request
# that asked must meet the new code (asked again, the hook answers False). "The code" is
# trigger/version as it read at import (X-Code-Version). The app echoes the request body, so
# a resent POST shows its body arrived whole; X-Pid names the process that answered. An
# import takes half a second, so a replacement daemon is slow to start and another process of
# the group is there to take a resent request first.
import os
import time

TRIGGER_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "trigger")
TRIGGER_FILE = os.path.join(TRIGGER_DIR, "reload-trigger")

with open(os.path.join(TRIGGER_DIR, "version")) as f:
    VERSION = f.read()
time.sleep(0.5)


def reload_required(resource):
    try:
        os.unlink(TRIGGER_FILE)
    except FileNotFoundError:
        return False
    return True


def application(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body))),
                              ("X-Pid", str(os.getpid())), ("X-Code-Version", VERSION)])
    return [body]
