# A raw ASGI application for tests/asgi.rs (the event loop's kind): answers the class of the
# loop that runs it, and a 64 KiB body at /big (a response past one socket write).
import asyncio


async def application(scope, receive, send):
    if scope['type'] != 'http':
        return  # lifespan: not supported
    if scope['path'].endswith('/big'):
        body = b'x' * 65536
    else:
        loop = type(asyncio.get_running_loop())
        body = ('%s.%s' % (loop.__module__, loop.__qualname__)).encode()
    await send({'type': 'http.response.start', 'status': 200,
                'headers': [(b'content-type', b'text/plain')]})
    await send({'type': 'http.response.body', 'body': body})
