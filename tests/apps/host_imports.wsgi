# Imports C extension modules of the standard library (lib-dynload) and of the venv and uses
# three of them: tests/daemon_host.rs checks they load in a daemon host whose libpython is
# linked statically (they find the Python C API the host exports).
import importlib

NAMES = ("ssl", "_ctypes", "sqlite3", "_hashlib", "pyexpat", "zlib", "markupsafe._speedups")


def application(environ, start_response):
    failed = []
    for name in NAMES:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - reported in the body
            failed.append("%s: %r" % (name, e))
    if not failed:
        import ctypes
        import sqlite3
        import ssl
        if ctypes.CDLL(None).getpid() <= 0:
            failed.append("ctypes: getpid() failed")
        if sqlite3.connect(":memory:").execute("select 1 + 1").fetchone() != (2,):
            failed.append("sqlite3: wrong answer")
        ssl.create_default_context()
    body = ("\n".join(failed) or "all loaded").encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
