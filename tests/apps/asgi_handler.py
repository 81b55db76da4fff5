# A WSGIHandlerScript whose handle_request is an ASGI 3 application (tests/asgi.rs).


async def handle_request(scope, receive, send):
    if scope['type'] != 'http':
        raise RuntimeError('no lifespan here')
    body = ('handled: %s %s' % (scope['method'], scope['path'])).encode()
    await send({'type': 'http.response.start', 'status': 200,
                'headers': [(b'content-type', b'text/plain')]})
    await send({'type': 'http.response.body', 'body': body})
