# A Starlette application for tests/asgi.rs: routes, a streaming response, a request body
# echo, and a lifespan that records its startup and shutdown in MARKERS (set by the test
# through the daemon's environment: WSGI scripts see SetEnv only per request).
import contextlib
import os

from starlette.applications import Starlette
from starlette.responses import (FileResponse, JSONResponse, PlainTextResponse,
                                  StreamingResponse)
from starlette.routing import Route

MARKERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'markers')


def _mark(name, text):
    with open(os.path.join(MARKERS, name), 'a') as f:
        f.write(text + '\n')


@contextlib.asynccontextmanager
async def lifespan(app):
    _mark('lifespan', 'startup %d' % os.getpid())
    yield {'started_by': os.getpid()}
    _mark('lifespan', 'shutdown %d' % os.getpid())


async def hello(request):
    return PlainTextResponse('hello from starlette')


async def item(request):
    return JSONResponse({
        'id': request.path_params['id'],
        'q': request.query_params.get('q'),
        'root_path': request.scope['root_path'],
        'path': request.url.path,
        'started_by': request.state.started_by,
        'pid': os.getpid(),
    })


async def echo(request):
    body = b''
    chunks = 0
    async for chunk in request.stream():
        if chunk:
            chunks += 1
        body += chunk
    return PlainTextResponse(body, headers={'x-chunks': str(chunks)})


async def stream(request):
    count = int(request.query_params.get('n', '5'))
    # ?size=N: each part padded with dots to N bytes (a response larger than the server's
    # send buffer, so send() waits for the writes: flow control).
    size = int(request.query_params.get('size', '0'))

    async def parts():
        for i in range(count):
            yield ('part %d\n' % i).encode().ljust(size, b'.')

    return StreamingResponse(parts(), media_type='text/plain')


async def file(request):
    # FileResponse sends http.response.pathsend where the server advertises it.
    used = 'http.response.pathsend' in request.scope.get('extensions', {})
    name = request.query_params['name']
    return FileResponse(os.path.join(os.path.dirname(os.path.abspath(__file__)), name),
                        headers={'x-pathsend': 'yes' if used else 'no'})


application = Starlette(
    routes=[
        Route('/', hello),
        Route('/items/{id}', item),
        Route('/echo', echo, methods=['POST', 'PUT']),
        Route('/stream', stream),
        Route('/file', file),
    ],
    lifespan=lifespan,
)
