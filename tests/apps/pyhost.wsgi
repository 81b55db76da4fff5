# mod_wsgi's Python-side behaviour as an application sees it: signal.signal restriction,
# sys.stdin restriction, the standard streams and wsgi.errors as text wrappers over binary
# writers, mod_wsgi.LogHandler, mod_wsgi.RequestTimeout and the Python start-up settings.
# Each path answers in a form the test can check exactly (tests/pyhost.rs).
import atexit
import io
import json
import logging
import os
import signal
import sys
import threading

import mod_wsgi


def _text(start_response, body, status="200 OK", ctype="text/plain; charset=utf-8"):
    data = body.encode("utf-8") if isinstance(body, str) else body
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]


def _on_sigusr2(signum, frame):
    pass


def register_handlers():
    """Registers handlers as applications do at import; returns what each call gave."""
    results = {}
    for name in ("SIGTERM", "SIGUSR2"):
        try:
            current = signal.getsignal(getattr(signal, name))
            previous = signal.signal(getattr(signal, name), _on_sigusr2)
            if previous is current:
                results[name] = "returned the current handler"
            else:
                results[name] = "returned " + repr(previous)
        except Exception as e:
            results[name] = "%s: %s" % (type(e).__name__, e)
    results["SIGUSR2 now ours"] = signal.getsignal(signal.SIGUSR2) is _on_sigusr2
    try:
        # What getsignal gives for a handler Python did not install (the daemon's: None)
        # must go back in as code that saves and restores handlers does.
        signal.signal(signal.SIGUSR2, signal.getsignal(signal.SIGUSR2))
        results["put back"] = "accepted"
    except Exception as e:
        results["put back"] = type(e).__name__
    for key, args in (("bad handler", (signal.SIGUSR2, "not callable")),
                      ("bad signal", (9999, _on_sigusr2))):
        try:
            signal.signal(*args)
            results[key] = "accepted"
        except Exception as e:
            results[key] = type(e).__name__
    return results


def try_stdin():
    out = []
    for op in (lambda: sys.stdin.read(), lambda: sys.stdin.readline(),
               lambda: [line for line in sys.stdin], lambda: input()):
        try:
            op()
            out.append("no error")
        except OSError as e:
            out.append("OSError: %s" % e)
        except Exception as e:
            out.append("%s: %s" % (type(e).__name__, e))
    return out


def write_streams(environ):
    errors = environ["wsgi.errors"]
    kinds = {name: type(s).__name__ for name, s in
             (("stdout", sys.stdout), ("stderr", sys.stderr), ("wsgi.errors", errors))}
    kinds["buffers"] = [type(s.buffer).__name__ for s in (sys.stdout, sys.stderr, errors)]
    errors.buffer.write(b"pyhost errors bytes line\n")
    errors.buffer.write(bytearray(b"pyhost errors bytearray line\n"))
    errors.buffer.write(memoryview(b"pyhost errors memoryview line\n"))
    errors.buffer.writelines([b"pyhost errors wl-bytes\n", bytearray(b"pyhost errors wl-bytearray\n"),
                              memoryview(b"pyhost errors wl-memoryview\n")])
    errors.writelines(["pyhost errors text-a\n", "pyhost errors text-b\n"])
    sys.stdout.buffer.write(b"pyhost stdout bytes line\n")
    sys.stderr.buffer.write(memoryview(b"pyhost stderr memoryview line\n"))
    print("pyhost print line")
    print("pyhost \u00e9t\u00e9 line", file=sys.stderr)
    try:
        errors.buffer.write("text into the binary buffer")
        kinds["str to buffer"] = "accepted"
    except TypeError as e:
        kinds["str to buffer"] = "TypeError: %s" % e

    def background():
        sys.stderr.write("pyhost background stderr line\n")
        errors.write("pyhost background wsgi.errors line\n")
    t = threading.Thread(target=background)
    t.start()
    t.join()
    return kinds


_handler_logger = None


def log_levels():
    global _handler_logger
    if _handler_logger is None:
        logger = logging.getLogger("pyhost")
        logger.addHandler(mod_wsgi.LogHandler())
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        _handler_logger = logger
    logger = _handler_logger
    logger.debug("pyhost-lh debug record")
    logger.info("pyhost-lh info record")
    logger.warning("pyhost-lh warning record")
    logger.error("pyhost-lh error record")
    logger.critical("pyhost-lh critical record")
    logger.log(25, "pyhost-lh level-25 record")
    print("pyhost-lh print line")
    return {"LogHandler is a logging.Handler": issubclass(mod_wsgi.LogHandler, logging.Handler),
            "from import": __import__("mod_wsgi").LogHandler is mod_wsgi.LogHandler}


def settings():
    def docstring():
        """present"""
    try:
        assert False
        asserts = "skipped"
    except AssertionError:
        asserts = "raised"
    return {
        "optimize": sys.flags.optimize,
        "debug": __debug__,
        "asserts": asserts,
        "docstring": docstring.__doc__,
        "dont_write_bytecode": sys.dont_write_bytecode,
        "warnoptions": sys.warnoptions,
        "hash_randomization": sys.flags.hash_randomization,
        "hash": hash("mod_rwsgi hash probe"),
        "egg_cache": os.environ.get("PYTHON_EGG_CACHE"),
        "switch_interval": sys.getswitchinterval(),
        "pid": os.getpid(),
    }


# Process shutdown: what runs depends on WSGIDestroyInterpreter.
@mod_wsgi.subscribe_shutdown
def _shutdown(event, **kwargs):
    print("pyhost shutdown callback ran (%s)" % event)


@atexit.register
def _atexit():
    print("pyhost atexit handler ran")


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/signal":
        return _text(start_response, json.dumps(register_handlers()), ctype="application/json")
    if path == "/stdin":
        return _text(start_response, json.dumps(try_stdin()), ctype="application/json")
    if path == "/streams":
        return _text(start_response, json.dumps(write_streams(environ)), ctype="application/json")
    if path == "/log-levels":
        return _text(start_response, json.dumps(log_levels()), ctype="application/json")
    if path == "/settings":
        return _text(start_response, json.dumps(settings()), ctype="application/json")
    if path == "/request-timeout":
        raise mod_wsgi.RequestTimeout("the application gave up on this request")
    if path == "/request-timeout-after-head":
        def body():
            yield b"partial"
            raise mod_wsgi.RequestTimeout("gave up mid-body")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return body()
    if path == "/pid":
        return _text(start_response, str(os.getpid()))
    return _text(start_response, "not found: " + path, status="404 Not Found")
