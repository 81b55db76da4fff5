# The app of tests/daemon_options.rs: each path shows, from inside the daemon, the effect of
# one WSGIDaemonProcess option (resource limits, priority, thread stacks, environment,
# header and response buffering), in a form the test can check exactly.
import ctypes
import importlib
import json
import os
import resource
import sys
import time

_LEAKED = []
_libc = ctypes.CDLL(None)
_libc.pthread_self.restype = ctypes.c_ulong


def _query(environ):
    out = {}
    for part in environ.get("QUERY_STRING", "").split("&"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


def _json(start_response, value, status="200 OK"):
    data = json.dumps(value).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]


def _limit(which):
    soft, hard = resource.getrlimit(which)
    return [soft, hard]


def _thread_stack_size():
    """The stack size of the calling thread, from pthread_getattr_np."""
    attr = ctypes.create_string_buffer(128)  # pthread_attr_t is 56 bytes on x86_64
    if _libc.pthread_getattr_np(ctypes.c_ulong(_libc.pthread_self()), attr) != 0:
        return -1
    addr, size = ctypes.c_void_p(), ctypes.c_size_t()
    _libc.pthread_attr_getstack(attr, ctypes.byref(addr), ctypes.byref(size))
    _libc.pthread_attr_destroy(attr)
    return size.value


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = _query(environ)
    if path == "/facts":
        mask = os.umask(0)
        os.umask(mask)
        imported = {}
        for name in [n for n in q.get("import", "").split(",") if n]:
            imported[name] = getattr(importlib.import_module(name), "VALUE", None)
        return _json(start_response, {
            "uid": os.getuid(),
            "gid": os.getgid(),
            "groups": sorted(os.getgroups()),
            "umask": mask,
            "cwd": os.getcwd(),
            "prefix": sys.prefix,
            "sys_path": sys.path,
            "imported": imported,
            "script_name": environ.get("SCRIPT_NAME"),
            "path_info": environ.get("PATH_INFO"),
            "pid": os.getpid(),
            "cpu": _limit(resource.RLIMIT_CPU),
            "data": _limit(resource.RLIMIT_DATA),
            "as": _limit(resource.RLIMIT_AS),
            "priority": os.getpriority(os.PRIO_PROCESS, 0),
            "stack": _thread_stack_size(),
            "env": {k: os.environ.get(k) for k in q.get("env", "").split(",") if k},
        })
    if path == "/alloc":
        # A MemoryError here must become a 500 with its traceback, not a dead daemon.
        block = b"x" * (int(q["mb"]) * 1024 * 1024)
        return _json(start_response, {"pid": os.getpid(), "allocated": len(block)})
    if path == "/leak":
        _LEAKED.append(b"x" * (int(q["mb"]) * 1024 * 1024))
        return _json(start_response, {"pid": os.getpid(), "blocks": len(_LEAKED)})
    if path == "/burn":
        # Spends CPU seconds (not wall seconds) in this thread.
        until = time.process_time() + float(q["s"])
        n = 0
        while time.process_time() < until:
            n += 1
        return _json(start_response, {"pid": os.getpid(), "loops": n})
    if path == "/header":
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("X-Big", "h" * int(q["n"]))])
        return [b"header sent\n"]
    if path == "/stream":
        # Two pieces, `gap` seconds apart: when the first reaches the client shows
        # response-flush-delay at work.
        def pieces():
            yield b"first;"
            time.sleep(float(q["gap"]))
            yield b"second;"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return pieces()
    if path == "/big":
        # One list item of `mb` MiB: no flush between its body frames.
        data = b"b" * (int(q["mb"]) * 1024 * 1024)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(data)))])
        return [data]
    if path == "/method":
        # The method shows in a header: a HEAD response has no body to carry it.
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("X-Request-Method", environ["REQUEST_METHOD"])])
        return [b"body for a GET\n"]
    return _json(start_response, {"pid": os.getpid()})
