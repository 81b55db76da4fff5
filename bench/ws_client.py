#!/usr/bin/python3
"""WebSocket echo load for `make bench` (bench/run.py; issue 33). Python 3 stdlib only.

    ws_client.py HOST PORT PATH CONNECTIONS SECONDS

Opens CONNECTIONS WebSockets to ws://HOST:PORT/PATH (one thread-free selectors loop), then
on each, for SECONDS: sends one 32-byte text message and waits for its echo before sending
the next (one round trip in flight per connection). Prints one JSON line: round trips done
and their latencies in ms (every round trip's). The frames are built once (a client frame is
masked; the mask is fixed, which RFC 6455 allows a benchmark to get away with: servers do
not check its randomness), so the client costs one send() and one recv() per round trip;
run.py starts several of these processes so that the client is not the bottleneck.
"""

import base64
import json
import os
import selectors
import socket
import sys
import time

PAYLOAD = b'0123456789abcdef0123456789ABCDEF'  # 32 bytes
MASK = b'\x12\x34\x56\x78'
FRAME = (bytes([0x81, 0x80 | len(PAYLOAD)]) + MASK
         + bytes(b ^ MASK[i % 4] for i, b in enumerate(PAYLOAD)))
ECHO = bytes([0x81, len(PAYLOAD)]) + PAYLOAD  # the server's (unmasked) echo
CLOSE = bytes([0x88, 0x82]) + MASK + bytes(b ^ MASK[i] for i, b in enumerate(b'\x03\xe8'))


def connect(host, port, path):
    s = socket.create_connection((host, port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f'GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n'
               f'Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n'
               'Sec-WebSocket-Version: 13\r\n\r\n').encode())
    head = b''
    while b'\r\n\r\n' not in head:
        data = s.recv(4096)
        if not data:
            raise SystemExit(f'ws_client: {path}: connection closed during the handshake')
        head += data
    head, _, rest = head.partition(b'\r\n\r\n')
    if not head.startswith(b'HTTP/1.1 101'):
        raise SystemExit(f'ws_client: {path}: no 101: {head[:200]!r}')
    if rest:
        raise SystemExit(f'ws_client: {path}: data after the 101 before a message: {rest!r}')
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    return s


def main():
    host, port, path, conns, seconds = sys.argv[1:6]
    conns, seconds = int(conns), float(seconds)
    socks = [connect(host, int(port), path) for _ in range(conns)]
    sel = selectors.DefaultSelector()
    got = {}
    sent_at = {}
    latencies = []
    clock = time.perf_counter
    deadline = clock() + seconds
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        got[s] = b''
        sent_at[s] = clock()
        s.send(FRAME)
    open_ = len(socks)
    while open_:
        for key, _ in sel.select(timeout=10):
            s = key.fileobj
            data = s.recv(4096)
            if not data:
                raise SystemExit(f'ws_client: {path}: the server closed a WebSocket')
            buf = got[s] + data
            if len(buf) < len(ECHO):
                got[s] = buf
                continue
            if buf != ECHO:
                raise SystemExit(f'ws_client: {path}: unexpected frame {buf[:80]!r}')
            got[s] = b''
            now = clock()
            latencies.append((now - sent_at[s]) * 1000.0)
            if now >= deadline:
                sel.unregister(s)
                s.send(CLOSE)
                open_ -= 1
                continue
            sent_at[s] = now
            s.send(FRAME)
        if clock() > deadline + 30:
            raise SystemExit(f'ws_client: {path}: echoes stopped coming')
    for s in socks:
        s.close()
    print(json.dumps({'round_trips': len(latencies), 'latencies_ms': latencies}))


if __name__ == '__main__':
    main()
