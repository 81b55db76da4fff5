"""ASGI 3 app for `make bench` (issue 33): the same bytes as bench.wsgi's /hello and /64k,
and a WebSocket echo (any path of a websocket scope).

No framework: what is measured is the server. mod_rwsgi serves it in its daemon
(interface=asgi); uvicorn and granian (ASGI mode) import it as the module bench_asgi. The
payload files live in ../data next to this script's directory (bench/run.py writes them).
"""

import os

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data')


def _read(name):
    with open(os.path.join(DATA, name), 'rb') as f:
        return f.read()


def _start(body, content_type):
    return {'type': 'http.response.start', 'status': 200,
            'headers': [(b'content-type', content_type),
                        (b'content-length', str(len(body)).encode())]}


HELLO = _read('hello.txt')
BODY_64K = _read('64k.bin')
ROUTES = {
    '/hello': (_start(HELLO, b'text/plain'), {'type': 'http.response.body', 'body': HELLO}),
    '/64k': (_start(BODY_64K, b'application/octet-stream'),
             {'type': 'http.response.body', 'body': BODY_64K}),
}
NOT_FOUND = ({'type': 'http.response.start', 'status': 404,
              'headers': [(b'content-type', b'text/plain'), (b'content-length', b'9')]},
             {'type': 'http.response.body', 'body': b'not found'})


async def application(scope, receive, send):
    if scope['type'] == 'lifespan':
        while True:
            message = await receive()
            if message['type'] == 'lifespan.startup':
                await send({'type': 'lifespan.startup.complete'})
            elif message['type'] == 'lifespan.shutdown':
                await send({'type': 'lifespan.shutdown.complete'})
                return
    if scope['type'] == 'websocket':
        # /ws-echo: every message back as it came (bench/ws_client.py's echo load).
        await receive()  # websocket.connect
        await send({'type': 'websocket.accept'})
        while True:
            message = await receive()
            if message['type'] == 'websocket.disconnect':
                return
            if message.get('text') is not None:
                await send({'type': 'websocket.send', 'text': message['text']})
            else:
                await send({'type': 'websocket.send', 'bytes': message.get('bytes') or b''})
    path = scope['path'][len(scope.get('root_path', '')):] or '/'
    start, body = ROUTES.get(path, NOT_FOUND)
    await send(start)
    await send(body)
