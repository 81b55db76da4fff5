# The WebSocket client of tests/asgi_websocket.rs (run with the test venv's Python, which
# has `websockets`): `ws_client.py SCENARIO URL`; prints one line per observation, ending
# with `closed CODE` (or `status N` for a refused handshake).
import asyncio
import json
import ssl
import sys
import urllib.request

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus


def out(*words):
    print(*words, flush=True)


def connect(url, **kw):
    if url.startswith('wss:'):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        kw['ssl'] = ctx
    return websockets.connect(url, open_timeout=20, close_timeout=10, **kw)


async def closed(ws):
    try:
        while True:
            out('message', await asyncio.wait_for(ws.recv(), 60))
    except ConnectionClosed:
        pass
    out('closed', ws.close_code)


async def main(scenario, url):
    if scenario == 'deny':
        try:
            async with connect(url):
                out('opened')
        except InvalidStatus as e:
            out('header', e.response.headers.get('X-Denied'))
            out('body', e.response.body.decode())
            out('status', e.response.status_code)
        return
    if scenario == 'idle':
        # No keepalive pings: nothing goes either way after the first exchange.
        kw = {'ping_interval': None}
    else:
        kw = {}
    async with connect(url, subprotocols=['x', 'chat'] if scenario == 'echo' else None,
                       max_size=2 ** 22, **kw) as ws:
        out('subprotocol', ws.subprotocol)
        if scenario == 'fail':
            await ws.send('boom')
            await closed(ws)
            return
        if scenario == 'burst':
            # Numbered messages must arrive in order, each whole.
            count = int(sys.argv[3])
            await ws.send(str(count))
            for i in range(count):
                message = await asyncio.wait_for(ws.recv(), 60)
                size = 100_000 if i % 5 == 0 else 10 + i * 37 % 3000
                if message[:7] != '%06d:' % i or len(message) != 7 + size:
                    out('burst-bad', i, message[:7], len(message))
                    return
            out('burst', count, await asyncio.wait_for(ws.recv(), 60))
            await ws.close()
            out('closed', ws.close_code)
            return
        if scenario == 'pile':
            count = int(sys.argv[3])
            await ws.send(str(count))
            for i in range(count):
                await ws.send('%06d' % i)
            # Only now does the application start receiving.
            sent_url = 'http' + url[len('ws'):-len('pile')] + 'pile-sent'
            await asyncio.to_thread(urllib.request.urlopen, sent_url, timeout=30)
            out('pile', await asyncio.wait_for(ws.recv(), 60))
            await ws.close()
            out('closed', ws.close_code)
            return
        info = json.loads(await ws.recv())
        out('info', json.dumps(info, sort_keys=True))
        if scenario == 'echo':
            await ws.send('hello')
            out('text', await ws.recv())
            await ws.send(b'\x00\x01\xff')
            out('bytes', (await ws.recv()).hex())
            # One message in three fragments.
            await ws.send(['frag', 'men', 'ted'])
            out('fragmented', await ws.recv())
            pong = await ws.ping(b'p')
            await asyncio.wait_for(pong, 10)
            out('pong')
            await ws.close()
            out('closed', ws.close_code)
        elif scenario == 'big':
            await ws.send(b'x' * int(sys.argv[3]))
            await closed(ws)
        elif scenario in ('wait', 'idle'):
            await ws.send('ready?')
            out('ready', await ws.recv())
            await closed(ws)


asyncio.run(main(sys.argv[1], sys.argv[2]))
