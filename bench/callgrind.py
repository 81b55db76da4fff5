#!/usr/bin/python3
"""Instructions per request under callgrind: a repeatable profile on a noisy machine.

Runs one Apache in single-process mode (`apache2 -X`, the same configuration as
bench/run.py) under `valgrind --tool=callgrind`, sends a
fixed number of keep-alive requests with `ab -k` (one connection), and prints the
instructions (Ir) per request split by component (in daemon mode: of the Apache process
only, not the daemon's): Apache core (httpd, APR, the MPM and
Apache's modules), the WSGI module, CPython, libc, the rest; then the costliest functions
of the module and of CPython (self cost).

    bench/callgrind.py VARIANT [--path /w/hello] [--requests 2000] [--so path] [--top 25]
                               [--app-group NAME]

VARIANT: one of run.py's variants ("mod_wsgi emb", "mod_rwsgi emb", "mod_rwsgi", ...);
--so replaces the variant's module (e.g. a baseline build). Run as root (Apache drops to
www-data). The counts do not depend on the machine's load; wall-clock figures do.
--app-group NAME runs the application in that application group (a sub-interpreter) instead
of %{GLOBAL}.
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: its configuration and payloads)


def component(obj, module_file):
    base = os.path.basename(obj)
    if base == module_file:
        return 'module'
    if base.startswith('libpython'):
        return 'CPython'
    if base.startswith(('libc.so', 'libc-', 'libm.so')):
        return 'libc'
    if base in ('apache2', 'httpd') or base.startswith(('libapr', 'mod_')):
        return 'Apache core'
    return 'other'


def parse(path, module_file):
    """Self cost (Ir) per component and per (object, function), from a callgrind dump."""
    names = {'ob': {}, 'fn': {}}
    by_component = collections.Counter()
    by_function = collections.Counter()
    obj = fn = ''
    skip_next = False
    name_re = re.compile(r'^(c?ob|c?fn|c?fi|c?fe|fl)=(?:\((\d+)\))?\s*(.*)$')
    with open(path, errors='replace') as f:
        for line in f:
            line = line.rstrip('\n')
            if not line:
                continue
            m = name_re.match(line)
            if m:
                kind, num, name = m.groups()
                table = kind.lstrip('c')
                if table in names:
                    if num is not None and name:
                        names[table][num] = name
                    resolved = names[table].get(num, name) if num is not None else name
                    if kind == 'ob':
                        obj = resolved
                    elif kind == 'fn':
                        fn = resolved
                continue
            if line.startswith('calls='):
                skip_next = True  # the next cost line is the call's inclusive cost
                continue
            if line[0] in '0123456789+-*':
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    ir = int(parts[1])
                    by_component[component(obj, module_file)] += ir
                    by_function[(os.path.basename(obj), fn)] += ir
    return by_component, by_function


def profile(variant, path, requests, module_file, app_group=''):
    """Runs Apache under callgrind for `requests` keep-alive requests to `path`; returns the
    parsed dump of the whole run (start-up and shut-down included) and the wall time."""
    tmp = tempfile.mkdtemp(prefix='rwsgi-callgrind-')
    os.chmod(tmp, 0o755)
    server = run.new_server(tmp, variant, run.make_payloads())
    root = server.root
    # One dump per process (%p): processes forked from Apache (in daemon mode, before they
    # exec) write their own instead of overwriting Apache's. Written as www-data at exit.
    dumps = os.path.join(root, 'callgrind')
    os.mkdir(dumps)
    os.chmod(dumps, 0o777)
    port = server.port
    if variant.proxy:
        # The proxied backend runs as bench/run.py runs it; only Apache is profiled.
        run.start_backends(server)
    conf = run.write_config(server)
    if app_group:
        with open(conf, 'a') as f:
            f.write(f'\nWSGIApplicationGroup {app_group}\n')
    cmd = ['valgrind', '--tool=callgrind', '--trace-children=no', '--vgdb=no',
           f'--callgrind-out-file={dumps}/callgrind.out.%p', run.APACHE, '-X', '-f', conf]
    with open(os.path.join(root, 'stderr.log'), 'wb') as err:
        proc = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
    server.proc = proc
    try:
        run.wait_listening(server, limit=120.0)
        # Callgrind made the dump of Apache's own process as root at start; it writes it at
        # exit as www-data.
        for f in os.listdir(dumps):
            os.chmod(os.path.join(dumps, f), 0o666)
        url = f'http://127.0.0.1:{port}{path}'
        started = time.monotonic()
        out = subprocess.run(['ab', '-q', '-k', '-c', '1', '-s', '60', '-n', str(requests), url],
                             check=True, capture_output=True, text=True).stdout
        elapsed = time.monotonic() - started
        failed = re.search(r'Failed requests:\s+(\d+)', out)
        non2xx = re.search(r'Non-2xx responses:\s+(\d+)', out)
        if (failed and failed.group(1) != '0') or non2xx:
            sys.exit(f'requests failed:\n{out}\n{server.error_log()}')
    finally:
        run.stop_server(server, limit=120.0)
    # Forked processes write theirs when they exit, after Apache stopped them.
    deadline = time.monotonic() + 60
    while True:
        files = [os.path.join(dumps, f) for f in os.listdir(dumps)]
        if files and all(os.path.getsize(f) > 0 for f in files):
            break
        if time.monotonic() > deadline:
            sys.exit(f'empty callgrind dumps in {dumps}\n{server.error_log()}')
        time.sleep(0.5)
    # Apache's own process is the one valgrind started: its dump has the lowest pid. The
    # others are processes forked from it before they exec (a daemon process itself is not
    # followed), left out.
    files.sort(key=lambda f: int(f.rsplit('.', 1)[1]))
    by_component, by_function = parse(files[0], module_file)
    return (by_component, by_function), elapsed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('variant')
    p.add_argument('--path', default='/w/hello')
    p.add_argument('--requests', type=int, default=2000)
    p.add_argument('--warmup', type=int, default=200)
    p.add_argument('--so', default='')
    p.add_argument('--top', type=int, default=25)
    p.add_argument('--app-group', default='')
    args = p.parse_args(argv)
    variants = {v.name: v for v in run.VARIANTS}
    if args.variant not in variants:
        sys.exit(f'unknown variant {args.variant!r}; known: {sorted(variants)}')
    variant = variants[args.variant]
    if args.so:
        variant = run.Variant(variant.name, os.path.abspath(args.so), variant.module_id,
                              embedded=variant.embedded)
    module_file = os.path.basename(variant.module)
    # Two runs, `warmup` and `warmup + requests` requests: their difference is the cost of
    # `requests` warm requests, without start-up, the first import and shut-down.
    (short_c, short_f), _ = profile(variant, args.path, args.warmup, module_file,
                                    args.app_group)
    (long_c, long_f), elapsed = profile(variant, args.path, args.warmup + args.requests,
                                        module_file, args.app_group)
    by_component = long_c - short_c
    by_function = collections.Counter({k: long_f[k] - short_f.get(k, 0) for k in long_f})
    n = args.requests
    total = sum(by_component.values())
    print(f'{variant.name} ({variant.module}) {args.path}'
          f'{" in group " + args.app_group if args.app_group else ""}: {n} requests '
          f'(after {args.warmup}), {elapsed:.1f} s under callgrind')
    print(f'{"component":<12} {"Ir/request":>11}')
    for name in ('Apache core', 'module', 'CPython', 'libc', 'other'):
        print(f'{name:<12} {by_component[name] / n:>11,.0f}')
    print(f'{"total":<12} {total / n:>11,.0f}')
    for group in ('module', 'CPython', 'libc', 'Apache core', 'other'):
        rows = [(ir, obj, fn) for (obj, fn), ir in by_function.items()
                if component(obj, module_file) == group]
        rows.sort(reverse=True)
        print(f'\n{group}: top functions (self Ir/request)')
        for ir, obj, fn in rows[:args.top]:
            print(f'{ir / n:>9,.0f}  {obj}: {fn[:110]}')


if __name__ == '__main__':
    main()
