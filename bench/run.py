#!/usr/bin/python3
"""`make bench`: static files vs mod_wsgi vs mod_rwsgi vs granian, gunicorn, uvicorn, with wrk.

Starts Apache servers from the same configuration: static files (the limit), mod_wsgi and
mod_rwsgi in daemon mode, and both in embedded mode (skipped, with a note, if mod_rwsgi
cannot serve in embedded mode), and Apache with mod_proxy_http in front of granian and of
gunicorn ("granian proxy", "gunicorn proxy": the same app, one backend process with 15
threads, as a mod_rwsgi daemon; skipped, with a note, if BENCH_VENV has neither), and
"mod_rwsgi exec": the same mod_rwsgi with every daemon exec'd from the daemon host
rwsgi-daemon instead of forked (issue 35). Checks every response body byte for byte, then runs each
workload against each server, interleaved, BENCH_REPS times, and prints medians:
requests/s, p50/p99 latency, server CPU per request (utime+stime of the whole Apache
process tree, daemons included, plus the proxied backend's process tree, from /proc), PSS of
those trees, and the ratios to static, to mod_wsgi and (mod_rwsgi daemon mode) to granian.
The ASGI workloads (issue 33, bench_asgi.py) run on mod_rwsgi in daemon mode
(interface=asgi, the same daemon group), on "granian proxy" (a second granian, in ASGI mode)
and on "uvicorn proxy" (uvicorn, ASGI only), each one process behind mod_proxy_http; the
WebSocket echo workload (round trips/s) runs bench/ws_client.py instead of wrk, with
`upgrade=websocket` on the proxies' ProxyPass.

Environment: BENCH_DURATION (seconds per run, default 5), BENCH_REPS (default 3),
BENCH_QUICK=1 (1 s, 1 rep: a smoke run), BENCH_ONLY=hello,write (only those workloads),
BENCH_VARIANTS=static,mod_rwsgi (only those servers), BENCH_BASELINE_SO=path (adds that
build as "mod_rwsgi base" and "mod_rwsgi base emb", for before/after), RWSGI_HOST (the daemon
host of "mod_rwsgi exec", every daemon exec'd from it; default rwsgi-daemon next to RWSGI_SO),
BENCH_THREADS=4,20
(the default thread-count sweep; empty for none), BENCH_RECORD_METRICS=1 (the app calls
mod_wsgi.start_recording_metrics() at import), RWSGI_SO (default build/mod_rwsgi.so),
BENCH_VENV (the venv with granian, gunicorn and uvicorn, bench/requirements.txt; default
build/bench-venv), BENCH_WS_PROCS (client processes of the WebSocket echo, default 2). Run as root (Apache drops to www-data). Python 3 stdlib only.
"""

import argparse
import os
import random
import resource
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
APACHE = '/usr/sbin/apache2'
MODULES = '/usr/lib/apache2/modules'
MOD_WSGI_SO = os.path.join(MODULES, 'mod_wsgi.so')
WRK = shutil.which('wrk') or '/usr/bin/wrk'
CLK_TCK = os.sysconf('SC_CLK_TCK')
DAEMON_GROUP = 'bench'

HELLO = b'Hello, world!'  # 13 bytes
SIZE_64K = 64 * 1024
SIZE_1M = 1024 * 1024


@dataclass(frozen=True)
class Workload:
    name: str
    conns: int
    wsgi_path: str      # under the WSGIScriptAlias mount
    static_path: str    # the file with the same bytes, served by Apache core ('' = none)
    payload: str        # data file the response must equal ('' = check `marker` instead)
    post: bool = False  # POST the 64 KiB payload (wrk Lua script)
    mount: str = '/w'   # the WSGIScriptAlias it runs under
    marker: bytes = b''  # for pages whose bytes vary: what the body must contain
    daemon_only: bool = False  # needs the Webware daemon group (not in embedded mode)
    sweep: bool = False  # also run by the BENCH_THREADS variants (the thread-count sweep)
    wait_s: float = 0.0  # the page waits this long, GIL released: limit = threads / wait_s
    asgi: bool = False  # bench_asgi.py (ASGI 3): mod_rwsgi daemon mode and the ASGI servers
    websocket: bool = False  # WebSocket echo round trips (ws_client.py) instead of wrk


WORKLOADS = [
    Workload('hello c16', 16, '/hello', '/hello.txt', 'hello.txt', sweep=True),
    Workload('hello c64', 64, '/hello', '/hello.txt', 'hello.txt'),
    Workload('64 KiB body', 16, '/64k', '/64k.bin', '64k.bin'),
    Workload('1 MiB file_wrapper', 16, '/file1m', '/1m.bin', '1m.bin'),
    Workload('64 KiB POST echo', 16, '/echo', '/64k.bin', '64k.bin', post=True),
    Workload('64 KiB as 16 write()', 16, '/write16', '/64k.bin', '64k.bin'),
    # Webware for Python 3 (the test venv's), its Examples context's Welcome page, in its
    # own daemon group (python-home = the venv), as the deployment guide sets it up.
    Workload('Webware page', 16, '/Examples/Welcome', '', '', mount='/ww',
             marker=b'<title>Welcome</title>', daemon_only=True, sweep=True),
    # Application groups (issue 32): the same app in a named group, i.e. a sub-interpreter
    # of the same daemon process (mount /ws), against %{GLOBAL} (the main interpreter, /w).
    Workload('CPU page', 16, '/cpu', '', '', marker=b'cpu done'),
    Workload('hello sub-interp', 16, '/hello', '', 'hello.txt', mount='/ws', daemon_only=True),
    Workload('CPU page sub-interp', 16, '/cpu', '', '', mount='/ws', marker=b'cpu done',
             daemon_only=True),
    # An I/O-bound page (a database stand-in): time.sleep(0.02), GIL released. More
    # connections than threads, so a daemon's limit is threads / 20 ms (issue 36: every
    # thread must stay in use however the GIL is shared).
    Workload('sleep20 c64', 64, '/sleep20', '', 'hello.txt', sweep=True, wait_s=0.02),
    # ASGI (issue 33): bench_asgi.py at /a, through mod_rwsgi's daemon (interface=asgi) and
    # through uvicorn and granian (ASGI mode) behind mod_proxy_http; static is the limit.
    Workload('ASGI hello c16', 16, '/hello', '/hello.txt', 'hello.txt', mount='/a', asgi=True),
    Workload('ASGI 64 KiB body', 16, '/64k', '/64k.bin', '64k.bin', mount='/a', asgi=True),
    # WebSocket echo (issue 33): round trips/s of 8 connections (below the daemon's
    # threads=15: an open WebSocket holds one), each sending a 32-byte text message and
    # waiting for its echo; bench/ws_client.py in BENCH_WS_PROCS processes (default 2). The
    # proxies get `upgrade=websocket` on their ProxyPass.
    Workload('WebSocket echo c8', 8, '/ws-echo', '', '', mount='/a', asgi=True,
             websocket=True),
]
# BENCH_ONLY=word[,word]: only the workloads whose name contains one of the words.
if os.environ.get('BENCH_ONLY'):
    _only = [w.strip() for w in os.environ['BENCH_ONLY'].split(',') if w.strip()]
    WORKLOADS = [w for w in WORKLOADS if any(o in w.name for o in _only)]
# The venv with Webware (make test-venv); without it the Webware workload is left out.
VENV = os.environ.get('RWSGI_TEST_VENV') or os.path.join(REPO, 'build/test-venv')


@dataclass(frozen=True)
class Variant:
    name: str
    module: str = ''        # path of the WSGI module, '' = static files only
    module_id: str = ''     # name for LoadModule
    embedded: bool = False  # no daemon process group: the app runs in the Apache children
    peer: str = ''          # the variant this one is compared with (×mod_wsgi)
    threads: int = 15       # threads= of the daemon groups (daemon mode only)
    sweep: bool = False     # a BENCH_THREADS variant: runs only the sweep workloads
    proxy: str = ''         # 'granian', 'gunicorn' or 'uvicorn': Apache proxies to that server
    cannot: tuple = ()      # workloads it cannot serve: (workload name, why), left out
    host: str = ''          # every daemon exec'd from this daemon host (rwsgi-daemon), not forked

    @property
    def slug(self):
        return self.name.replace(' ', '-')

    @property
    def wsgi(self):
        """Serves the WSGI app (through a module or a proxied backend)."""
        return bool(self.module or self.proxy)


RWSGI_SO = os.environ.get('RWSGI_SO') or os.path.join(REPO, 'build/mod_rwsgi.so')
# The daemon host `make build` puts next to the module (issue 35).
RWSGI_HOST = os.environ.get('RWSGI_HOST') or os.path.join(os.path.dirname(RWSGI_SO),
                                                          'rwsgi-daemon')
VARIANTS = [
    Variant('static'),
    Variant('mod_wsgi', MOD_WSGI_SO, 'wsgi_module'),
    Variant('mod_rwsgi', RWSGI_SO, 'rwsgi_module', peer='mod_wsgi'),
    # The same build with every daemon exec'd from rwsgi-daemon instead of forked (issue 35;
    # the manager's test hook RWSGI_TEST_DAEMON_HOST in that Apache's environment).
    Variant('mod_rwsgi exec', RWSGI_SO, 'rwsgi_module', peer='mod_wsgi', host=RWSGI_HOST),
    Variant('mod_wsgi emb', MOD_WSGI_SO, 'wsgi_module', embedded=True),
    Variant('mod_rwsgi emb', RWSGI_SO, 'rwsgi_module', embedded=True, peer='mod_wsgi emb'),
    # The same app behind mod_proxy_http (issue 36): a backend process with 15 threads each.
    Variant('granian proxy', peer='mod_wsgi', proxy='granian', cannot=(
        ('64 KiB as 16 write()', "granian 2.8's start_response returns no write() callable"),)),
    Variant('gunicorn proxy', peer='mod_wsgi', proxy='gunicorn'),
    # ASGI only (issue 33): uvicorn with uvloop and httptools, one process.
    Variant('uvicorn proxy', proxy='uvicorn'),
]
# BENCH_BASELINE_SO=path: also run that build of mod_rwsgi in daemon and embedded mode
# ("mod_rwsgi base", "mod_rwsgi base emb"), for a before/after comparison in one interleaved run.
if os.environ.get('BENCH_BASELINE_SO'):
    VARIANTS.insert(3, Variant('mod_rwsgi base', os.environ['BENCH_BASELINE_SO'],
                               'rwsgi_module', peer='mod_wsgi'))
    VARIANTS.append(Variant('mod_rwsgi base emb', os.environ['BENCH_BASELINE_SO'],
                            'rwsgi_module', embedded=True, peer='mod_wsgi emb'))
# BENCH_THREADS=4,20 (the default; empty = none): the thread-count sweep. Also runs both
# modules in daemon mode with these threads= ("mod_wsgi t4", "mod_rwsgi t4", ...; with
# BENCH_BASELINE_SO also "mod_rwsgi base t4", ...) on the sweep workloads (hello c16, the
# Webware page, sleep20), in the same interleaved run; with the default variants at
# threads=15 that is a 4/15/20 sweep: how the per-request cost moves with the thread count.
for _n in os.environ.get('BENCH_THREADS', '4,20').split(','):
    if _n.strip():
        if not _n.strip().isdigit() or int(_n) < 1:
            sys.exit(f'BENCH_THREADS: {_n.strip()!r} is not a thread count')
        _t = int(_n)
        VARIANTS.append(Variant(f'mod_wsgi t{_t}', MOD_WSGI_SO, 'wsgi_module', threads=_t,
                                sweep=True))
        VARIANTS.append(Variant(f'mod_rwsgi t{_t}', RWSGI_SO, 'rwsgi_module',
                                peer=f'mod_wsgi t{_t}', threads=_t, sweep=True))
        if os.environ.get('BENCH_BASELINE_SO'):
            VARIANTS.append(Variant(f'mod_rwsgi base t{_t}', os.environ['BENCH_BASELINE_SO'],
                                    'rwsgi_module', peer=f'mod_wsgi t{_t}', threads=_t,
                                    sweep=True))
# BENCH_VARIANTS=name[,name]: only these variants (exact names, e.g. static,mod_rwsgi).
if os.environ.get('BENCH_VARIANTS'):
    _names = {n.strip() for n in os.environ['BENCH_VARIANTS'].split(',') if n.strip()}
    _unknown = _names - {v.name for v in VARIANTS}
    if _unknown:
        sys.exit(f'BENCH_VARIANTS: unknown variant(s) {sorted(_unknown)}; '
                 f'known: {[v.name for v in VARIANTS]}')
    VARIANTS = [v for v in VARIANTS if v.name in _names]
# Without the daemon host, "mod_rwsgi exec" is left out, with a note.
if any(v.host and not os.access(v.host, os.X_OK) for v in VARIANTS):
    HOST_NOTE = f'Skipped mod_rwsgi exec: no daemon host {RWSGI_HOST} (make build makes it).'
    VARIANTS = [v for v in VARIANTS if not v.host or os.access(v.host, os.X_OK)]
else:
    HOST_NOTE = ''
# uvicorn serves only the ASGI workloads: left out when none runs.
if not any(w.asgi for w in WORKLOADS):
    VARIANTS = [v for v in VARIANTS if v.proxy != 'uvicorn']
EMBEDDED = [v for v in VARIANTS if v.embedded]
# The venv with granian, gunicorn and uvicorn (make bench makes it from
# bench/requirements.txt). Without a server's command the proxy variant is left out, with a
# note (PROXY_NOTE, printed).
BENCH_VENV = os.environ.get('BENCH_VENV') or os.path.join(REPO, 'build/bench-venv')
PROXY_NOTE = ''
_missing = [v for v in VARIANTS
            if v.proxy and not os.access(os.path.join(BENCH_VENV, 'bin', v.proxy), os.X_OK)]
if _missing:
    PROXY_NOTE = (f'Skipped {", ".join(v.name for v in _missing)}: no '
                  f'{", ".join(v.proxy for v in _missing)} in {BENCH_VENV} (make bench '
                  'installs bench/requirements.txt there from PyPI; it could not).')
    VARIANTS = [v for v in VARIANTS if v not in _missing]
# What the proxy variants leave out, and why (printed and written with the table).
_RUN = {w.name for w in WORKLOADS}
CANNOT_NOTE = ' '.join(
    [f'{v.name} has no "{w}" row: {why}.' for v in VARIANTS for w, why in v.cannot
     if w in _RUN] +
    [f'{v.name} has no sub-interpreter rows (application groups are mod_wsgi\'s).'
     for v in VARIANTS if v.proxy and any(w.mount == '/ws' for w in WORKLOADS)] +
    ['granian serves the Webware page with Webware\'s setting WSGIWrite=False.'
     for v in VARIANTS if v.proxy == 'granian' and any(w.mount == '/ww' for w in WORKLOADS)])


@dataclass
class Server:
    variant: Variant
    root: str
    port: int
    proc: subprocess.Popen = None
    # Proxy variants: the backend servers, (mount, port, Popen or None) each.
    backends: list = field(default_factory=list)

    def url(self, workload):
        if self.variant.wsgi:
            return f'http://127.0.0.1:{self.port}{workload.mount}{workload.wsgi_path}'
        return f'http://127.0.0.1:{self.port}{workload.static_path}'

    def serves(self, workload):
        if self.variant.sweep and not workload.sweep:
            return False
        if workload.websocket and not self.variant.wsgi:
            return False  # no static counterpart
        if workload.asgi or self.variant.proxy == 'uvicorn':
            return workload.asgi and (not self.variant.wsgi or serves_asgi(self.variant))
        if any(workload.name == name for name, _ in self.variant.cannot):
            return False
        if self.variant.proxy and workload.mount == '/ws':
            return False  # application groups (sub-interpreters) are mod_wsgi's
        if workload.daemon_only:
            return self.variant.wsgi and not self.variant.embedded and has_webware()
        return self.variant.wsgi or bool(workload.static_path)

    def backend_pids(self):
        return [b[2].pid for b in self.backends if b[2] is not None]

    def error_log(self):
        text = ''
        for name in ['error.log'] + [f'backend{b[1]}.log' for b in self.backends]:
            try:
                with open(os.path.join(self.root, name), errors='replace') as f:
                    text += f.read()
            except OSError:
                pass
        return text


def serves_asgi(variant):
    """mod_rwsgi in daemon mode (interface=asgi), granian (ASGI mode) and uvicorn."""
    if variant.proxy:
        return variant.proxy in ('granian', 'uvicorn')
    return variant.module_id == 'rwsgi_module' and not variant.embedded


def asgi_run():
    return any(w.asgi for w in WORKLOADS)


def websocket_run():
    return any(w.websocket for w in WORKLOADS)


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float           # server CPU per request, whole process tree
    daemon_cpu_us: float    # the part spent in WSGI daemon processes
    pss_mib: float
    daemon_pss_mib: float
    other_cpu: float = 0.0  # cores used by unrelated processes during the run (noise)
    # The daemons' PSS counting only the sharing within Apache's tree (exec vs fork note).
    daemon_tree_pss_mib: float = 0.0


@dataclass
class Settings:
    duration: int
    reps: int
    warmup: int
    out: str
    keep: bool = False
    embedded_note: str = ''
    samples: dict = field(default_factory=dict)


class BenchError(Exception):
    pass


# ------------------------------------------------------------------ setup

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def make_payloads():
    rng = random.Random(20240601)
    return {
        'hello.txt': HELLO,
        '64k.bin': rng.randbytes(SIZE_64K),
        '1m.bin': rng.randbytes(SIZE_1M),
    }


def mkdir(path, mode=0o755):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)


def write_file(path, data, mode=0o644):
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)


def prepare_root(tmp, variant, payloads):
    """A ServerRoot readable by www-data: data/ (also the DocumentRoot), apps/, run/."""
    root = os.path.join(tmp, variant.slug)
    for sub in ('', 'data', 'apps', 'run'):
        mkdir(os.path.join(root, sub))
    for name, data in payloads.items():
        write_file(os.path.join(root, 'data', name), data)
    for app in ('bench.wsgi', 'bench_asgi.py'):
        with open(os.path.join(HERE, 'apps', app), 'rb') as f:
            write_file(os.path.join(root, 'apps', app), f.read())
    if variant.module:
        # A private copy: a concurrent `make build` rewrites build/mod_rwsgi.so in place,
        # which would crash a server that has it mapped.
        mkdir(os.path.join(root, 'modules'))
        shutil.copyfile(variant.module, module_copy(root, variant))
        # mod_rwsgi's daemon host (every daemon process runs in it) beside the copy, as
        # it is beside the module it was built with.
        host = os.path.join(os.path.dirname(variant.module), 'rwsgi-daemon')
        if os.path.exists(host):
            shutil.copy2(host, os.path.join(root, 'modules', 'rwsgi-daemon'))
    if variant.proxy:
        # The backends import the app as a module: the same file under a module name, next
        # to it (so it finds ../data the same way).
        shutil.copyfile(os.path.join(root, 'apps', 'bench.wsgi'),
                        os.path.join(root, 'apps', 'bench_app.py'))
    if variant.wsgi and not variant.embedded and has_webware():
        # As the guide says: `webware make`, then `webware make -g www-data` (www-data may
        # write only Cache, ErrorMsgs, Logs and Sessions).
        work = os.path.join(root, 'webware')
        for args in (['make', work], ['make', '-g', 'www-data', work]):
            out = subprocess.run([os.path.join(VENV, 'bin', 'webware')] + args,
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise BenchError(f'webware {" ".join(args)} failed:\n{out.stdout}{out.stderr}')
        if variant.proxy == 'granian':
            # Webware's own setting for a server without write() (granian's WSGI has none).
            script = os.path.join(work, 'Scripts', 'WSGIScript.py')
            with open(script) as f:
                text = f.read()
            if '\nsettings = {}\n' not in text:
                raise BenchError(f'{script}: no "settings = {{}}" line to set WSGIWrite in')
            with open(script, 'w') as f:
                f.write(text.replace('\nsettings = {}\n', "\nsettings = {'WSGIWrite': False}\n"))
    return root


def has_webware():
    return os.access(os.path.join(VENV, 'bin', 'webware'), os.X_OK)


def module_copy(root, variant):
    return os.path.join(root, 'modules', os.path.basename(variant.module))


def base_config(root, port):
    return f'''\
ServerRoot "{root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{root}/httpd.pid"
ErrorLog "{root}/error.log"
LogLevel warn
DefaultRuntimeDir "{root}/run"
Mutex file:{root}/run default
User www-data
Group www-data
Timeout 30
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 5
LoadModule mpm_event_module {MODULES}/mod_mpm_event.so
StartServers 4
ServerLimit 4
ThreadsPerChild 32
MaxRequestWorkers 128
MinSpareThreads 32
MaxSpareThreads 128
MaxConnectionsPerChild 0
LoadModule authz_core_module {MODULES}/mod_authz_core.so
LoadModule mime_module {MODULES}/mod_mime.so
LoadModule alias_module {MODULES}/mod_alias.so
TypesConfig /etc/mime.types
# As Debian's stock apache2.conf: no .htaccess files (without this, Apache looks for one in
# every directory of every request's path, in every variant).
<Directory />
    Options FollowSymLinks
    AllowOverride None
    Require all denied
</Directory>
DocumentRoot "{root}/data"
<Directory "{root}/data">
    Require all granted
</Directory>
'''


def asgi_python_path(variant):
    """python-path= of the bench group when it serves the ASGI app: the test venv's
    site-packages, so its main interpreter finds uvloop as granian and uvicorn run on it
    (without, the daemon runs the system Python's asyncio loop)."""
    if not asgi_run() or not serves_asgi(variant) or variant.proxy:
        return ''
    lib = os.path.join(VENV, 'lib')
    if not os.path.isdir(lib):
        return ''
    paths = [os.path.join(lib, d, 'site-packages') for d in sorted(os.listdir(lib))]
    return ' python-path=' + ':'.join(p for p in paths if os.path.isdir(p))


def wsgi_config(root, variant):
    # display-name only renames the daemon in ps, so its CPU can be told apart.
    daemon = '' if variant.embedded else f'''\
WSGIRestrictEmbedded On
WSGIDaemonProcess {DAEMON_GROUP} processes=1 threads={variant.threads}{asgi_python_path(variant)} display-name=%{{GROUP}}
WSGIProcessGroup {DAEMON_GROUP}
'''
    webware = '' if variant.embedded or not has_webware() else f'''\
WSGIDaemonProcess webware processes=1 threads={variant.threads} python-home={VENV} display-name=%{{GROUP}}
WSGIScriptAlias /ww "{root}/webware/Scripts/WSGIScript.py" process-group=webware application-group=%{{GLOBAL}}
<Directory "{root}/webware/Scripts">
    Require all granted
</Directory>
'''
    return f'''\
LoadModule {variant.module_id} {module_copy(root, variant)}
WSGISocketPrefix "{root}/run/wsgi"
{daemon}WSGIApplicationGroup %{{GLOBAL}}
WSGIScriptAlias /w "{root}/apps/bench.wsgi"
<Directory "{root}/apps">
    Require all granted
</Directory>
{webware}{app_group_config(root, variant)}{asgi_config(root, variant)}'''


def asgi_config(root, variant):
    """/a: bench_asgi.py as an ASGI application in the daemon group (issue 33); only when
    an ASGI workload runs (so BENCH_BASELINE_SO may name a build without interface=asgi)."""
    if not asgi_run() or not serves_asgi(variant):
        return ''
    return (f'WSGIScriptAlias /a "{root}/apps/bench_asgi.py" process-group={DAEMON_GROUP} '
            'application-group=%{GLOBAL} interface=asgi\n')


# Sub-interpreters created one by one for the memory measurement (/g0 ... /g7).
SUBINTERP_COUNT = 8


def app_group_config(root, variant):
    """Daemon mode: /ws runs bench.wsgi in the named group 'bench-sub' (a sub-interpreter of
    the same daemon process) and /gN in group 'memN', one sub-interpreter each (issue 32)."""
    if variant.embedded:
        return ''
    aliases = [f'WSGIScriptAlias /ws "{root}/apps/bench.wsgi" application-group=bench-sub']
    aliases += [f'WSGIScriptAlias /g{n} "{root}/apps/bench.wsgi" application-group=mem{n}'
                for n in range(SUBINTERP_COUNT)]
    return '\n'.join(aliases) + '\n'


def process_memory_kib(pid):
    """(PSS, RSS) KiB of one process."""
    found = {}
    try:
        with open(f'/proc/{pid}/smaps_rollup') as f:
            for line in f:
                key = line.split(':')[0]
                if key in ('Pss', 'Rss'):
                    found[key] = int(line.split()[1])
    except OSError:
        pass
    return found.get('Pss', 0), found.get('Rss', 0)


def subinterp_memory(servers):
    """Memory per sub-interpreter: in each daemon-mode server, the 'bench' daemon's PSS and
    RSS before and after creating SUBINTERP_COUNT sub-interpreters one at a time (a first
    request to /gN each, which imports bench.wsgi there). Rows for the report."""
    rows = []
    for server in servers:
        v = server.variant
        if not v.module or v.embedded:
            continue
        daemons = [p for p in process_tree(server.proc.pid) if is_bench_daemon(p)]
        if len(daemons) != 1:
            print(f'  {v.name}: sub-interpreter memory not measured ({len(daemons)} daemons)')
            continue
        pid = daemons[0]
        fetch(f'http://127.0.0.1:{server.port}/w/hello')
        pss0, rss0 = process_memory_kib(pid)
        for n in range(SUBINTERP_COUNT):
            status, body = fetch(f'http://127.0.0.1:{server.port}/g{n}/hello')
            if status != 200 or body != HELLO:
                raise BenchError(f'{v.name}: /g{n}/hello gave {status}\n{server.error_log()}')
        pss1, rss1 = process_memory_kib(pid)
        rows.append([v.name, str(SUBINTERP_COUNT),
                     f'{(pss1 - pss0) / SUBINTERP_COUNT / 1024:.2f}',
                     f'{(rss1 - rss0) / SUBINTERP_COUNT / 1024:.2f}',
                     f'{pss0 / 1024:.1f} -> {pss1 / 1024:.1f}'])
    return rows


def is_bench_daemon(pid):
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return f'(wsgi:{DAEMON_GROUP})'.encode() in f.read()
    except OSError:
        return False


def text_table_with(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ['  '.join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [header] + rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def markdown_table_with(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
    return '\n'.join(lines) + '\n'


SUBINTERP_HEADER = ['variant', 'sub-interpreters', 'PSS MiB each', 'RSS MiB each',
                    'daemon PSS MiB before -> after']


def proxy_config(server):
    """mod_proxy_http to the backends, reusing their connections (ttl below gunicorn's
    --keep-alive, so Apache never reuses one the backend is closing)."""
    text = f'''\
LoadModule proxy_module {MODULES}/mod_proxy.so
LoadModule proxy_http_module {MODULES}/mod_proxy_http.so
'''
    for mount, port, _ in server.backends:
        upgrade = ' upgrade=websocket' if mount == '/a' and websocket_run() else ''
        text += f'ProxyPass {mount}/ http://127.0.0.1:{port}/ enablereuse=on ttl=60{upgrade}\n'
    return text


def write_config(server):
    root, port, variant = server.root, server.port, server.variant
    text = base_config(root, port)
    if variant.module:
        text += wsgi_config(root, variant)
    if variant.proxy:
        text += proxy_config(server)
    path = os.path.join(root, 'httpd.conf')
    with open(path, 'w') as f:
        f.write(text)
    return path


# ------------------------------------------------------------------ Apache lifecycle

def new_server(tmp, variant, payloads):
    if variant.module and not os.path.exists(variant.module):
        raise BenchError(f'{variant.name}: {variant.module} does not exist')
    root = prepare_root(tmp, variant, payloads)
    server = Server(variant, root, free_port())
    if variant.proxy and variant.proxy != 'uvicorn':
        server.backends.append(('/w', free_port(), None))
        if has_webware():
            server.backends.append(('/ww', free_port(), None))
    if asgi_run() and serves_asgi(variant) and variant.proxy:
        server.backends.append(('/a', free_port(), None))
    return server


def backend_command(server, mount, port):
    """The backend serving one mount: bench.wsgi (as bench_app) or Webware's WSGIScript.py,
    in one process with the daemons' thread count, its logging at warning."""
    v, venv = server.variant, BENCH_VENV
    if mount == '/a':
        return asgi_backend_command(server, port)
    if mount == '/w':
        where, target = os.path.join(server.root, 'apps'), 'bench_app:application'
    else:
        where = os.path.join(server.root, 'webware', 'Scripts')
        target = 'WSGIScript:application'
    if v.proxy == 'granian':
        return [os.path.join(venv, 'bin', 'granian'), '--interface', 'wsgi', '--host',
                '127.0.0.1', '--port', str(port), '--workers', '1', '--blocking-threads',
                str(v.threads), '--http', '1', '--no-ws', '--log-level', 'warning',
                '--working-dir', where, target]
    return [os.path.join(venv, 'bin', 'gunicorn'), '-k', 'gthread', '-w', '1', '--threads',
            str(v.threads), '-b', f'127.0.0.1:{port}', '--chdir', where, '--keep-alive', '75',
            '--log-level', 'warning', target]


def asgi_backend_command(server, port):
    """bench_asgi.py in one process, its event loop uvloop for both servers (uvicorn's
    [standard] set; granian's 'auto' picks it too), uvicorn's HTTP parser httptools."""
    where, target = os.path.join(server.root, 'apps'), 'bench_asgi:application'
    if server.variant.proxy == 'granian':
        return [os.path.join(BENCH_VENV, 'bin', 'granian'), '--interface', 'asgi', '--host',
                '127.0.0.1', '--port', str(port), '--workers', '1', '--loop', 'uvloop',
                '--http', '1', '--ws' if websocket_run() else '--no-ws', '--log-level',
                'warning', '--working-dir', where, target]
    # WebSockets through the `websockets` package (bench/requirements.txt).
    return [os.path.join(BENCH_VENV, 'bin', 'uvicorn'), '--host', '127.0.0.1', '--port',
            str(port), '--loop', 'uvloop', '--http', 'httptools', '--ws',
            'websockets' if websocket_run() else 'none',
            '--lifespan', 'on', '--timeout-keep-alive', '75', '--log-level', 'warning',
            '--no-access-log', '--app-dir', where, target]


def start_backends(server):
    """Starts the proxy variant's backends as www-data (as Apache's daemons run), each in its
    own session; the Webware one finds Webware in the test venv's site-packages."""
    env = {k: val for k, val in os.environ.items() if k != 'BENCH_RECORD_METRICS'}
    site = [os.path.join(VENV, 'lib', d, 'site-packages')
            for d in sorted(os.listdir(os.path.join(VENV, 'lib')))] if has_webware() else []
    for i, (mount, port, _) in enumerate(server.backends):
        with open(os.path.join(server.root, f'backend{port}.log'), 'wb') as log:
            proc = subprocess.Popen(
                backend_command(server, mount, port), start_new_session=True,
                env=dict(env, PYTHONPATH=':'.join(site)) if mount == '/ww' else env,
                cwd=server.root, user='www-data', group='www-data', extra_groups=[],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        server.backends[i] = (mount, port, proc)
    for mount, port, proc in server.backends:
        wait_port(server, proc, port, f'{server.variant.proxy} ({mount})')


def start_server(server):
    if server.variant.proxy:
        start_backends(server)
    conf = write_config(server)
    # Its own session: Apache signals its process group on stop, which must not be ours.
    with open(os.path.join(server.root, 'stderr.log'), 'wb') as err:
        env = dict(os.environ)
        env.pop('RWSGI_TEST_DAEMON_HOST', None)
        if server.variant.host:
            env['RWSGI_TEST_DAEMON_HOST'] = server.variant.host
        server.proc = subprocess.Popen(
            [APACHE, '-f', conf, '-DFOREGROUND'], start_new_session=True, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    wait_listening(server)


def wait_listening(server, limit=20.0):
    wait_port(server, server.proc, server.port, 'apache2', limit)


def wait_port(server, proc, port, what, limit=20.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f'{server.variant.name}: {what} exited with '
                             f'{proc.returncode} at start-up\n{server.error_log()}')
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f'{server.variant.name}: {what} did not listen within {limit} s\n'
                     f'{server.error_log()}')


def stop_server(server, limit=15.0):
    """Apache, then the backends, each by its PID (SIGTERM; SIGKILL after `limit`)."""
    for proc in [server.proc] + [b[2] for b in server.backends]:
        if proc is None or proc.poll() is not None:
            continue
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ /proc accounting

def children_map():
    kids = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        stat = read_stat(int(entry))
        if stat:
            kids.setdefault(int(stat[1]), []).append(int(entry))
    return kids


def read_stat(pid):
    """Fields of /proc/PID/stat after the command name (index 0 = state)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(')') + 2:].split()


def process_tree(pid):
    kids = children_map()
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(kids.get(p, []))
    return tree


def is_daemon(pid):
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return b'(wsgi:' in f.read()
    except OSError:
        return False


def cpu_seconds(pid, backends=()):
    """(total, daemons) CPU seconds of Apache's tree plus the backends' trees (proxy
    variants; they count as daemons); a tree's root's cutime/cstime keeps the time of
    children that exited and were reaped in between."""
    total = daemons = 0.0
    for root in [pid] + list(backends):
        for p in process_tree(root):
            stat = read_stat(p)
            if not stat:
                continue
            ticks = int(stat[11]) + int(stat[12])  # utime, stime
            if p == root:
                ticks += int(stat[13]) + int(stat[14])  # cutime, cstime
            if root != pid or (p != pid and is_daemon(p)):
                daemons += ticks / CLK_TCK
            total += ticks / CLK_TCK
    return total, daemons


def machine_busy_seconds():
    """CPU seconds all cores spent outside idle/iowait since boot."""
    with open('/proc/stat') as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def children_cpu_seconds():
    """CPU of the processes this script started and waited for (wrk)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def pss_mib(pid, backends=()):
    """(total, daemons) PSS in MiB of Apache's process tree plus the backends' trees."""
    total = daemons = 0
    for root in [pid] + list(backends):
        for p in process_tree(root):
            kib = process_pss_kib(p)
            total += kib
            if root != pid or (p != pid and is_daemon(p)):
                daemons += kib
    return total / 1024, daemons / 1024


def daemon_tree_pss_mib(pid):
    """The daemons' PSS in MiB with each page shared only among the processes of Apache's
    tree: a present page (/proc/PID/pagemap, root only) counts 4 KiB / the number of the
    tree's processes mapping it. smaps' PSS also divides by processes outside the tree (other
    Apaches mapping the same libpython), which a forked daemon's pages are and an exec'd
    host's are not: on a shared machine that, not the daemons, made most of the difference."""
    pfns = {}
    for p in process_tree(pid):
        try:
            pfns[p] = present_pfns(p)
        except OSError:
            pass
    mappers = {}
    for pages in pfns.values():
        for pfn in pages:
            mappers[pfn] = mappers.get(pfn, 0) + 1
    kib = sum(4.0 / mappers[pfn] for p, pages in pfns.items() if p != pid and is_daemon(p)
              for pfn in pages)
    return kib / 1024


def present_pfns(pid):
    """The physical page numbers of a process's present pages (a set)."""
    pages = set()
    with open(f'/proc/{pid}/maps') as maps, open(f'/proc/{pid}/pagemap', 'rb') as pagemap:
        for line in maps:
            parts = line.split()
            if len(parts) > 5 and parts[5] in ('[vsyscall]', '[vvar]', '[vdso]', '[vvar_vclock]'):
                continue
            start, end = (int(x, 16) for x in parts[0].split('-'))
            pagemap.seek(start // 4096 * 8)
            data = pagemap.read((end - start) // 4096 * 8)
            for (entry,) in struct.iter_unpack('<Q', data):
                if entry >> 63:
                    pages.add(entry & ((1 << 55) - 1))
    return pages


def process_pss_kib(pid):
    try:
        with open(f'/proc/{pid}/smaps_rollup') as f:
            for line in f:
                if line.startswith('Pss:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# ------------------------------------------------------------------ correctness

def fetch(url, body=None):
    req = urllib.request.Request(url, data=body, method='POST' if body is not None else 'GET')
    if body is not None:
        req.add_header('Content-Type', 'application/octet-stream')
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read()


def verify(server, payloads):
    for w in WORKLOADS:
        if not server.serves(w):
            continue
        url = server.url(w)
        if w.websocket:
            try:
                res = run_ws(url, Workload(w.name, 1, w.wsgi_path, '', ''), 0.3, procs=1)
            except BenchError as e:
                raise BenchError(f'{server.variant.name} {w.name}: {e}\n{server.error_log()}')
            if res['requests'] < 1:
                raise BenchError(f'{server.variant.name} {w.name}: no echo\n'
                                 f'{server.error_log()}')
            continue
        if w.marker:
            try:
                status, got = fetch(url)
            except (urllib.error.URLError, OSError) as e:
                raise BenchError(f'{server.variant.name} {w.name}: {url}: {e}\n{server.error_log()}')
            if status != 200 or w.marker not in got:
                raise BenchError(f'BODY MISMATCH: {server.variant.name} {w.name}: {url} gave '
                                 f'status {status} without {w.marker!r}\n{server.error_log()}')
            continue
        expected = payloads[w.payload]
        try:
            status, got = fetch(url, expected if w.post else None)
        except (urllib.error.URLError, OSError) as e:
            raise BenchError(f'{server.variant.name} {w.name}: {url}: {e}\n{server.error_log()}')
        if status != 200 or got != expected:
            raise BenchError(
                f'BODY MISMATCH: {server.variant.name} {w.name}: {url} gave status {status}, '
                f'{len(got)} bytes, expected 200 and the {len(expected)} bytes of {w.payload}'
                f' (first difference at byte {first_difference(got, expected)})\n'
                f'{server.error_log()}')


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


# ------------------------------------------------------------------ wrk

UNIT_MS = {'us': 0.001, 'ms': 1.0, 's': 1000.0, 'm': 60000.0}


def wrk_command(url, workload, duration):
    cmd = [WRK, '-t2', f'-c{workload.conns}', f'-d{duration}s', '--latency']
    if workload.post:
        cmd += ['-s', os.path.join(HERE, 'post.lua')]
    return cmd + [url]


WS_CLIENT = os.path.join(HERE, 'ws_client.py')
WS_PROCS = int(os.environ.get('BENCH_WS_PROCS') or 2)


def run_load(url, workload, duration, post_body):
    if workload.websocket:
        return run_ws(url, workload, duration)
    return run_wrk(url, workload, duration, post_body)


def run_ws(url, workload, duration, procs=None):
    """workload.conns WebSocket echo connections, over `procs` ws_client.py processes;
    the same result keys as wrk's: round trips as requests."""
    import json
    m = re.match(r'http://([^:/]+):(\d+)(/.*)', url)
    host, port, path = m.group(1), m.group(2), m.group(3)
    procs = max(1, min(procs or WS_PROCS, workload.conns))
    shares = [workload.conns // procs + (1 if i < workload.conns % procs else 0)
              for i in range(procs)]
    started = [subprocess.Popen([sys.executable, WS_CLIENT, host, port, path, str(n),
                                 str(duration)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for n in shares]
    latencies, failures = [], []
    for proc in started:
        try:
            out, err = proc.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        if proc.returncode != 0:
            failures.append(f'{err.strip()}{out.strip()}')
            continue
        latencies += json.loads(out)['latencies_ms']
    if failures:
        raise BenchError(f'ws_client failed on {url}: ' + '; '.join(failures))
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] \
            if latencies else 0.0
    return {'requests': len(latencies), 'rps': len(latencies) / duration,
            'p50': pct(50), 'p99': pct(99)}


def run_wrk(url, workload, duration, post_body):
    env = dict(os.environ, BENCH_POST_BODY=post_body)
    out = subprocess.run(wrk_command(url, workload, duration), env=env,
                         capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise BenchError(f'wrk failed on {url}:\n{out.stdout}{out.stderr}')
    return parse_wrk(out.stdout, url)


def parse_wrk(text, url):
    def grab(pattern):
        m = re.search(pattern, text, re.M)
        if not m:
            raise BenchError(f'cannot parse wrk output ({pattern}) for {url}:\n{text}')
        return m

    def latency(pct):
        m = grab(rf'^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$')
        return float(m.group(1)) * UNIT_MS[m.group(2)]

    bad = re.search(r'Non-2xx or 3xx responses: (\d+)', text)
    if bad:
        raise BenchError(f'{url}: {bad.group(1)} non-2xx responses during the run:\n{text}')
    errors = re.search(r'Socket errors: (.*)', text)
    if errors:
        print(f'    note: {url}: socket errors: {errors.group(1)}', flush=True)
    return {
        'requests': int(grab(r'(\d+) requests in')[1]),
        'rps': float(grab(r'Requests/sec:\s+([\d.]+)')[1]),
        'p50': latency(50),
        'p99': latency(99),
    }


def measure(server, workload, settings, post_body):
    url = server.url(workload)
    pid, backends = server.proc.pid, server.backend_pids()
    cpu0, daemon0 = cpu_seconds(pid, backends)
    busy0, wrk0, t0 = machine_busy_seconds(), children_cpu_seconds(), time.monotonic()
    res = run_load(url, workload, settings.duration, post_body)
    busy1, wrk1, t1 = machine_busy_seconds(), children_cpu_seconds(), time.monotonic()
    cpu1, daemon1 = cpu_seconds(pid, backends)
    n = max(res['requests'], 1)
    other = max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - (wrk1 - wrk0)) / (t1 - t0)
    tree_pss = 0.0
    if server.variant.name in ('mod_rwsgi', 'mod_rwsgi exec'):
        tree_pss = daemon_tree_pss_mib(pid)
    return Sample(res['rps'], res['p50'], res['p99'], (cpu1 - cpu0) * 1e6 / n,
                  (daemon1 - daemon0) * 1e6 / n, *pss_mib(pid, backends), other_cpu=other,
                  daemon_tree_pss_mib=tree_pss)


# ------------------------------------------------------------------ report

def median(samples, attr):
    return statistics.median(getattr(s, attr) for s in samples)


def summarize(settings):
    """Rows of the result table, medians over the repetitions."""
    rows = []
    for w in WORKLOADS:
        med = {v.name: {a: median(settings.samples[(w.name, v.name)], a)
                        for a in Sample.__dataclass_fields__}
               for v in VARIANTS if (w.name, v.name) in settings.samples}
        for v in VARIANTS:
            if v.name not in med:
                continue
            m = med[v.name]
            vs_static = m['rps'] / med['static']['rps'] if 'static' in med else None
            vs_wsgi = m['rps'] / med[v.peer]['rps'] if v.peer in med else None
            vs_granian = (m['rps'] / med[GRANIAN]['rps']
                          if GRANIAN in med and compared_with_proxies(v) else None)
            cpu, pss = f"{m['cpu_us']:.0f}", f"{m['pss_mib']:.1f}"
            if v.wsgi and not v.embedded:
                cpu += f" ({m['daemon_cpu_us']:.0f})"
                pss += f" ({m['daemon_pss_mib']:.1f})"
            rows.append([w.name, v.name, f"{m['rps']:.0f}", f"{m['p50_ms']:.2f} ms",
                         f"{m['p99_ms']:.2f} ms", cpu, pss,
                         f'{vs_static:.2f}' if vs_static is not None else '',
                         f'{vs_wsgi:.2f}' if vs_wsgi is not None else '',
                         f'{vs_granian:.2f}' if vs_granian is not None else ''])
    return rows


GRANIAN = 'granian proxy'
PROXIES = (GRANIAN, 'gunicorn proxy', 'uvicorn proxy')


def compared_with_proxies(v):
    """mod_rwsgi in daemon mode at the proxies' thread count (also BENCH_BASELINE_SO's)."""
    return bool(v.module) and not v.embedded and not v.sweep and v.module_id == 'rwsgi_module'


def proxy_notes(settings):
    """Each mod_rwsgi daemon variant against each proxy: req/s and CPU per request ratios."""
    lines = []
    for w in WORKLOADS:
        def med(name, attr):
            runs = settings.samples.get((w.name, name))
            return median(runs, attr) if runs else None
        parts = []
        for v in VARIANTS:
            if not compared_with_proxies(v) or med(v.name, 'rps') is None:
                continue
            for proxy in PROXIES:
                if med(proxy, 'rps'):
                    parts.append(f'{v.name} vs {proxy} req/s '
                                 f'{med(v.name, "rps") / med(proxy, "rps"):.2f}×, CPU/req '
                                 f'{med(v.name, "cpu_us"):.0f} vs {med(proxy, "cpu_us"):.0f} µs '
                                 f'({med(v.name, "cpu_us") / med(proxy, "cpu_us"):.2f}×)')
        if parts:
            lines.append(f'{w.name}: ' + '; '.join(parts) + '.')
    return '\n'.join(lines)


def exec_notes(settings):
    """Daemons exec'd from rwsgi-daemon against forked ones, the same build (issue 35): req/s,
    CPU per request and the daemons' PSS."""
    lines = []
    for w in WORKLOADS:
        fork = settings.samples.get((w.name, 'mod_rwsgi'))
        exe = settings.samples.get((w.name, 'mod_rwsgi exec'))
        if not fork or not exe:
            continue
        def ratio(attr):
            return median(exe, attr) / median(fork, attr)
        lines.append(
            f'{w.name}: mod_rwsgi exec vs mod_rwsgi (daemons exec\'d vs forked): req/s '
            f'{ratio("rps"):.2f}×, CPU/req {median(exe, "cpu_us"):.0f} vs '
            f'{median(fork, "cpu_us"):.0f} µs ({ratio("cpu_us"):.2f}×), daemon PSS '
            f'{median(exe, "daemon_pss_mib"):.2f} vs {median(fork, "daemon_pss_mib"):.2f} MiB, '
            f'tree PSS {median(exe, "pss_mib"):.2f} vs {median(fork, "pss_mib"):.2f} MiB; '
            f'daemon PSS within Apache\'s tree {median(exe, "daemon_tree_pss_mib"):.2f} vs '
            f'{median(fork, "daemon_tree_pss_mib"):.2f} MiB.')
    return '\n'.join(lines)


HEADER = ['workload', 'variant', 'req/s', 'p50', 'p99', 'CPU µs/req (daemon)',
          'PSS MiB (daemon)', '×static', '×mod_wsgi', '×granian']


def text_table(rows):
    widths = [max(len(str(r[i])) for r in [HEADER] + rows) for i in range(len(HEADER))]
    lines = ['  '.join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [HEADER] + rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def markdown_table(rows):
    lines = ['| ' + ' | '.join(HEADER) + ' |',
             '|' + '|'.join('---' if i < 2 else '---:' for i in range(len(HEADER))) + '|']
    lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
    return '\n'.join(lines)


def write_markdown(path, rows, settings, started):
    with open(path, 'w') as f:
        f.write(f'# mod_rwsgi benchmark ({time.strftime("%Y-%m-%d %H:%M", started)})\n\n')
        f.write(f'wrk -t2, {settings.duration:g} s per run (each server and workload warmed '
                f'up for {settings.warmup:g} s first), median of {settings.reps} interleaved '
                'repetitions. CPU = utime+stime of the Apache process tree per request, plus '
                'the backend\'s process tree for the proxy variants; (daemon) = the part spent '
                'in the WSGI daemon process (proxy variants: in the backend). PSS summed over '
                'the trees after the run. ×static, ×mod_wsgi and ×granian (mod_rwsgi daemon '
                'mode against "granian proxy") are req/s ratios; "emb" = embedded mode, '
                'compared with mod_wsgi embedded; "granian proxy" and "gunicorn proxy" = '
                'Apache\'s mod_proxy_http in front of that server (one process, 15 threads); '
                '"uvicorn proxy" = the same in front of uvicorn (ASGI rows only; granian in '
                'ASGI mode for the ASGI rows of "granian proxy", both one process, uvloop).'
                '\n\n')
        f.write(noise_note(settings) + '\n\n')
        for note in (PROXY_NOTE, HOST_NOTE, CANNOT_NOTE, proxy_notes(settings),
                     exec_notes(settings)):
            if note:
                f.write(note.replace('\n', '\n\n') + '\n\n')
        if sweep_notes(settings):
            f.write(sweep_notes(settings).replace('\n', '\n\n') + '\n\n')
        f.write(markdown_table(rows) + '\n\n' + settings.embedded_note + '\n')


def noise_note(settings):
    other = [s.other_cpu for runs in settings.samples.values() for s in runs]
    return (f'CPU used by unrelated processes during the runs (noise; of {os.cpu_count()} '
            f'cores): median {statistics.median(other):.2f}, max {max(other):.2f} cores.')


def sweep_notes(settings):
    """The I/O-bound page against its limit, min(connections, threads) / wait (embedded:
    Apache's workers, never fewer than the connections here), and each module's sweep
    variants against its own smallest thread count."""
    def med(w, v):
        runs = settings.samples.get((w.name, v.name))
        return median(runs, 'rps') if runs else None
    lines = []
    for w in WORKLOADS:
        if w.wait_s:
            parts = []
            for v in VARIANTS:
                rps = med(w, v)
                if rps is None:
                    continue
                limit = (w.conns if v.embedded else min(w.conns, v.threads)) / w.wait_s
                parts.append(f'{v.name} {rps:.0f}/{limit:.0f} ({rps / limit:.2f})')
            if parts:
                lines.append(f'{w.name} vs its limit: ' + ', '.join(parts) + '.')
        if not w.sweep:
            continue
        for module in ('mod_wsgi', 'mod_rwsgi', 'mod_rwsgi base'):
            # The sweep variants plus the default ones (threads=15).
            sweep = sorted((v for v in VARIANTS if v.module and not v.embedded and med(w, v)
                            and (v.name.rsplit(' t', 1)[0] if v.sweep else v.name) == module),
                           key=lambda v: v.threads)
            if len(sweep) > 1:
                low = med(w, sweep[0])
                lines.append(f'{w.name}, {module} vs its t{sweep[0].threads}: ' + ', '.join(
                    f't{v.threads} {med(w, v) / low:.2f}' for v in sweep[1:]) + '.')
    return '\n'.join(lines)


EMBEDDED_RAN = ('Embedded mode: "mod_rwsgi emb" and "mod_wsgi emb" run the app in the Apache '
                'children (no WSGIDaemonProcess, WSGIApplicationGroup %{GLOBAL}).')
EMBEDDED_SKIPPED = ('Embedded mode: skipped, because mod_rwsgi has no embedded mode yet '
                    '(its embedded server did not serve the app: {reason}).')


# ------------------------------------------------------------------ main

def parse_settings(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', help='also write the result table as markdown to this file')
    ap.add_argument('--keep', action='store_true', help='keep the temporary server roots')
    args = ap.parse_args(argv)
    quick = os.environ.get('BENCH_QUICK') == '1'
    # wrk takes whole seconds.
    duration = int(os.environ.get('BENCH_DURATION') or (1 if quick else 5))
    reps = int(os.environ.get('BENCH_REPS') or (1 if quick else 3))
    warmup = 1
    return Settings(duration, reps, warmup, args.out, args.keep)


def check_prerequisites():
    problems = []
    if os.geteuid() != 0:
        problems.append('run as root (Apache switches to www-data)')
    for path in (APACHE, WRK, MOD_WSGI_SO):
        if not os.path.exists(path):
            problems.append(f'{path} is missing (make bench-deps)')
    if problems:
        raise BenchError('; '.join(problems))


def start_all(tmp, payloads, servers, settings):
    """Starts and checks a server per variant. Servers go into `servers` as soon as they
    exist, so the caller stops them whatever happens. Returns the ones to measure."""
    active = []
    settings.embedded_note = EMBEDDED_RAN
    for v in VARIANTS:
        servers.append(new_server(tmp, v, payloads))
        try:
            start_server(servers[-1])
            verify(servers[-1], payloads)
        except BenchError as e:
            if v.name != 'mod_rwsgi emb':
                raise
            reason = str(e).splitlines()[0]
            settings.embedded_note = EMBEDDED_SKIPPED.format(reason=reason)
            active = [s for s in active if not s.variant.embedded]
            for server in servers:
                if server.variant.embedded:
                    stop_server(server)
            continue
        active.append(servers[-1])
    return active


def warm_up(servers, settings, post_body):
    for w in WORKLOADS:
        for server in servers:
            if server.serves(w):
                run_load(server.url(w), w, settings.warmup, post_body)


def run_all(servers, settings, post_body):
    for rep in range(settings.reps):
        # Rotate the order so no variant always runs first (or right after another).
        order = servers[rep % len(servers):] + servers[:rep % len(servers)]
        for w in WORKLOADS:
            for server in order:
                if not server.serves(w):
                    continue
                s = measure(server, w, settings, post_body)
                settings.samples.setdefault((w.name, server.variant.name), []).append(s)
                print(f'  rep {rep + 1}/{settings.reps}  {w.name:<22} {server.variant.name:<15}'
                      f' {format_sample(s)}', flush=True)


def format_sample(s):
    return (f'{s.rps:9.0f} req/s  p50 {s.p50_ms:7.2f} ms  p99 {s.p99_ms:7.2f} ms  '
            f'{s.cpu_us:6.0f} µs/req  {s.pss_mib:6.1f} MiB  other load {s.other_cpu:4.2f} cores')


def main(argv=None):
    settings = parse_settings(argv)
    started = time.localtime()
    check_prerequisites()
    payloads = make_payloads()
    tmp = tempfile.mkdtemp(prefix='rwsgi-bench-')
    os.chmod(tmp, 0o755)
    post_body = os.path.join(tmp, 'post-body.bin')
    write_file(post_body, payloads['64k.bin'])
    servers = []
    memory_rows = []
    try:
        active = start_all(tmp, payloads, servers, settings)
        print(f'bodies verified byte for byte on {len(active)} servers; '
              f'{len(WORKLOADS)} workloads x {len(active)} variants x {settings.reps} reps, '
              f'{settings.duration:g} s each', flush=True)
        print(settings.embedded_note, flush=True)
        if PROXY_NOTE:
            print(PROXY_NOTE, flush=True)
        warm_up(active, settings, post_body)
        run_all(active, settings, post_body)
        for server in active:
            verify(server, payloads)  # still correct after load
        memory_rows = subinterp_memory(active)
    finally:
        for server in servers:
            stop_server(server)
        if settings.keep:
            print(f'server roots kept in {tmp}')
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    rows = summarize(settings)
    print()
    print(text_table(rows))
    print()
    print(settings.embedded_note)
    print(noise_note(settings))
    if memory_rows:
        print()
        print('Memory per sub-interpreter (daemon process, after a first request to each):')
        print(text_table_with(SUBINTERP_HEADER, memory_rows))
    print(sweep_notes(settings))
    for note in (PROXY_NOTE, HOST_NOTE, CANNOT_NOTE, proxy_notes(settings),
                 exec_notes(settings)):
        if note:
            print(note)
    if settings.out:
        write_markdown(settings.out, rows, settings, started)
        if memory_rows:
            with open(settings.out, 'a') as f:
                f.write('\nMemory per sub-interpreter (daemon process, after a first request '
                        'to each):\n\n' + markdown_table_with(SUBINTERP_HEADER, memory_rows))
        print(f'markdown table written to {settings.out}')


if __name__ == '__main__':
    try:
        main()
    except BenchError as e:
        print(f'bench: FAILED: {e}', file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
