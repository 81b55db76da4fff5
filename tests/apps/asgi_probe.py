# A Starlette application for tests/asgi_restarts.rs: the serving process's PID (to see
# replacements), a sleep that yields to the event loop, and a chosen status (for metrics).
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


application = Starlette(routes=[
    Route('/pid', pid),
    Route('/sleep', sleep),
    Route('/status', status),
])
