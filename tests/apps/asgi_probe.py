# A Starlette application for tests/asgi_restarts.rs: the serving process's PID (to see
# replacements), a sleep that yields to the event loop, a chosen status (for metrics), and a
# long streaming response (for a client that leaves).
import asyncio
import os

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def pid(request):
    return PlainTextResponse(str(os.getpid()))


async def sleep(request):
    await asyncio.sleep(float(request.query_params.get('s', '0.02')))
    return PlainTextResponse(str(os.getpid()))


async def status(request):
    code = int(request.query_params.get('code', '200'))
    return PlainTextResponse('status %d' % code, status_code=code)


class RawStream:
    """A plain ASGI endpoint streaming 20000 x 64 KiB; a send() to a client that left raises
    OSError, which it lets propagate."""

    async def __call__(self, scope, receive, send):
        await send({'type': 'http.response.start', 'status': 200,
                    'headers': [(b'content-type', b'application/octet-stream')]})
        for _ in range(20000):
            await send({'type': 'http.response.body', 'body': b'x' * 65536, 'more_body': True})
            await asyncio.sleep(0.001)
        await send({'type': 'http.response.body', 'body': b''})


application = Starlette(routes=[
    Route('/stream', RawStream()),
    Route('/pid', pid),
    Route('/sleep', sleep),
    Route('/status', status),
])
