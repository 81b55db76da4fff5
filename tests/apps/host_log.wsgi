# Writes to the error log every way an application can: wsgi.errors, sys.stderr, the
# process' stderr descriptor itself, an exception's traceback; `?crash` writes and then
# dies by SIGKILL. tests/daemon_host.rs checks a daemon host's lines reach Apache's logger.
import os
import signal
import sys


def application(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    if query == "crash":
        os.write(2, b"HOSTAPP raw last words\n")
        environ["wsgi.errors"].write("HOSTAPP last words\n")
        environ["wsgi.errors"].flush()
        os.kill(os.getpid(), signal.SIGKILL)
    environ["wsgi.errors"].write("HOSTAPP via wsgi.errors\n")
    environ["wsgi.errors"].flush()
    print("HOSTAPP via print", file=sys.stderr, flush=True)
    os.write(2, b"HOSTAPP raw on fd 2\n")
    if query == "boom":
        raise RuntimeError("HOSTAPP boom")
    body = b"%d" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
