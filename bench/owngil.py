#!/usr/bin/env python3
"""WSGIPerInterpreterGIL benchmark (issue 32): CPU-bound requests in application groups of ONE
daemon process (threads=2), with the per-interpreter GIL On and Off, in one interleaved run.

Rows (each a bounded, fixed-duration run of closed-loop keep-alive clients):
  one group, c1      one client on group `a`: one core's worth
  one group, c2      two clients on group `a`: both requests need a's GIL
  two groups, c2     one client on `a`, one on `b`: with On each has its own GIL
The figure of the issue is "two groups, c2" over "one group, c1" with On (>= 1.6x on 2 cores).
"daemon CPU cores busy" is the daemon process's CPU time over the wall time of the row: above
1 only when two threads run Python at once (a shared GIL caps it near 1), whatever else loads
the machine (which lowers req/s for every row). "app thread CPU cores" is the same from the
requests' own `time.thread_time()` inside the CPU page: it can exceed 1 only if two requests'
Python ran at the same moment, and it is below 1 whenever the machine gives the daemon less
than a core, whatever the GIL setting.

Needs Python 3.12+ in the module (configtest refuses On before), so on this machine it runs in
the sid chroot of `make test-pythons`: `make bench-owngil` (tests/pythons.sh --bench-owngil).
Standalone: bench/owngil.py --so build/mod_rwsgi.so [--seconds 10] [--rounds 3].
"""
import argparse
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

MODULES = '/usr/lib/apache2/modules'
APACHE = shutil.which('apache2') or '/usr/sbin/apache2'

# About 20 ms of pure-Python work per request (no I/O, no GIL release).
APP = '''
import os
import time

def application(environ, start_response):
    cpu = time.thread_time()
    total = 0
    for i in range(%d):
        total += i * i %% 7
    body = ("%%d %%d %%f" %% (os.getpid(), total, time.thread_time() - cpu)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def conf(root, port, so, own_gil, loops):
    with open(os.path.join(root, 'apps', 'cpu.wsgi'), 'w') as f:
        f.write(APP % loops)
    return f'''\
ServerRoot "{root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{root}/httpd.pid"
ErrorLog "{root}/error.log"
LogLevel info
DefaultRuntimeDir "{root}/run"
Mutex file:{root}/run default
User www-data
Group www-data
KeepAlive On
MaxKeepAliveRequests 0
LoadModule mpm_event_module {MODULES}/mod_mpm_event.so
StartServers 1
ServerLimit 1
ThreadsPerChild 16
MaxRequestWorkers 16
LoadModule authz_core_module {MODULES}/mod_authz_core.so
LoadModule alias_module {MODULES}/mod_alias.so
LoadModule rwsgi_module {so}
WSGISocketPrefix "{root}/run/wsgi"
WSGIPerInterpreterGIL {"On" if own_gil else "Off"}
WSGIDaemonProcess cpu processes=1 threads=2
WSGIProcessGroup cpu
WSGIScriptAlias /a "{root}/apps/cpu.wsgi" application-group=a
WSGIScriptAlias /b "{root}/apps/cpu.wsgi" application-group=b
<Directory "{root}/apps">
    Require all granted
</Directory>
'''


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Apache:
    def __init__(self, so, own_gil, loops):
        self.root = tempfile.mkdtemp(prefix='rwsgi-owngil-bench-')
        os.chmod(self.root, 0o755)
        for d in ('apps', 'run'):
            os.mkdir(os.path.join(self.root, d))
            os.chmod(os.path.join(self.root, d), 0o777)
        shutil.copy(so, os.path.join(self.root, 'mod_rwsgi.so'))
        self.port = free_port()
        with open(os.path.join(self.root, 'httpd.conf'), 'w') as f:
            f.write(conf(self.root, self.port, os.path.join(self.root, 'mod_rwsgi.so'),
                         own_gil, loops))
        self.proc = subprocess.Popen([APACHE, '-f', os.path.join(self.root, 'httpd.conf'),
                                      '-D', 'FOREGROUND'])
        deadline = time.monotonic() + 20
        while True:
            try:
                for path in ('/a', '/b'):  # creates both interpreters
                    if get(self.port, path) != 200:
                        raise OSError('not ready')
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    sys.exit('Apache did not start:\n' + self.log())
                time.sleep(0.1)

    def log(self):
        try:
            with open(os.path.join(self.root, 'error.log')) as f:
                return f.read()
        except OSError:
            return ''

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def get(port, path, body=None):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    try:
        c.request('GET', path)
        r = c.getresponse()
        data = r.read()
        if body is not None:
            body.append(data)
        return r.status
    finally:
        c.close()


def cpu_seconds(pid):
    """User + system CPU time of process `pid` (all its threads) so far."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def load(port, paths, seconds):
    """One closed-loop keep-alive client per path for `seconds`: requests per second."""
    counts = [0] * len(paths)
    app_cpu = [0.0] * len(paths)
    errors = []
    stop_at = time.monotonic() + seconds

    def client(i, path):
        c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
        try:
            while time.monotonic() < stop_at:
                c.request('GET', path)
                r = c.getresponse()
                body = r.read()
                if r.status != 200:
                    errors.append(r.status)
                    return
                counts[i] += 1
                app_cpu[i] += float(body.split()[2])
        except OSError as e:
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(i, p)) for i, p in enumerate(paths)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    if errors:
        raise RuntimeError(f'requests failed: {errors[:3]}')
    return sum(counts), sum(app_cpu), time.monotonic() - started


ROWS = [('one group, c1', ['/a']), ('one group, c2', ['/a', '/a']),
        ('two groups, c2', ['/a', '/b'])]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--so', default='build/mod_rwsgi.so')
    ap.add_argument('--seconds', type=float, default=10.0)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--loops', type=int, default=400_000, help='loop count of the CPU page')
    args = ap.parse_args()
    so = os.path.abspath(args.so)
    results = {}
    for rnd in range(args.rounds):
        # Interleaved: On and Off alternate, rows rotate, so load changes hit both alike.
        for own_gil in ((True, False) if rnd % 2 == 0 else (False, True)):
            apache = Apache(so, own_gil, args.loops)
            try:
                body = []
                get(apache.port, '/a', body)
                daemon = int(body[0].split()[0])
                for name, paths in ROWS[rnd % 3:] + ROWS[:rnd % 3]:
                    load(apache.port, paths, 1.0)  # warm-up
                    cpu = cpu_seconds(daemon)
                    count, app_cpu, wall = load(apache.port, paths, args.seconds)
                    cores = (cpu_seconds(daemon) - cpu) / wall
                    results.setdefault((own_gil, name), []).append(
                        (count / wall, cores, app_cpu / wall))
                log = apache.log()
            finally:
                apache.stop()
            if own_gil and 'with its own GIL' not in log:
                sys.exit('WSGIPerInterpreterGIL On did not make own-GIL interpreters:\n' + log)
    print(f'Python {sys.version.split()[0]} client, {os.cpu_count()} CPUs, '
          f'{args.rounds} rounds x {args.seconds:g} s, CPU page {args.loops} loops')
    print(f'load average at the end: {os.getloadavg()[0]:.1f}')
    print('| WSGIPerInterpreterGIL | workload | req/s (median) | rounds | x one group c1 '
          '| daemon CPU cores busy | app thread CPU cores |')
    print('|---|---|---:|---|---:|---:|---:|')
    mid = args.rounds // 2
    for own_gil in (True, False):
        base = sorted(r[0] for r in results[(own_gil, 'one group, c1')])[mid]
        for name, _ in ROWS:
            rows = results[(own_gil, name)]
            rates = sorted(r[0] for r in rows)
            cores = sorted(r[1] for r in rows)[mid]
            app = sorted(r[2] for r in rows)[mid]
            print(f'| {"On" if own_gil else "Off"} | {name} | {rates[mid]:.1f} | '
                  f'{", ".join(f"{r:.1f}" for r in rates)} | {rates[mid] / base:.2f} '
                  f'| {cores:.2f} | {app:.2f} |')


if __name__ == '__main__':
    main()
