# A Starlette application with WebSocket routes for tests/asgi_websocket.rs: an echo (with
# subprotocol negotiation and the scope's fields in its first message), a denial (close
# before accept), a denial with its own HTTP response (418), and one that raises after accepting; /pid answers over HTTP.
# /flood sends numbered messages to a client that may not read (/flood-state: how many
# send() returned); /burst sends numbered messages from concurrent tasks, some too big
# for the event loop's direct write, so direct and queued sends mix; /pile receives only
# once the client says over HTTP (/pile-sent) that it has sent them all (they pile up: the
# loop stops reading, then reads on).
import asyncio
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


FLOOD = {'sent': 0}


async def done_then_wait_for_close(websocket):
    """Says 'done', then waits for the client to close."""
    await websocket.send_text('done')
    try:
        await websocket.receive_text()
    except WebSocketDisconnect:
        pass


async def flood(websocket):
    await websocket.accept()
    count, size = (int(w) for w in (await websocket.receive_text()).split())
    for i in range(count):
        await websocket.send_text('%06d:' % i + 'x' * (size - 7))
        FLOOD['sent'] = i + 1
    await done_then_wait_for_close(websocket)


async def flood_state(request):
    return PlainTextResponse(str(FLOOD['sent']))


async def burst(websocket):
    await websocket.accept()
    count = int(await websocket.receive_text())
    # Each task calls send() in creation order; every fifth message (100 kB) is over the
    # event loop's direct-write bound, so the small ones behind it must wait for it.
    sends = [asyncio.ensure_future(websocket.send({
        'type': 'websocket.send',
        'text': '%06d:' % i + 'y' * (100_000 if i % 5 == 0 else 10 + i * 37 % 3000),
    })) for i in range(count)]
    await asyncio.gather(*sends)
    await done_then_wait_for_close(websocket)


# Set by /pile-sent; made in the event loop, once per interpreter (each has this module).
PILE_SENT = None


def pile_sent_event():
    global PILE_SENT
    if PILE_SENT is None:
        PILE_SENT = asyncio.Event()
    return PILE_SENT


async def pile(websocket):
    await websocket.accept()
    count = int(await websocket.receive_text())
    await asyncio.wait_for(pile_sent_event().wait(), 30)
    for i in range(count):
        message = await websocket.receive_text()
        if message != '%06d' % i:
            await websocket.send_text('out of order at %d: %r' % (i, message[:20]))
            break
    else:
        await websocket.send_text('%d in order' % count)
    try:
        await websocket.receive_text()
    except WebSocketDisconnect:
        pass


async def pile_sent(request):
    pile_sent_event().set()
    return PlainTextResponse('ok')


async def pid(request):
    return PlainTextResponse(str(os.getpid()))


app = Starlette(routes=[
    WebSocketRoute('/echo', echo),
    WebSocketRoute('/deny', deny),
    WebSocketRoute('/fail', fail),
    WebSocketRoute('/teapot', teapot),
    WebSocketRoute('/flood', flood),
    WebSocketRoute('/burst', burst),
    WebSocketRoute('/pile', pile),
    Route('/flood-state', flood_state),
    Route('/pile-sent', pile_sent),
    Route('/pid', pid),
])
application = app
