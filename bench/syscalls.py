#!/usr/bin/python3
"""System calls, context switches and CPU per request, Apache's side and the backend's.

Instructions (bench/callgrind.py) leave out what the kernel does for a request: on this kind
of machine most of a small request's CPU is system calls, wake-ups and the loopback TCP and
Unix-socket traffic between processes. This starts each VARIANT as bench/run.py does (the
same configuration, the same backends behind mod_proxy), warms it up, then sends a fixed
number of keep-alive requests with `ab` while `perf stat` counts, per side, system calls
(`raw_syscalls:sys_enter`), context switches and task-clock:

- "apache": the Apache processes (parent and children, the daemon client or mod_proxy),
- "backend": mod_rwsgi's or mod_wsgi's daemon processes, or the proxied server.

With --by-call, `perf trace -s` also gives the count of each system call per request and
side. Counts vary little between runs on a busy machine; the CPU figures do. With
--websocket SECONDS the load is run.py's "WebSocket echo c8" (bench/ws_client.py for that
long, 8 connections at /a/ws-echo) instead of `ab`, and the counts are per round trip.

    bench/syscalls.py VARIANT [VARIANT ...] [--path /w/hello] [--requests 20000]
                      [--concurrency 16] [--by-call] [--websocket SECONDS]

VARIANT: run.py's variant names ("mod_rwsgi", "granian proxy", "mod_rwsgi emb", ...). Run as
root (Apache drops to www-data; perf needs its tracepoints).
"""

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: its configuration, servers and payloads)

PERF = shutil.which('perf') or '/usr/bin/perf'
EVENTS = 'raw_syscalls:sys_enter,context-switches,page-faults,cpu-migrations,task-clock'


def sides(server):
    """(apache pids, backend pids): Apache's tree without its daemons; the daemons or the
    proxied backends' trees."""
    tree = run.process_tree(server.proc.pid)
    apache = [p for p in tree if not run.is_daemon(p)]
    backend = [p for p in tree if run.is_daemon(p)]
    for root in server.backend_pids():
        backend += run.process_tree(root)
    return apache, backend


def user_system_seconds(pids):
    """(user, system) CPU seconds of these processes, all their threads."""
    user = system = 0.0
    for pid in pids:
        stat = run.read_stat(pid)
        if stat:
            user += int(stat[11]) / run.CLK_TCK
            system += int(stat[12]) / run.CLK_TCK
    return user, system


def ab(url, requests, concurrency):
    out = subprocess.run(['ab', '-q', '-k', '-c', str(concurrency), '-s', '60', '-n',
                          str(requests), url], check=True, capture_output=True,
                         text=True).stdout
    # ab counts a "Length" failure when a kept-alive connection's close races a request
    # (static files show it too at 64 connections); any other failure stops the run.
    kinds = re.search(r'\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)', out)
    if (kinds and any(k != '0' for k in kinds.groups())) or 'Non-2xx responses' in out:
        raise run.BenchError(f'requests failed:\n{out}')


def perf_stat(pids, out):
    return subprocess.Popen([PERF, 'stat', '-x', ',', '-e', EVENTS, '-o', out, '-p',
                             ','.join(map(str, pids))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_trace(pids, out):
    return subprocess.Popen([PERF, 'trace', '-s', '-o', out, '-p', ','.join(map(str, pids))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc):
    proc.send_signal(2)  # SIGINT: perf writes its summary
    proc.wait(60)


def read_stat(path):
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(',')
            if len(parts) > 2 and parts[0] and parts[0][0].isdigit():
                counts[parts[2]] = float(parts[0])
    return counts


def read_trace(path):
    """Calls per system call name, summed over the threads of `perf trace -s`."""
    calls = collections.Counter()
    row = re.compile(r'^\s+(\w+)\s+(\d+)\s+\d+\s')
    with open(path, errors='replace') as f:
        for line in f:
            m = row.match(line)
            if m:
                calls[m.group(1)] += int(m.group(2))
    return calls


def ws_echo(url, seconds):
    """run.py's WebSocket echo workload for `seconds`; the round trips done."""
    workload = run.Workload('WebSocket echo c8', 8, '/ws-echo', '', '', mount='/a', asgi=True,
                            websocket=True)
    return run.run_ws(url, workload, seconds)['requests']


def measure(variant, path, requests, concurrency, by_call, websocket=None):
    """Counts per request; with `websocket` (seconds), per WebSocket echo round trip."""
    tmp = tempfile.mkdtemp(prefix='rwsgi-syscalls-')
    os.chmod(tmp, 0o755)
    server = run.new_server(tmp, variant, run.make_payloads())
    run.start_server(server)
    try:
        url = f'http://127.0.0.1:{server.port}{path}'
        if websocket:
            ws_echo(url, 1)  # warm
        else:
            ab(url, max(requests // 10, 500), concurrency)  # warm: every thread, imports done
        apache, backend = sides(server)
        files, procs = {}, []
        for side, pids in (('apache', apache), ('backend', backend)):
            if not pids:
                continue
            files[side] = os.path.join(tmp, f'{side}.stat')
            procs.append(perf_stat(pids, files[side]))
            if by_call:
                files[side + ' calls'] = os.path.join(tmp, f'{side}.trace')
                procs.append(perf_trace(pids, files[side + ' calls']))
        # perf attaches to every thread before it counts; a first request shows it has.
        if not websocket:
            run.fetch(url)
        before = {'apache': user_system_seconds(apache), 'backend': user_system_seconds(backend)}
        if websocket:
            requests = ws_echo(url, websocket)
        else:
            ab(url, requests, concurrency)
        after = {'apache': user_system_seconds(apache), 'backend': user_system_seconds(backend)}
        for proc in procs:
            stop(proc)
        result = {'count': requests}
        for side in before:
            result[side + ' cpu'] = tuple(a - b for a, b in zip(after[side], before[side]))
        for side, f in files.items():
            result[side] = read_trace(f) if side.endswith(' calls') else read_stat(f)
        return result
    finally:
        run.stop_server(server)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('variants', nargs='+')
    p.add_argument('--path', default='/w/hello')
    p.add_argument('--requests', type=int, default=20000)
    p.add_argument('--concurrency', type=int, default=16)
    p.add_argument('--by-call', action='store_true')
    p.add_argument('--top', type=int, default=12)
    p.add_argument('--websocket', type=float, metavar='SECONDS')
    args = p.parse_args(argv)
    if args.websocket:
        args.path = '/a/ws-echo'

    variants = {v.name: v for v in run.VARIANTS}
    for name in args.variants:
        if name not in variants:
            sys.exit(f'unknown variant {name!r}; known: {sorted(variants)}')
    if args.websocket:
        print(f'{args.path}, WebSocket echo for {args.websocket:g} s, 8 connections '
              '(ws_client.py); per round trip:')
    else:
        print(f'{args.path}, {args.requests} keep-alive requests, {args.concurrency} '
              'connections (ab); per request:')
    print(f'{"variant":<16} {"side":<8} {"syscalls":>9} {"ctx sw":>7} {"faults":>7} '
          f'{"migr":>6} {"CPU µs":>7} {"user µs":>8} {"sys µs":>7}')
    for name in args.variants:
        result = measure(variants[name], args.path, args.requests, args.concurrency,
                         args.by_call, args.websocket)
        n = max(result['count'], 1)
        for side in ('apache', 'backend'):
            c = result.get(side)
            if c is None:
                continue
            print(f'{name:<16} {side:<8} {c.get("raw_syscalls:sys_enter", 0) / n:>9.1f} '
                  f'{c.get("context-switches", 0) / n:>7.2f} '
                  f'{c.get("page-faults", 0) / n:>7.2f} '
                  f'{c.get("cpu-migrations", 0) / n:>6.2f} '
                  f'{c.get("task-clock", 0) * 1000 / n:>7.1f} '
                  f'{result[side + " cpu"][0] * 1e6 / n:>8.1f} '
                  f'{result[side + " cpu"][1] * 1e6 / n:>7.1f}')
            calls = result.get(side + ' calls')
            if calls:
                top = ', '.join(f'{k} {v / n:.2f}' for k, v in calls.most_common(args.top))
                print(f'{"":<16} {"":<8} {top}')


if __name__ == '__main__':
    main()
