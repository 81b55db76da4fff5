#!/usr/bin/python3
"""Per-request cost inside mod_rwsgi's daemon process: instructions, CPU, context switches
and syscalls, for one path (WSGI or ASGI) under a fixed keep-alive load.

Starts the "mod_rwsgi" variant of bench/run.py (daemon mode, the ASGI app at /a), warms it
up, then sends REQUESTS requests with `ab -k -c CONNS` twice: once with `perf stat` attached
to the daemon process (instructions in user and kernel mode, context switches, CPU time),
once with `strace -c -f` attached (syscall counts; strace slows the daemon, so only its
counts are used). Prints each per request. Run as root.

    bench/daemon_profile.py [--path /a/hello] [--requests 20000] [--conns 16] [--so path]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def daemon_pid(server):
    tree = run.process_tree(server.proc.pid)
    pids = [p for p in tree if run.is_bench_daemon(p)]
    if len(pids) != 1:
        sys.exit(f'expected one daemon process, found {pids}')
    return pids[0]


def load(url, requests, conns):
    out = subprocess.run(['ab', '-q', '-k', '-c', str(conns), '-s', '60', '-n', str(requests),
                          url], check=True, capture_output=True, text=True).stdout
    failed = re.search(r'Failed requests:\s+(\d+)', out)
    if (failed and failed.group(1) != '0') or 'Non-2xx' in out:
        sys.exit(f'requests failed:\n{out}')


def cpu_ticks(pid):
    fields = run.read_stat(pid)
    return fields[11] + fields[12] if isinstance(fields, list) else None


def with_tool(cmd, url, requests, conns):
    """Runs the load with `cmd` (a tool attached to the daemon) around it; its stderr."""
    tool = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # attached
    load(url, requests, conns)
    tool.send_signal(2)
    return tool.communicate(timeout=60)[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--path', default='/a/hello')
    p.add_argument('--requests', type=int, default=20000)
    p.add_argument('--conns', type=int, default=16)
    p.add_argument('--so', default='')
    p.add_argument('--no-strace', action='store_true')
    p.add_argument('--perf-record', default='',
                   help='also write a `perf record -g` profile of the daemon to this file')
    args = p.parse_args(argv)
    variant = {v.name: v for v in run.VARIANTS}['mod_rwsgi']
    if args.so:
        variant = run.Variant(variant.name, os.path.abspath(args.so), variant.module_id)
    tmp = tempfile.mkdtemp(prefix='rwsgi-daemon-profile-')
    os.chmod(tmp, 0o755)
    payloads = run.make_payloads()
    server = run.new_server(tmp, variant, payloads)
    run.start_server(server)
    try:
        url = f'http://127.0.0.1:{server.port}{args.path}'
        load(url, 2000, args.conns)
        pid = daemon_pid(server)
        n = args.requests
        perf = with_tool(['perf', 'stat', '-x', ',', '-e',
                          'instructions:u,instructions:k,context-switches,task-clock',
                          '-p', str(pid)], url, n, args.conns)
        print(f'{args.path}: {n} requests, ab -k -c {args.conns}, daemon pid {pid}')
        for line in perf.splitlines():
            parts = line.split(',')
            if len(parts) > 3 and parts[0].replace('.', '').isdigit():
                value = float(parts[0])
                unit = 'us' if parts[2].startswith('task-clock') else ''
                if unit:
                    value *= 1000  # msec -> usec
                print(f'  {parts[2]:<20} {value / n:>12,.1f} {unit}/request')
        if not args.no_strace:
            out = with_tool(['strace', '-c', '-f', '-p', str(pid)], url, n // 4, args.conns)
            print('  syscalls per request (strace -c -f):')
            for line in out.splitlines():
                cols = line.split()
                if len(cols) >= 5 and cols[3].isdigit():
                    calls = int(cols[3])
                    name = cols[-1]
                    if calls / (n // 4) >= 0.05:
                        print(f'    {name:<20} {calls / (n // 4):>8.2f}')
        if args.perf_record:
            with_tool(['perf', 'record', '-g', '-o', args.perf_record, '-p', str(pid)], url, n,
                      args.conns)
    finally:
        run.stop_server(server)


if __name__ == '__main__':
    main()
