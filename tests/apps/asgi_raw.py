# A raw ASGI 3 application for tests/asgi.rs: the scope as JSON, and misbehaving routes.
import asyncio
import json
import os
import time


def _scope_json(scope):
    def plain(v):
        if isinstance(v, bytes):
            return {'bytes': v.decode('latin-1')}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return json.dumps(plain(scope)).encode()


async def _body(receive):
    body = b''
    while True:
        message = await receive()
        assert message['type'] == 'http.request', message
        body += message.get('body', b'')
        if not message.get('more_body', False):
            return body


def _marker(name):
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'markers', name)


async def application(scope, receive, send):
    if scope['type'] == 'lifespan':
        # A bare ASGI app that does not do lifespan: raising is allowed by the spec.
        raise RuntimeError('no lifespan here')
    path = scope['path'][len(scope['root_path']):]
    if path.startswith(('/scope', '/proxied/scope')):
        await _body(receive)
        body = _scope_json(scope)
        await send({'type': 'http.response.start', 'status': 200,
                    'headers': [(b'content-type', b'application/json')]})
        await send({'type': 'http.response.body', 'body': body})
    elif path == '/path-kind':
        # Which path of the daemon runs this request: the native one (asgi_native.rs, the
        # runtime's _native map holds this task's exchange) or the WSGI-shaped one.
        import sys
        runtime = sys.modules['_mod_rwsgi_asgi']
        task = asyncio.current_task()
        native = any(e.task is task for e in runtime._native.values())
        body = await _body(receive)
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
        await send({'type': 'http.response.body',
                    'body': (b'native ' if native else b'wsgi-shaped ') + body})
    elif path == '/raise-before':
        raise ValueError('raised before the response start')
    elif path == '/raise-after':
        await send({'type': 'http.response.start', 'status': 200,
                    'headers': [(b'content-type', b'text/plain')]})
        await send({'type': 'http.response.body', 'body': b'partial', 'more_body': True})
        raise ValueError('raised after the response start')
    elif path == '/no-response':
        return
    elif path == '/disconnect':
        # The body, then a receive() that answers http.disconnect once the response is done;
        # the app records it in a marker.
        await _body(receive)
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
        await send({'type': 'http.response.body', 'body': b'done'})
        message = await asyncio.wait_for(receive(), 10)
        with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               'markers', 'disconnect'), 'w') as f:
            f.write(message['type'])
    elif path == '/wait-disconnect':
        # Long-poll: the body, then (?stream: after a first part of the response) a wait
        # in receive() that only the client's leaving ends; the app records what it got.
        await _body(receive)
        stream = scope['query_string'] == b'stream'
        if stream:
            await send({'type': 'http.response.start', 'status': 200, 'headers': []})
            await send({'type': 'http.response.body', 'body': b'first', 'more_body': True})
        name = 'wait-disconnect-stream' if stream else 'wait-disconnect'
        with open(_marker(name), 'w') as f:
            f.write('waiting')
        message = await asyncio.wait_for(receive(), 60)
        with open(_marker(name), 'w') as f:
            f.write(message['type'])
    elif path == '/body-before-start':
        await send({'type': 'http.response.body', 'body': b'too early'})
    elif path == '/start-twice':
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
    elif path == '/start-after-end':
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
        await send({'type': 'http.response.body', 'body': b'done'})
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
    elif path == '/block':
        # Blocks the event loop thread (a synchronous sleep in a coroutine).
        time.sleep(6)
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
        await send({'type': 'http.response.body', 'body': b'blocked'})
    elif path == '/block-short':
        # Blocks the loop for 2 s: over asgi-blocked-loop-timeout=1, under the default 5 s.
        time.sleep(2)
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
        await send({'type': 'http.response.body', 'body': b'blocked'})
    elif path == '/sleep':
        # Outlives request-timeout: the coroutine is cancelled when the request is interrupted.
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                   'markers', 'cancelled'), 'w') as f:
                f.write('cancelled')
            raise
    elif path.startswith('/pathsend'):
        # http.response.pathsend: ?name sends that file of the apps directory (no
        # Content-Length: the server's, from the file); the other routes are errors.
        here = os.path.dirname(os.path.abspath(__file__))
        file = os.path.join(here, scope['query_string'].decode())
        if path == '/pathsend-relative':
            file = 'apps/asgi_raw.py'
        elif path == '/pathsend-missing':
            file = os.path.join(here, 'no-such-file')
        elif path == '/pathsend-dir':
            file = here
        await send({'type': 'http.response.start', 'status': 200,
                    'headers': [(b'content-type', b'application/octet-stream')]})
        if path == '/pathsend-after-body':
            await send({'type': 'http.response.body', 'body': b'partial', 'more_body': True})
        await send({'type': 'http.response.pathsend', 'path': file})
    elif path == '/print':
        print('printed by an ASGI coroutine', flush=True)
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
        await send({'type': 'http.response.body', 'body': b'printed'})
    elif path == '/status':
        await send({'type': 'http.response.start', 'status': 201,
                    'headers': [(b'x-asgi', b'yes'), (b'set-cookie', b'a=1'),
                                (b'set-cookie', b'b=2')]})
        await send({'type': 'http.response.body', 'body': b'created'})
    else:
        await send({'type': 'http.response.start', 'status': 404, 'headers': []})
        await send({'type': 'http.response.body', 'body': b'not found'})
