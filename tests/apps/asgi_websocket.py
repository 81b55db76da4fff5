# A Starlette application with WebSocket routes for tests/asgi_websocket.rs: an echo (with
# subprotocol negotiation and the scope's fields in its first message), a denial (close
# before accept), a denial with its own HTTP response (418), and one that raises after accepting; /pid answers over HTTP.
import os

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect


async def echo(websocket):
    offered = websocket.scope['subprotocols']
    await websocket.accept(subprotocol='chat' if 'chat' in offered else None)
    await websocket.send_json({
        'subprotocols': offered,
        'scheme': websocket.scope['scheme'],
        'path': websocket.scope['path'],
        'root_path': websocket.scope['root_path'],
        'pid': os.getpid(),
    })
    try:
        while True:
            message = await websocket.receive()
            if message['type'] == 'websocket.disconnect':
                return
            if message.get('text') is not None:
                await websocket.send_text(message['text'])
            else:
                await websocket.send_bytes(message['bytes'])
    except WebSocketDisconnect:
        return


async def deny(websocket):
    await websocket.close()


async def fail(websocket):
    await websocket.accept()
    await websocket.receive_text()
    raise RuntimeError('websocket app failed on purpose')


async def teapot(websocket):
    # The websocket.http.response extension: a custom denial response.
    await websocket.send_denial_response(PlainTextResponse(
        'no websockets for you', status_code=418, headers={'X-Denied': 'yes'}))


async def pid(request):
    return PlainTextResponse(str(os.getpid()))


app = Starlette(routes=[
    WebSocketRoute('/echo', echo),
    WebSocketRoute('/deny', deny),
    WebSocketRoute('/fail', fail),
    WebSocketRoute('/teapot', teapot),
    Route('/pid', pid),
])
application = app
