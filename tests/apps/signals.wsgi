# Starts a child process one way (?how=...), reports the signal mask (SigBlk) and ignored
# signals (SigIgn) the child started with, then sends it SIGTERM and reports whether it
# ended within a bounded wait. A child that did not end is killed, so none outlives a test.
import json
import os
import signal
import subprocess
import sys
import time

SLEEP = "/bin/sleep"
WAIT = 5.0


def _status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _wait_exec(pid, name):
    """Waits until `pid` runs `name` (its exec is done), so its status is the new program's."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            if _status(pid)["Name"] == name:
                return True
        except OSError:
            return False
        time.sleep(0.01)
    return False


def _reap(pid, deadline):
    """Waits for `pid` (a direct child) to end until `deadline`; True when it did."""
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _python():
    exe = os.path.join(sys.prefix, "bin", "python")
    return exe if os.path.exists(exe) else sys.executable


def _report(pid, status, terminate, wait_ended, kill):
    started = time.monotonic()
    terminate()
    ended = wait_ended(started + WAIT)
    took = time.monotonic() - started
    if not ended:
        kill()
    return {"pid": pid, "SigBlk": status["SigBlk"], "SigIgn": status["SigIgn"],
            "ended": ended, "took": round(took, 2)}


def _raw_child(pid, name):
    if name:
        _wait_exec(pid, name)
    status = _status(pid)
    return _report(pid, status,
                   lambda: os.kill(pid, signal.SIGTERM),
                   lambda deadline: _reap(pid, deadline),
                   lambda: (os.kill(pid, signal.SIGKILL), os.waitpid(pid, 0)))


def start_child(how):
    if how == "popen":
        p = subprocess.Popen([SLEEP, "30"])
        _wait_exec(p.pid, "sleep")
        status = _status(p.pid)

        def wait_ended(deadline):
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
                return True
            except subprocess.TimeoutExpired:
                return False
        return _report(p.pid, status, p.terminate, wait_ended, lambda: (p.kill(), p.wait()))
    if how == "posix_spawn":
        pid = os.posix_spawn(SLEEP, ["sleep", "30"], dict(os.environ))
        return _raw_child(pid, "sleep")
    if how == "fork_exec":
        pid = os.fork()
        if pid == 0:
            try:
                os.execv(SLEEP, ["sleep", "30"])
            finally:
                os._exit(127)
        return _raw_child(pid, "sleep")
    if how == "fork":
        pid = os.fork()
        if pid == 0:
            try:
                time.sleep(30)
            finally:
                os._exit(0)
        return _raw_child(pid, None)
    if how.startswith("mp_"):
        import multiprocessing
        ctx = multiprocessing.get_context(how[3:])
        if how != "mp_fork":
            ctx.set_executable(_python())
        p = ctx.Process(target=time.sleep, args=(30,))
        p.start()
        # The child has installed what it inherits once it runs Python: wait for its
        # interpreter (spawn, forkserver) to be up, at most WAIT.
        if how != "mp_fork":
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                if "multiprocessing" in open("/proc/%d/cmdline" % p.pid).read():
                    break
                time.sleep(0.01)
        status = _status(p.pid)

        def wait_ended(deadline):
            p.join(max(0.0, deadline - time.monotonic()))
            return p.exitcode is not None
        return _report(p.pid, status, p.terminate, wait_ended, lambda: (p.kill(), p.join()))
    raise ValueError(how)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/pid":
        body = str(os.getpid())
    elif path == "/child":
        how = environ.get("QUERY_STRING", "").partition("=")[2]
        body = json.dumps(start_child(how))
    elif path == "/mask":
        body = json.dumps({k: v for k, v in _status(os.getpid()).items()
                           if k in ("SigBlk", "SigIgn")})
    else:
        body = "not found"
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
