# A routed WSGI app used by the daemon-mode tests: each path exercises one part of PEP 3333
# or of the mod_wsgi environment, and answers in a form the test can check exactly.
import hashlib
import io
import json
import os
import sys
import threading
import time


_SPIN_ENDINGS = []
_GATHER = {}
_GATHER_LOCK = threading.Lock()
_BUSY = [0]
_BUSY_LOCK = threading.Lock()

def _text(start_response, body, status="200 OK", ctype="text/plain; charset=utf-8"):
    data = body.encode("utf-8") if isinstance(body, str) else body
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]


def _query(environ):
    out = {}
    for part in environ.get("QUERY_STRING", "").split("&"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


class ClosingIterable:
    """Yields chunks slowly; close() leaves a marker so tests see it was called."""

    def __init__(self, marker, chunks, delay):
        self.marker, self.chunks, self.delay = marker, chunks, delay

    def __iter__(self):
        for i in range(self.chunks):
            yield (b"x" * 65536)
            time.sleep(self.delay)

    def close(self):
        with open(self.marker, "w") as f:
            f.write("closed")


def _mark_started(q):
    """?started=PATH: the request reached the app (tests wait for this file, not a sleep)."""
    if "started" in q:
        with open(q["started"], "w") as f:
            f.write(str(os.getpid()))


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = _query(environ)
    if path.startswith("/env"):
        env = {k: (v if isinstance(v, str) else repr(v)) for k, v in environ.items()}
        return _text(start_response, json.dumps(env, sort_keys=True), ctype="application/json")
    if path == "/input":
        stream = environ["wsgi.input"]
        mode = q.get("mode", "read")
        if mode == "read":
            data = stream.read()
        elif mode == "readn":
            n = int(q.get("n", "7"))
            parts = []
            while True:
                chunk = stream.read(n)
                if not chunk:
                    break
                parts.append(chunk)
            data = b"|".join(parts)
        elif mode == "readline":
            lines = []
            while True:
                line = stream.readline()
                if not line:
                    break
                lines.append(line)
            data = json.dumps([l.decode("latin-1") for l in lines]).encode()
        elif mode == "readline_hint":
            data = json.dumps([stream.readline(3).decode("latin-1") for _ in range(4)]).encode()
        elif mode == "readlines":
            data = json.dumps([l.decode("latin-1") for l in stream.readlines()]).encode()
        elif mode == "iter":
            data = json.dumps([l.decode("latin-1") for l in stream]).encode()
        else:
            data = b"?"
        return _text(start_response, data)
    if path == "/upload":
        h = hashlib.sha256()
        total = 0
        while True:
            chunk = environ["wsgi.input"].read(65536)
            if not chunk:
                break
            h.update(chunk)
            total += len(chunk)
        return _text(start_response, "%d %s" % (total, h.hexdigest()))
    if path == "/big":
        # ?progress=PATH: the bytes handed to the server so far are written there per block.
        n = int(q.get("n", "1048576"))
        progress = q.get("progress")
        block = bytes(range(256)) * 4096
        def gen():
            left = n
            while left > 0:
                piece = block[: min(left, len(block))]
                left -= len(piece)
                yield piece
                if progress:
                    with open(progress, "w") as f:
                        f.write(str(n - left))
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))])
        return gen()
    if path == "/biglist":
        # The whole body as one list item: the path that ends a response in one write.
        n = int(q.get("n", "65536"))
        body = (bytes(range(256)) * (n // 256 + 1))[:n]
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))])
        return [body]
    if path == "/stream":
        marker = q["marker"]
        def gen():
            yield b"first chunk\n"
            time.sleep(float(q.get("wait", "1.5")))
            with open(marker, "w") as f:
                f.write("done")
            yield b"second chunk\n"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        for i in range(int(q.get("n", "16"))):
            write(b"w%02d;" % i)
        return [b"end"]
    if path == "/busy":
        # ?ms= of this thread's CPU time in Python, with a stat() (which releases the GIL for a
        # moment, like a page's own file I/O) after every ?step= ms of it; answers how many
        # /busy requests were running when it started.
        with _BUSY_LOCK:
            _BUSY[0] += 1
            inside = _BUSY[0]
        try:
            now = time.thread_time()
            end, step = now + float(q.get("ms", "10")) / 1000, float(q.get("step", "0.2")) / 1000
            while now < end:
                pause = min(now + step, end)
                while now < pause:
                    now = time.thread_time()
                os.stat(__file__)
        finally:
            with _BUSY_LOCK:
                _BUSY[0] -= 1
        return _text(start_response, json.dumps({"inside": inside}))
    if path == "/gather":
        # Waits (GIL released) until ?n=N requests are inside at once, at most ?s= seconds:
        # each round of N requests meets here; "met" is false if the round did not fill.
        n = int(q.get("n", "2"))
        with _GATHER_LOCK:
            barrier = _GATHER.setdefault(n, threading.Barrier(n))
        try:
            barrier.wait(timeout=float(q.get("s", "10")))
            met = True
        except threading.BrokenBarrierError:
            met = False
        return _text(start_response, json.dumps({"met": met, "waiting": barrier.n_waiting}))
    if path == "/sleep":
        # Sleeps s seconds, or with ?until=PATH until that file exists (at most s seconds).
        start = time.time()
        _mark_started(q)
        end = start + float(q.get("s", "1"))
        if "until" in q:
            while time.time() < end and not os.path.exists(q["until"]):
                time.sleep(0.05)
        else:
            time.sleep(end - start)
        return _text(start_response, json.dumps({"pid": os.getpid(), "thread": threading.get_ident(),
                                                  "start": start, "end": time.time()}))
    if path == "/file":
        # wsgi.file_wrapper over this script's own bytes: from ?seek=N, truncated to ?cl=N
        # by Content-Length; ?bytesio=1 wraps a BytesIO (no descriptor: the fallback path).
        data = open(__file__, "rb").read()
        if q.get("bytesio"):
            f = io.BytesIO(data)
        else:
            f = open(__file__, "rb")
        f.seek(int(q.get("seek", "0")))
        headers = [("Content-Type", "application/octet-stream")]
        if "cl" in q:
            headers.append(("Content-Length", q["cl"]))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 4096)
    if path == "/spin":
        # Runs Python for s seconds (an async exception such as mod_wsgi.RequestTimeout
        # lands within 50 ms); records how it ended in /tmp-free module state.
        end = time.time() + float(q.get("s", "30"))
        try:
            while time.time() < end:
                time.sleep(0.05)
        except BaseException as e:
            _SPIN_ENDINGS.append(type(e).__name__)
            raise
        _SPIN_ENDINGS.append("finished")
        return _text(start_response, "spun")
    if path == "/spin-endings":
        return _text(start_response, json.dumps(_SPIN_ENDINGS))
    if path.startswith("/modwsgi-env"):
        # mod_wsgi's own environ keys with their Python types: {key: [type name, value]}.
        def plain(v):
            return list(v) if isinstance(v, tuple) else v if isinstance(v, (str, int, float)) else repr(v)
        out = {k: [type(v).__name__, plain(v)] for k, v in environ.items()
               if k.startswith(("mod_wsgi.", "apache."))}
        out["now"] = ["float", time.time()]
        out["pid"] = ["int", os.getpid()]
        return _text(start_response, json.dumps(out, sort_keys=True), ctype="application/json")
    if path == "/pid":
        return _text(start_response, str(os.getpid()))
    if path == "/ids":
        return _text(start_response, json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
                                                  "egid": os.getegid(), "groups": sorted(os.getgroups()),
                                                  "cwd": os.getcwd(), "lang": os.environ.get("LANG"),
                                                  "lc_all": os.environ.get("LC_ALL")}))
    if path == "/error":
        raise RuntimeError("probe app failure on purpose")
    if path == "/badstatus":
        start_response("abc", [])
        return [b""]
    if path == "/badheader":
        start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
        return [b""]
    if path == "/strbody":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["not bytes"]
    if path == "/nostart":
        return [b"never started"]
    if path == "/midfail":
        def gen():
            yield b"partial"
            raise ValueError("failure after the head was sent")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1000")])
        return gen()
    if path == "/print":
        print("probe stdout line one")
        print("probe stderr line", file=sys.stderr)
        environ["wsgi.errors"].write("probe wsgi.errors line\n")
        return _text(start_response, "printed")
    if path == "/modwsgi":
        import mod_wsgi
        return _text(start_response, json.dumps({
            "process_group": mod_wsgi.process_group,
            "application_group": mod_wsgi.application_group,
            "maximum_processes": mod_wsgi.maximum_processes,
            "threads_per_process": mod_wsgi.threads_per_process,
            "version": list(mod_wsgi.version),
        }))
    if path == "/close":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return ClosingIterable(q["marker"], int(q.get("chunks", "400")), float(q.get("delay", "0.01")))
    if path == "/headers":
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-One", "1"),
                                        ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                                        ("X-Twice", "first"), ("X-Twice", "second")])
        return [b"created"]
    if path == "/sys":
        return _text(start_response, json.dumps({"version": sys.version, "prefix": sys.prefix,
                                                  "executable": sys.executable, "path": sys.path}))
    if path == "/import":
        mod = __import__(q["name"])
        return _text(start_response, getattr(mod, "MARKER", mod.__name__))
    if path == "/slowpost":
        data = environ["wsgi.input"].read()
        _mark_started(q)
        time.sleep(float(q.get("s", "3")))
        return _text(start_response, "posted %d bytes" % len(data))
    if path == "/gil":
        # "disabled" only in a free-threaded process running without its GIL (3.13+).
        enabled = getattr(sys, "_is_gil_enabled", lambda: True)()
        return _text(start_response, "enabled" if enabled else "disabled")
    if path == "/burn":
        # Pure-Python CPU work (n loop turns): its wall-clock span and this thread's CPU time.
        start, cpu = time.time(), time.thread_time()
        total = 0
        for i in range(int(q.get("n", "3000000"))):
            total += i % 7
        return _text(start_response, json.dumps({
            "start": start, "end": time.time(), "cpu": time.thread_time() - cpu, "total": total}))
    if path == "/holdgil":
        _hold_gil(q.get("s", "10"))
        return _text(start_response, "released")
    if path == "/slow-finalise":
        # An object freed while Python finalises (its module is torn down): it writes the
        # names of the process' threads at that moment to the marker, then sleeps there with
        # the GIL released.
        import types
        seconds, marker = float(q.get("s", "1")), q["marker"]

        class SlowToFree:
            def __del__(self):
                names = []
                for task in os.listdir("/proc/self/task"):
                    try:
                        with open("/proc/self/task/%s/comm" % task) as f:
                            names.append(f.read().strip())
                    except OSError:
                        pass
                with open(marker, "w") as f:
                    f.write("\n".join(names))
                time.sleep(seconds)
        holder = types.ModuleType("_slow_finalise")
        holder.obj = SlowToFree()
        sys.modules["_slow_finalise"] = holder
        return _text(start_response, "registered")
    if path == "/register":
        import atexit
        import mod_wsgi
        marker = q["marker"]
        def on_shutdown(event, **kwargs):
            with open(marker + ".shutdown", "w") as f:
                f.write("shutdown callback ran")
        def at_exit():
            with open(marker + ".atexit", "w") as f:
                f.write("atexit ran")
        mod_wsgi.subscribe_shutdown(on_shutdown)
        atexit.register(at_exit)
        return _text(start_response, "registered")
    return _text(start_response, "probe app: unknown path %r" % path, status="404 Not Found")


def other(environ, start_response):
    """Reached through callable-object=other / WSGICallableObject other."""
    return _text(start_response, "the other callable")


def _hold_gil(seconds):
    """Sleeps inside a C call made through ctypes.PyDLL, which keeps the GIL held."""
    import ctypes
    ctypes.PyDLL(None).sleep(int(seconds))
