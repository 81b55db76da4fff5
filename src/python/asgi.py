# The ASGI 3 runtime of one interpreter (src/python/asgi.rs loads it as the module
# `_mod_rwsgi_asgi`, once per interpreter). One asyncio event loop runs in its own thread;
# each application gets one `Adapter`, made (and its lifespan started) on first use.
#
# Most HTTP requests take the native path (asgi_native.rs, _Native below): the request
# thread waits in Rust without the GIL, the loop gets the request through an eventfd and
# runs the application, and send() hands its messages to a Rust handle. The rest (the first
# request of an application not preloaded, bodies still to be read, WebSockets; see asgi.rs)
# go the
# WSGI-shaped way described here.
#
# A request arrives on a daemon request thread, which calls the adapter as a WSGI
# application: the adapter turns environ into the `http` scope and submits the application's
# coroutine to the loop; receive() and send() hand their work back to the request thread
# (an operation queue), which reads the body with wsgi.input and writes the response with
# start_response's write(), so every byte still goes through the daemon's request I/O,
# timeouts and metrics. The request thread returns once the response is complete; the rest
# of the coroutine (background work) goes on in the loop, its receive() then answering
# http.disconnect and its send() raising OSError.
#
# Each hop between the loop and a request thread costs a wake-up and a GIL hand-over, so
# send() checks its message in the loop and queues it without waiting for the request thread
# (it waits only while more than SEND_BUFFER bytes are queued and not yet written: flow
# control), and receive() answers a request without a body in the loop. A hello-world
# request takes two hops (the submit, then the request thread's wake-up) instead of six.
# Submits go through one inbox per loop (_Inbox): one wake-up of the loop per batch of
# requests, not per request. The last http.response.body becomes the adapter's result list,
# so the daemon sends it together with the response's end in one write (a small body after
# the Python work, without the GIL). The loop is uvloop's in the main interpreter when
# uvloop is importable (_new_loop).
#
# A WebSocket request (environ has `mod_rwsgi.websocket`) runs the same way with a
# `websocket` scope (_WebSocket): the request thread waits on the client's messages and on
# a pipe the loop writes to when it has queued an operation. Once accepted, the loop thread
# itself reads the client's messages (it watches ws.read_fd(); ws.recv_now()) and writes a
# websocket.send when the connection takes it without blocking and nothing queued before it
# is still unwritten (ws.send_now; src/daemon/ws_direct.rs): an echo then crosses no thread.

import asyncio
import collections
import concurrent.futures
import http
import os
import queue
import stat
import sys
import threading
import traceback

ASGI = {'version': '3.0', 'spec_version': '2.3'}
BODY_CHUNK = 65536
# Response bytes send() may queue for the request thread before it waits for their write.
SEND_BUFFER = 262144
# How often a waiting request thread wakes up, so that an asynchronous exception
# (request-timeout's RequestTimeout) reaches it.
POLL = 0.25

# A WebSocket's messages from the client waiting for the application's receive(): past
# this many the request thread stops reading the client (back pressure).
WS_INBOX_MAX = 16

# A loop thread that runs no callback for this long is blocked (a coroutine calls
# time.sleep() or other blocking code): its stack is logged once per stall (RW0314).
# asgi.rs sets it from asgi-blocked-loop-timeout= (0: not watched).
BLOCKED_AFTER = 5.0
HEARTBEAT = 0.5

# Set by asgi.rs: log(kind, text) into Apache's error log (kind: 'error', an application's
# error, or 'blocked', the loop thread's stack).
log = None

_lock = threading.Lock()
_loop = None
_thread = None
_adapters = {}


def _error_text(prefix, error):
    return prefix + ''.join(
        traceback.format_exception(type(error), error, error.__traceback__)).rstrip()


def _wait(future, limit=None):
    """A concurrent future's result, waited for in short slices (see POLL); after limit
    seconds (None: no limit), concurrent.futures.TimeoutError."""
    import time
    deadline = None if limit is None else time.monotonic() + limit
    while True:
        try:
            return future.result(timeout=POLL)
        except concurrent.futures.TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise
            thread = _thread
            if thread is None or not thread.is_alive():
                raise RuntimeError('the ASGI event loop thread has ended') from None


# Set by asgi.rs: True in the main interpreter (application group %{GLOBAL}), the only one
# that runs its loop on uvloop (a Cython extension module: one interpreter per process).
MAIN_INTERPRETER = False
# The loop's kind once made: 'uvloop' or 'asyncio'.
loop_kind = None


def _new_loop():
    """uvloop's event loop when it is importable in the main interpreter (as uvicorn's
    `--loop auto`), else asyncio's default one."""
    global loop_kind
    if not MAIN_INTERPRETER:
        loop_kind = ('asyncio (a sub-interpreter: uvloop runs only in the main interpreter, '
                     'application group %{GLOBAL})')
        return asyncio.new_event_loop()
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except Exception as e:
        loop_kind = 'asyncio (uvloop: %s: %s)' % (type(e).__name__, e)
        return asyncio.new_event_loop()
    loop_kind = 'uvloop'
    return loop


class _Inbox:
    """Work handed from request threads to the loop: one wake-up of the loop (its
    call_soon_threadsafe: a write to its self-pipe with asyncio's loop) per batch, not
    per request; the loop drains every call queued meanwhile. The lock keeps a submit
    from being missed by a drain that is finishing (also without a GIL)."""

    def __init__(self, loop):
        self.loop = loop
        self.lock = threading.Lock()
        self.calls = collections.deque()
        self.pending = False

    def submit(self, fn, *args):
        with self.lock:
            self.calls.append((fn, args))
            if self.pending:
                return
            self.pending = True
        self.loop.call_soon_threadsafe(self.drain)

    def drain(self):
        while True:
            with self.lock:
                if not self.calls:
                    self.pending = False
                    return
                batch, self.calls = self.calls, collections.deque()
            try:
                while batch:
                    fn, args = batch.popleft()
                    try:
                        fn(*args)
                    except Exception as e:
                        if log is not None:
                            log('error', _error_text('mod_rwsgi ASGI runtime: a call handed '
                                                     'to the event loop raised:\n', e))
            finally:
                if batch:
                    # A BaseException left calls undone: they go first at the next drain
                    # (still pending, so no submit schedules another meanwhile).
                    with self.lock:
                        batch.extend(self.calls)
                        self.calls = batch
                    self.loop.call_soon(self.drain)


_inbox = None


def _event_loop():
    global _loop, _thread, _inbox
    with _lock:
        if _loop is None:
            loop = _new_loop()
            started = threading.Event()

            def run():
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name='mod_rwsgi ASGI event loop', daemon=True)
            thread.start()
            started.wait()
            _loop, _thread, _inbox = loop, thread, _Inbox(loop)
            if log is not None:
                log('loop', loop_kind)
            if BLOCKED_AFTER > 0:
                _Watchdog(loop, thread).start()
        return _loop, _inbox


class _Watchdog:
    """Logs the loop thread's stack when the loop runs no callback for BLOCKED_AFTER
    seconds: a heartbeat callback on the loop, checked from a thread of its own."""

    def __init__(self, loop, thread):
        import time
        self.loop, self.thread, self.clock = loop, thread, time.monotonic
        self.last = self.clock()
        # A short asgi-blocked-loop-timeout needs a finer beat.
        self.every = min(HEARTBEAT, BLOCKED_AFTER / 4)

    def beat(self):
        self.last = self.clock()
        self.loop.call_later(self.every, self.beat)

    def start(self):
        self.loop.call_soon_threadsafe(self.beat)
        threading.Thread(target=self.watch, name='mod_rwsgi ASGI loop watchdog',
                         daemon=True).start()

    def watch(self):
        import time
        reported = None
        while _loop is self.loop and self.thread.is_alive():
            time.sleep(self.every)
            last = self.last
            stalled = self.clock() - last
            if stalled < BLOCKED_AFTER:
                continue
            if reported == last:
                continue  # one line per stall
            reported = last
            frame = sys._current_frames().get(self.thread.ident)
            stack = ''.join(traceback.format_stack(frame)).rstrip() if frame else '(none)'
            if log is not None:
                log('blocked', 'the ASGI event loop thread has run no callback for %.1f s '
                    '(more than asgi-blocked-loop-timeout=%g s): a coroutine blocks it (time.sleep(), blocking I/O or '
                    'long computation; use await asyncio.sleep(), asyncio.to_thread() or '
                    'run_in_executor()); every ASGI request of this interpreter waits. '
                    'Its stack:\n%s' % (stalled, BLOCKED_AFTER, stack))


class _Lifespan:
    """The lifespan scope of one application, run as one task on the loop."""

    def __init__(self, app, state, loop):
        self.app, self.state, self.loop = app, state, loop
        self.startup = concurrent.futures.Future()
        self.shutdown = concurrent.futures.Future()
        self.inbox = None
        self.sent = False
        self.task = None

    async def run(self):
        self.inbox = asyncio.Queue()
        self.inbox.put_nowait({'type': 'lifespan.startup'})
        scope = {'type': 'lifespan', 'asgi': dict(ASGI), 'state': self.state}
        outcome = ('returned', 'the application returned from the lifespan scope')
        try:
            await self.app(scope, self.receive, self.send)
        except BaseException as e:
            if not self.sent:
                outcome = ('unsupported', _error_text('', e))
            else:
                outcome = ('failed', _error_text('', e))
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            for f in (self.startup, self.shutdown):
                if not f.done():
                    kind = outcome[0]
                    if f is self.startup and not self.sent:
                        kind = 'unsupported'
                    f.set_result((kind, outcome[1]))

    async def receive(self):
        return await self.inbox.get()

    async def send(self, message):
        self.sent = True
        kind = message.get('type')
        text = str(message.get('message', ''))
        if kind == 'lifespan.startup.complete':
            self.startup.set_result(('ok', ''))
        elif kind == 'lifespan.startup.failed':
            self.startup.set_result(('failed', text))
        elif kind == 'lifespan.shutdown.complete':
            self.shutdown.set_result(('ok', ''))
        elif kind == 'lifespan.shutdown.failed':
            self.shutdown.set_result(('failed', text))
        else:
            raise RuntimeError('unexpected ASGI lifespan message %r' % (kind,))

    def start(self, limit):
        """Runs lifespan.startup; ('ok'|'unsupported'|'failed'|'returned'|'timeout', text).
        Not complete within limit seconds: the lifespan task is cancelled."""
        self.task = asyncio.run_coroutine_threadsafe(self.run(), self.loop)
        try:
            return _wait(self.startup, limit)
        except concurrent.futures.TimeoutError:
            self.task.cancel()
            return ('timeout', 'not within %g s (startup-timeout)' % limit)

    def stop(self, timeout):
        """Runs lifespan.shutdown, waiting up to timeout seconds."""
        if self.startup.result()[0] != 'ok':
            return ('skipped', '')
        self.loop.call_soon_threadsafe(self.inbox.put_nowait, {'type': 'lifespan.shutdown'})
        try:
            return self.shutdown.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            self.task.cancel()
            return ('timeout', 'lifespan.shutdown did not complete within %g s' % timeout)


class _Done:
    pass


class _Flush:
    """For a WebSocket's request thread: a direct send left the rest of its message to
    write (ws.wait and ws.flush write it)."""


def _settle(future, result=None, error=None):
    """Sets a loop future's result or exception (unless done); in the loop."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _settle_in_loop(loop, future, result=None, error=None):
    """Sets a loop future's result or exception from another thread (unless done)."""
    loop.call_soon_threadsafe(_settle, future, result, error)


# '200 OK' ... for every status http.HTTPStatus knows (an enum lookup per response costs
# more than the dict's).
_STATUS_LINES = {s.value: '%d %s' % (s.value, s.phrase) for s in http.HTTPStatus}


def _status_line(status, kind):
    """'200 OK' for an int status of a `kind` message (TypeError otherwise)."""
    if type(status) is int:
        line = _STATUS_LINES.get(status)
        if line is not None:
            return line
    if not isinstance(status, int) or isinstance(status, bool):
        raise TypeError('ASGI: %s status must be an int, not %r' % (kind, status))
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = 'Unknown'
    return '%d %s' % (status, reason)


def _header_pairs(message):
    """A response start message's headers as start_response's (str, str) pairs."""
    return [(bytes(name).decode('latin-1'), bytes(value).decode('latin-1'))
            for name, value in message.get('headers', ())]


class _Exchange:
    """One request: the loop side (receive, send) and the request thread side (serve)."""

    def __init__(self, loop, inbox, environ, start_response):
        self.loop = loop
        self.inbox = inbox
        self.input = environ['wsgi.input']
        self.file_wrapper = environ.get('wsgi.file_wrapper')
        try:
            self.remaining = int(environ.get('CONTENT_LENGTH') or '')
        except ValueError:
            # No Content-Length (a chunked body): read until wsgi.input says the end.
            self.remaining = None
        self.start_response = start_response
        self.write = None
        self.ops = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.closed = False
        self.body_done = False
        # The loop side's view of the response (send() checks the order with them) ...
        self.sent_start = False
        self.sent_body = False
        self.sent_last = False
        # ... and the request thread's: the head (status, headers) start_response gets
        # with the first body bytes or the file, and what it has written.
        self.head = None
        self.started = False
        self.complete = False
        # serve()'s result: [] or, for http.response.pathsend, a wsgi.file_wrapper of the
        # file (the daemon hands its fd to Apache, as for a WSGI file response).
        self.result = []
        # Queued response bytes not yet written (under lock), and a write's error.
        self.pending = 0
        self.failure = None
        # The coroutine, its task (made in the loop) and how it ended (under lock: finished,
        # error; background = the request thread returned while the coroutine ran on).
        self.task = None
        self.finished = False
        self.error = None
        self.background = False
        # Set (in the loop) once the request thread is done; made only when receive() waits
        # for it, so that a request whose app never waits costs no extra hop to the loop.
        self.gone = None
        # Set when the Apache side said the client left (it closed the daemon connection).
        self.client_left = False
        self.client_gone = getattr(self.input, '_rwsgi_client_gone', None)

    # The loop side.

    def _start(self, app, scope):
        self.task = self.loop.create_task(self.main(app, scope))

    def _cancel(self):
        if self.task is not None:
            self.task.cancel()

    async def main(self, app, scope):
        error, background = await _run_app(app, scope, self.receive, self.send, self._ended)
        if background:
            self._log_late(error)

    def _ended(self, error):
        """The coroutine ended (with `error`, or None): True if its request had already."""
        with self.lock:
            self.finished = True
            self.error = error
            background = self.background
        self.ops.put(_Done)
        return background

    def _log_late(self, error):
        """Logs an error of the coroutine after its request ended: not a cancellation, and
        not after a failed write (the daemon logged that; the coroutine's next send() raised
        OSError, which a framework may turn into an exception of its own)."""
        if (error is None or isinstance(error, asyncio.CancelledError)
                or self.failure is not None):
            return
        if self.client_left:
            # A send() after the client left raises OSError; anything else is the app's.
            if not isinstance(error, OSError) and log is not None:
                log('error', _error_text('ASGI application raised after its client left:\n',
                                         error))
            return
        _log_after_response(error)

    async def receive(self):
        if not self.body_done and not self.closed:
            if self.remaining == 0:
                # No body: answered here, without a hop to the request thread.
                self.body_done = True
                return {'type': 'http.request', 'body': b'', 'more_body': False}
            future = self.loop.create_future()
            with self.lock:
                queued = not self.closed
                if queued:
                    self.ops.put(('receive', None, future))
            if queued:
                message = await future
                if message is not None:
                    return message
        with self.lock:
            if not self.closed:
                if self.gone is None:
                    self.gone = asyncio.Event()
                gone = self.gone
            else:
                gone = None
        if gone is not None:
            await gone.wait()
        return {'type': 'http.disconnect'}

    async def send(self, message):
        op, size = self._check(message)
        future = None
        with self.lock:
            if self.closed:
                raise OSError('the response is complete or the client connection is gone')
            self.pending += size
            if self.pending > SEND_BUFFER:
                future = self.loop.create_future()
            self.ops.put(('send', op, future))
        if future is not None:
            await future

    def _check(self, message):
        """A send()'s message checked (errors raise at the coroutine's send()) and made
        ready for the request thread: (op, response bytes it holds)."""
        kind = message.get('type') if isinstance(message, dict) else None
        if self.sent_last:
            raise RuntimeError('ASGI: %s sent after the response was complete' % (kind,))
        if kind == 'http.response.start':
            if self.sent_start:
                raise RuntimeError('ASGI: http.response.start sent twice')
            line = _status_line(message.get('status'), kind)
            headers = _header_pairs(message)
            self.sent_start = True
            return ('start', line, headers), 0
        if kind == 'http.response.body':
            if not self.sent_start:
                raise RuntimeError('ASGI: http.response.body sent before http.response.start')
            body = message.get('body', b'')
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise TypeError('ASGI: http.response.body body must be bytes, not %s'
                                % type(body).__name__)
            # A copy: the application may reuse a bytearray once send() returned.
            body = bytes(body)
            more = bool(message.get('more_body', False))
            self.sent_last = not more
            self.sent_body = True
            return ('body', body, more), len(body)
        if kind == 'http.response.pathsend':
            return ('file', self._open_path(message), None), 0
        raise RuntimeError('ASGI: unexpected message %r for an http scope' % (kind,))

    def _open_path(self, message):
        """http.response.pathsend's file, opened (errors raise at the app's send())."""
        opened = _open_path(self, message)
        self.sent_last = True
        return opened

    # The request thread side.

    def _answer(self, future, result=None, error=None):
        self.inbox.submit(_settle, future, result, error)

    def _read(self):
        if self.remaining == 0:
            data = b''
        else:
            want = BODY_CHUNK if self.remaining is None else min(BODY_CHUNK, self.remaining)
            data = self.input.read(want)
        if self.remaining is not None:
            self.remaining -= len(data)
            self.body_done = self.remaining <= 0 or not data
        else:
            self.body_done = not data
        return {'type': 'http.request', 'body': data, 'more_body': not self.body_done}

    def _send(self, op):
        if op[0] == 'start':
            self.head = (op[1], op[2])
            self.started = True
            return
        if op[0] == 'file':
            f, size = op[1]
            try:
                line, headers = self.head
                if not any(name.lower() == 'content-length' for name, _ in headers):
                    headers.append(('Content-Length', str(size)))
                self.start_response(line, headers)
                wrapper = self.file_wrapper
                self.result = wrapper(f) if wrapper is not None else _FileBody(f)
            except BaseException:
                f.close()
                raise
            self.complete = True
            return
        _, body, more = op
        if not more:
            # The last body: serve()'s result, so the daemon sends it after the Python work
            # together with the response's end (a small one without the GIL, one write).
            if self.write is None:
                self.start_response(*self.head)
            with self.lock:
                self.pending -= len(body)
            self.result = [body] if body else []
            self.complete = True
            return
        if self.write is None:
            self.write = self.start_response(*self.head)
        if body:
            try:
                self.write(body)
            finally:
                with self.lock:
                    self.pending -= len(body)
        if not more:
            self.complete = True

    def _serve_op(self, kind, message, future):
        try:
            result = self._read() if kind == 'receive' else self._send(message)
        except Exception as e:
            if future is None:
                # A queued send() that did not wait: the request ends with this error, the
                # coroutine's next send() raises OSError.
                self.failure = e
            else:
                self._answer(future, error=e)
        else:
            if future is not None:
                self._answer(future, result)

    def _pump(self):
        """Serves the coroutine's operations until the response is complete or it ends."""
        while not self.complete and self.failure is None:
            try:
                item = self.ops.get(timeout=POLL)
            except queue.Empty:
                # The application waits (in receive(), a sleep ...): has the client left?
                if self.client_gone is not None and self.client_gone():
                    self.client_left = True
                    return
                continue
            if item is _Done:
                return
            self._serve_op(*item)

    def serve(self, app, scope):
        # The task is made in the loop (no concurrent future to chain, wait on or notify).
        self.inbox.submit(self._start, app, scope)
        # The loop is a call of its own: an asynchronous exception (RequestTimeout) is
        # raised at whatever instruction the thread is on, and CPython's exception table
        # does not cover every jump of a loop (3.11 at a `continue`, 3.14 at the backward
        # jump of a `while`), so in serve() itself it could escape the handler below; from
        # a call it is raised at the call, which the handler covers.
        try:
            self._pump()
        except BaseException:
            # After _start (the inbox keeps the order).
            self.inbox.submit(self._cancel)
            self._close()
            raise
        finished, error = self._close()
        if self.failure is not None or self.complete:
            # An error of a coroutine that ended meanwhile; one still running logs its own.
            if finished:
                self._log_late(error)
            if self.failure is not None:
                raise self.failure
            return self.result
        if self.client_left:
            # receive() now answers http.disconnect; the coroutine goes on in the loop, this
            # thread is free. Nobody to answer: the Apache side has logged the client's leaving.
            if finished:
                self._log_late(error)
            if self.write is None:
                # The daemon's write of it finds the connection closed, as for a WSGI
                # response whose client left; nginx's code for a client that closed.
                self.start_response('499 Client Closed Request', [])
            return []
        # The coroutine ended before the response did.
        if error is not None:
            raise error
        if not self.started:
            raise RuntimeError('ASGI application returned without sending http.response.start')
        raise RuntimeError('ASGI application returned before its response body was complete '
                           '(no http.response.body with more_body False)')

    def _close(self):
        """Ends the exchange for the coroutine's receive() and send(); (finished, error)."""
        with self.lock:
            self.closed = True
            self.background = not self.finished
            finished, error, gone = self.finished, self.error, self.gone
        while True:
            try:
                item = self.ops.get_nowait()
            except queue.Empty:
                break
            if item is not _Done:
                kind, op, future = item
                if kind == 'send' and op[0] == 'file':
                    op[1][0].close()  # a pathsend's file not handed on
                if future is None:
                    continue
                if kind == 'receive':
                    self._answer(future, None)
                else:
                    self._answer(future, error=OSError(
                        'the response is complete or the client connection is gone'))
        if gone is not None:
            self.inbox.submit(gone.set)
        return finished, error


async def _run_app(app, scope, receive, send, ended):
    """Awaits the application, then `ended(error)` whatever happened (error: what it raised,
    or None); returns (error, what `ended` returned). KeyboardInterrupt and SystemExit
    propagate after `ended`."""
    error = None
    try:
        await app(scope, receive, send)
    except BaseException as e:
        error = e
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
    finally:
        result = ended(error)
    return error, result


class _FileBody:
    """A file's blocks as a response iterable (no wsgi.file_wrapper in environ)."""

    def __init__(self, f):
        self.f = f

    def __iter__(self):
        return iter(lambda: self.f.read(BODY_CHUNK), b'')

    def close(self):
        self.f.close()


# The native path (asgi_native.rs): an HTTP request whose request thread waits in Rust
# without the GIL. The loop gets it through an eventfd (_native_reader) and runs it here;
# send() hands its messages to the request's handle, a Rust callable: handle(op, ...).
_START, _BODY, _FILE, _DONE, _STATE, _WAIT_GONE, _WAIT_DRAIN = range(7)
# The exchanges running, by id: what _native_wake and _native_cancel find.
_native = {}


def _native_reader(fd, drain):
    """Puts the native path's eventfd under the loop's watch (drain runs when it is set)."""
    loop, _ = _event_loop()
    loop.call_soon_threadsafe(loop.add_reader, fd, drain)


def _native_start(adapter, handle, ident, body, fields):
    """Runs the application for one request of the native path; in the loop."""
    (http_version, method, scheme, path, raw_path, query, root_path, headers, client,
     server) = fields
    scope = {
        'type': 'http',
        'asgi': {'version': '3.0', 'spec_version': '2.3'},
        'http_version': http_version,
        'method': method,
        'scheme': scheme,
        'path': path,
        'raw_path': raw_path,
        'query_string': query,
        'root_path': root_path,
        'headers': headers,
        'client': client,
        'server': server,
        'state': dict(adapter.state),
        'extensions': {'http.response.pathsend': {}},
    }
    exchange = _Native(adapter.loop, handle, ident, body)
    _native[ident] = exchange
    exchange.task = adapter.loop.create_task(exchange.main(adapter.app, scope))


def _native_wake(ident):
    exchange = _native.get(ident)
    if exchange is not None:
        exchange.woken()


def _native_cancel(ident):
    exchange = _native.get(ident)
    if exchange is not None and exchange.task is not None:
        exchange.task.cancel()


class _Native:
    """One HTTP request of the native path, in the loop: the application's receive() and
    send(). The request's body is all here; the request thread writes what send() hands to
    the handle."""

    __slots__ = ('loop', 'handle', 'ident', 'body', 'body_done', 'sent_start', 'sent_body',
                 'sent_last', 'gone', 'drained', 'task')

    def __init__(self, loop, handle, ident, body):
        self.loop, self.handle, self.ident, self.body = loop, handle, ident, body
        self.body_done = False
        self.sent_start = self.sent_body = self.sent_last = False
        self.gone = None  # an Event receive() waits on for http.disconnect
        self.drained = None  # the future send() waits on (flow control)
        self.task = None

    async def main(self, app, scope):
        await _run_app(app, scope, self.receive, self.send, self._ended)

    def _ended(self, error):
        _native.pop(self.ident, None)
        self._done(error)

    def _done(self, error):
        """Tells the request thread the coroutine ended; logs an error it does not answer."""
        if self.sent_last:
            ended = self.handle(_DONE, None) or 'complete'
        elif error is None:
            # Logged and answered 500 while the request thread waits; after the request
            # ended (the client left, request-timeout) a return is no error.
            self.handle(_DONE, RuntimeError(
                'ASGI application returned before its response body was complete (no '
                'http.response.body with more_body False)' if self.sent_start else
                'ASGI application returned without sending http.response.start'))
            return
        else:
            ended = self.handle(_DONE, error)
            if ended is None:
                return  # logged; the request thread answers 500
        if error is None or isinstance(error, asyncio.CancelledError) or ended == 'failed':
            # After a failed write the daemon logged it; the coroutine's send() raised
            # OSError, which a framework may turn into an exception of its own.
            return
        if ended == 'client_left':
            if not isinstance(error, OSError) and log is not None:
                log('error', _error_text('ASGI application raised after its client left:\n',
                                         error))
            return
        _log_after_response(error)

    def woken(self):
        ended, drained = self.handle(_STATE)
        if self.drained is not None and (drained or ended is not None):
            future, self.drained = self.drained, None
            if not future.done():
                future.set_result(None)
        if self.gone is not None and ended is not None:
            self.gone.set()

    async def receive(self):
        if not self.body_done:
            self.body_done = True
            body, self.body = self.body, b''
            return {'type': 'http.request', 'body': body, 'more_body': False}
        if self.gone is None:
            self.gone = asyncio.Event()
        if not self.handle(_WAIT_GONE):
            await self.gone.wait()
        return {'type': 'http.disconnect'}

    async def send(self, message):
        kind = message.get('type') if isinstance(message, dict) else None
        if self.sent_last:
            raise RuntimeError('ASGI: %s sent after the response was complete' % (kind,))
        if kind == 'http.response.start':
            if self.sent_start:
                raise RuntimeError('ASGI: http.response.start sent twice')
            self.handle(_START, _status_line(message.get('status'), kind),
                        message.get('headers', ()))
            self.sent_start = True
            return
        if kind == 'http.response.body':
            if not self.sent_start:
                raise RuntimeError('ASGI: http.response.body sent before http.response.start')
            more = bool(message.get('more_body', False))
            over = self.handle(_BODY, message.get('body', b''), more)
            self.sent_last = not more
            self.sent_body = True
            if over:
                self.drained = self.loop.create_future()
                if self.handle(_WAIT_DRAIN):
                    self.drained = None
                else:
                    await self.drained
                if self.handle(_STATE)[0] is not None:
                    raise OSError('the response is complete or the client connection is gone')
            return
        if kind == 'http.response.pathsend':
            f, size = _open_path(self, message)
            try:
                self.handle(_FILE, f.fileno(), size)
            finally:
                f.close()
            self.sent_last = True
            return
        raise RuntimeError('ASGI: unexpected message %r for an http scope' % (kind,))


def _open_path(exchange, message):
    """http.response.pathsend's file, opened, and its size (errors raise at the app's
    send())."""
    if not exchange.sent_start:
        raise RuntimeError('ASGI: http.response.pathsend sent before http.response.start')
    if exchange.sent_body:
        raise RuntimeError('ASGI: http.response.pathsend sent after http.response.body')
    path = message.get('path')
    if not isinstance(path, str):
        raise TypeError('ASGI: http.response.pathsend path must be a str, not %s'
                        % type(path).__name__)
    if not os.path.isabs(path):
        raise ValueError('ASGI: http.response.pathsend path %r is not absolute' % (path,))
    f = open(path, 'rb')
    try:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError('ASGI: http.response.pathsend path %r is not a regular file'
                             % (path,))
    except BaseException:
        f.close()
        raise
    return f, info.st_size


class _WebSocket:
    """One WebSocket request: the application's coroutine on the loop (receive, send) and
    the request thread (serve), which talks to Apache through environ's
    `mod_rwsgi.websocket` (ws): ws.wait() returns the client's next message, or 'wake'
    when the loop has queued an operation (a byte on the wake pipe)."""

    def __init__(self, loop, start_response, ws):
        self.loop = loop
        self.start_response = start_response
        self.ws = ws
        self.write = None
        self.ops = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.closed = False
        # 'connecting' -> 'connected' (after websocket.accept) | 'http' (denial response)
        # -> 'closed'
        self.state = 'connecting'
        self.complete = False
        self.disconnected = False
        self.inbox = None
        # Sends queued for the request thread (counted by the loop) and written or failed
        # by it (counted by the request thread): a direct send only when they are equal,
        # so it never overtakes a queued one.
        self.sends_queued = 0
        self.sends_done = 0
        # Once accepted: the descriptor the loop reads the client's messages from (None:
        # the request thread reads them with ws.wait()); watched now, closed for good.
        self.read_fd = None
        self.reading = False
        self.read_stopped = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    # The loop side.

    async def main(self, app, scope):
        self.inbox = asyncio.Queue()
        self.inbox.put_nowait({'type': 'websocket.connect'})
        try:
            await app(scope, self.receive, self.send)
        finally:
            self._queue(_Done)

    def _queue(self, item):
        with self.lock:
            if self.closed:
                return False
            self.ops.put(item)
            self._wake_locked()
            return True

    def _wake_locked(self):
        try:
            os.write(self.wake_w, b'.')
        except OSError:
            pass  # full: the request thread is already due to wake

    async def receive(self):
        full = self.inbox.qsize() >= WS_INBOX_MAX
        message = await self.inbox.get()
        if message['type'] == 'websocket.disconnect':
            self.inbox.put_nowait(message)  # and for every later receive()
        elif full:
            if self.read_fd is not None:
                self._start_reading()
            else:
                with self.lock:
                    if not self.closed:
                        self._wake_locked()
        return message

    def _start_reading(self):
        """Watches the client's connection (again), and takes what is already here."""
        if (self.read_fd is None or self.reading or self.read_stopped
                or self.state != 'connected'):
            return
        self.loop.add_reader(self.read_fd, self._readable)
        # uvloop (libuv) made the connection non-blocking for all its descriptors; the
        # request thread's writes wait for it (they also cope with the moment between).
        os.set_blocking(self.read_fd, True)
        self.reading = True
        self._readable()  # the decoder may hold messages read ahead

    def _stop_reading(self):
        """For good: the descriptor is closed once the loop no longer watches it."""
        if self.reading:
            self.loop.remove_reader(self.read_fd)
            self.reading = False
        if not self.read_stopped:
            self.read_stopped = True
            self.ws.stop_reading()

    def _readable(self):
        try:
            events = self.ws.recv_now()
        except OSError:
            events = [('close', 1006, '')]  # the connection to Apache is gone
        for event in events:
            kind = event[0]
            if kind == 'text':
                self.inbox.put_nowait({'type': 'websocket.receive', 'text': event[1]})
            elif kind == 'bytes':
                self.inbox.put_nowait({'type': 'websocket.receive', 'bytes': event[1]})
            else:
                # The client closed: the request thread ends the WebSocket.
                self._stop_reading()
                self._queue(('close', event[1], event[2]))
                return
        if self.reading and self.inbox.qsize() >= WS_INBOX_MAX:
            # Back pressure: receive() watches it again once the application takes one.
            self.loop.remove_reader(self.read_fd)
            self.reading = False

    async def send(self, message):
        if (self.state == 'connected' and self.sends_queued == self.sends_done
                and isinstance(message, dict) and message.get('type') == 'websocket.send'):
            text = message.get('text')
            if text is not None:
                data = str(text)
            else:
                data = message.get('bytes')
                if data is not None:
                    data = bytes(data)
            # Raises OSError when the connection failed, as the request thread's write.
            sent = self.ws.send_now(data) if data is not None else 0
            if sent:
                if sent == 2:
                    self._queue(_Flush)
                return
        future = self.loop.create_future()
        self.sends_queued += 1
        if not self._queue(('send', message, future)):
            self.sends_queued -= 1
            raise OSError('the WebSocket is closed')
        await future

    # The request thread side.

    def _deliver(self, message):
        self.loop.call_soon_threadsafe(self.inbox.put_nowait, message)

    def _disconnect(self, code, reason=''):
        if not self.disconnected:
            self.disconnected = True
            self._deliver({'type': 'websocket.disconnect', 'code': code, 'reason': reason})
        self.state = 'closed'

    def _answer(self, future, result=None, error=None):
        _settle_in_loop(self.loop, future, result, error)

    def _send(self, message):
        kind = message.get('type') if isinstance(message, dict) else None
        if self.state == 'connecting':
            if kind == 'websocket.accept':
                headers = _header_pairs(message)
                subprotocol = message.get('subprotocol')
                if subprotocol is not None:
                    headers.append(('Sec-WebSocket-Protocol', str(subprotocol)))
                self.write = self.start_response('101 Switching Protocols', headers)
                self.write(b'')  # the 101 head goes to Apache now
                self.state = 'connected'
                self.ws.opened()
                self.read_fd = self.ws.read_fd()
                if self.read_fd is not None:
                    # Before the accept's answer: the loop reads from now on.
                    self.loop.call_soon_threadsafe(self._start_reading)
                return
            if kind == 'websocket.close':
                self.start_response('403 Forbidden', [('Content-Type', 'text/plain'),
                                                      ('Content-Length', '0')])
                self.complete = True
                self._disconnect(message.get('code') or 1000, message.get('reason') or '')
                return
            if kind == 'websocket.http.response.start':
                self.write = self.start_response(_status_line(message.get('status'), kind),
                                                 _header_pairs(message))
                self.state = 'http'
                return
        elif self.state == 'http' and kind == 'websocket.http.response.body':
            body = message.get('body', b'')
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise TypeError('ASGI: websocket.http.response.body body must be bytes')
            if body:
                self.write(bytes(body))
            if not message.get('more_body', False):
                self.complete = True
                self._disconnect(1000)
            return
        elif self.state == 'connected':
            if kind == 'websocket.send':
                text, data = message.get('text'), message.get('bytes')
                if text is not None:
                    self.ws.send(str(text))
                elif data is not None:
                    self.ws.send(bytes(data))
                else:
                    raise TypeError('ASGI: websocket.send without text or bytes')
                return
            if kind == 'websocket.close':
                code = message.get('code') or 1000
                reason = message.get('reason') or ''
                self.ws.close(int(code), str(reason))
                self._disconnect(code, reason)
                return
        elif self.state == 'closed':
            raise OSError('the WebSocket is closed')
        raise RuntimeError('ASGI: unexpected message %r for a websocket scope in state %s'
                           % (kind, self.state))

    def _drain_wake(self):
        try:
            while os.read(self.wake_r, 4096):
                pass
        except OSError:
            pass

    def _client_event(self):
        """Waits for the client (or a wake-up) once; handles what came."""
        try:
            event = self.ws.wait(self.wake_r, POLL)
        except OSError:
            self._disconnect(1006)  # the connection to Apache is gone
            return
        kind = event[0]
        if kind == 'wake':
            self._drain_wake()
        elif kind == 'text':
            self._deliver({'type': 'websocket.receive', 'text': event[1]})
        elif kind == 'bytes':
            self._deliver({'type': 'websocket.receive', 'bytes': event[1]})
        elif kind == 'close':
            self._disconnect(event[1], event[2])
        elif kind == 'shutdown':
            try:
                self.ws.close(1012, 'service restart')
            except OSError:
                pass
            self._disconnect(1012, 'service restart')

    def _pump(self):
        """Serves until the WebSocket (or the denial response) is over: 'over', or 'done'
        when the coroutine ended first."""
        item = None
        while self.state != 'closed' and not self.complete:
            if item is None:
                try:
                    item = self.ops.get_nowait()
                except queue.Empty:
                    pass
            if item is _Done:
                return 'done'
            if item is _Flush:
                item = None  # written below, in ws.wait or ws.flush
            elif item is not None:
                op, item = item, None
                if op[0] == 'close':  # the loop read the client's close
                    self._disconnect(op[1], op[2])
                    continue
                _, message, future = op
                try:
                    self._send(message)
                except Exception as e:
                    self.sends_done += 1
                    self._answer(future, error=e)
                else:
                    self.sends_done += 1
                    self._answer(future)
                continue
            if self.state == 'connected' and (self.read_fd is not None
                                              or self.inbox.qsize() < WS_INBOX_MAX):
                self._client_event()
            else:
                if self.state == 'connected' and not self.ws.flush(POLL):
                    continue  # the rest of a direct send still waits for the client
                try:
                    item = self.ops.get(timeout=POLL)
                except queue.Empty:
                    pass
        return 'over'

    def serve(self, app, scope):
        task = asyncio.run_coroutine_threadsafe(self.main(app, scope), self.loop)
        try:
            outcome = self._pump()
        except BaseException:
            task.cancel()
            self._close()
            raise
        if outcome == 'over':
            self._close()
            task.add_done_callback(_after_response)
            return []
        state = self.state
        self._close()
        error = task.exception()
        if error is not None:
            raise error
        if state == 'connected':
            # Returned without closing: a normal close, as other ASGI servers do.
            self.ws.close(1000, '')
            return []
        if state == 'connecting':
            raise RuntimeError('ASGI application returned without accepting or closing the '
                               'WebSocket')
        raise RuntimeError('ASGI application returned before its websocket.http.response '
                           'body was complete')

    def _close(self):
        if self.read_fd is not None:
            self.loop.call_soon_threadsafe(self._stop_reading)
        self.ws.finished()
        with self.lock:
            self.closed = True
            os.close(self.wake_w)
        os.close(self.wake_r)
        while True:
            try:
                item = self.ops.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, tuple) and item[0] == 'send':
                self.sends_done += 1
                self._answer(item[2], error=OSError('the WebSocket is closed'))
        if self.inbox is not None:
            self._disconnect(1006 if self.state != 'closed' else 1000)


def websocket_scope(environ, state):
    scope = http_scope(environ, state)
    del scope['method']
    scope['type'] = 'websocket'
    scope['asgi'] = dict(ASGI)
    scope['scheme'] = 'wss' if scope['scheme'] == 'https' else 'ws'
    offered = environ.get('HTTP_SEC_WEBSOCKET_PROTOCOL', '')
    scope['subprotocols'] = [p.strip() for p in offered.split(',') if p.strip()]
    scope['extensions'] = {'websocket.http.response': {}}
    return scope


def _after_response(task):
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        _log_after_response(error)


def _log_after_response(error):
    if log is not None:
        log('error', _error_text('ASGI application raised after its response was complete:\n',
                                 error))


def _text(value):
    return value.encode('latin-1').decode('utf-8', 'replace')


# The environ key under which the Apache side sends an ASGI request's headers, one
# `name:value` line each (src/handler/mod.rs, asgi_header_list).
HEADERS_KEY = 'mod_rwsgi.asgi_headers'
_CGI_NAMES = {'CONTENT-TYPE': 'CONTENT_TYPE', 'CONTENT-LENGTH': 'CONTENT_LENGTH'}


def _header_list(raw, environ):
    """The scope's headers from the Apache side's list: order kept, names lower case.
    A header whose name could be a CGI variable but which environ does not hold
    (Authorization without WSGIPassAuthorization, a proxy header WSGITrustedProxyHeaders
    removed) stays out, as it does for a WSGI application."""
    headers = []
    for line in raw.split('\n'):
        name, colon, value = line.partition(':')
        if not colon:
            continue
        upper = name.upper()
        if upper.replace('-', '').isalnum() and upper.isascii():
            key = _CGI_NAMES.get(upper) or 'HTTP_' + upper.replace('-', '_')
            if key not in environ:
                continue
        headers.append((name.lower().encode('latin-1'), value.encode('latin-1')))
    return headers


def http_scope(environ, state):
    raw = environ.pop(HEADERS_KEY, None)
    if raw is not None:
        return _scope(environ, state, _header_list(raw, environ))
    headers = []
    for key, value in environ.items():
        if key.startswith('HTTP_'):
            name = key[5:].replace('_', '-').lower()
        elif key in ('CONTENT_TYPE', 'CONTENT_LENGTH') and value:
            name = key.replace('_', '-').lower()
        else:
            continue
        headers.append((name.encode('latin-1'), value.encode('latin-1')))
    return _scope(environ, state, headers)


def _scope(environ, state, headers):
    script_name = environ.get('SCRIPT_NAME', '')
    path = script_name + environ.get('PATH_INFO', '')
    uri = environ.get('REQUEST_URI', '') or path.encode('latin-1').decode('latin-1')
    raw_path = uri.split('?', 1)[0].encode('latin-1')
    protocol = environ.get('SERVER_PROTOCOL', 'HTTP/1.1')
    version = protocol.split('/', 1)[-1]
    if version == '2.0':
        version = '2'
    client = None
    if environ.get('REMOTE_ADDR'):
        try:
            port = int(environ.get('REMOTE_PORT', '0'))
        except ValueError:
            port = 0
        client = (environ['REMOTE_ADDR'], port)
    try:
        server_port = int(environ.get('SERVER_PORT', '0'))
    except ValueError:
        server_port = 0
    return {
        'type': 'http',
        'asgi': dict(ASGI),
        'http_version': version,
        'method': environ.get('REQUEST_METHOD', 'GET').upper(),
        'scheme': environ.get('wsgi.url_scheme', 'http'),
        'path': _text(path),
        'raw_path': raw_path,
        'query_string': environ.get('QUERY_STRING', '').encode('latin-1'),
        'root_path': _text(script_name),
        'headers': headers,
        'client': client,
        'server': (environ.get('SERVER_ADDR') or environ.get('SERVER_NAME', ''), server_port),
        'state': dict(state),
        'extensions': {'http.response.pathsend': {}},
    }


class Adapter:
    """An ASGI application as the WSGI callable the daemon's request path calls."""

    def __init__(self, app):
        self.app = app
        self.state = {}
        self.loop, self.inbox = _event_loop()
        self.lifespan = _Lifespan(app, self.state, self.loop)

    def __call__(self, environ, start_response):
        ws = environ.get('mod_rwsgi.websocket')
        if ws is not None:
            exchange = _WebSocket(self.loop, start_response, ws)
            return exchange.serve(self.app, websocket_scope(environ, self.state))
        exchange = _Exchange(self.loop, self.inbox, environ, start_response)
        return exchange.serve(self.app, http_scope(environ, self.state))


def adapter(app, limit):
    """(the adapter, None) for an application already started, else (adapter, (kind,
    text)) after its lifespan.startup; kind 'failed' leaves it unregistered."""
    with _lock:
        entry = _adapters.get(id(app))
    if entry is not None and entry[0] is app:
        return entry[1], None
    made = Adapter(app)
    outcome = made.lifespan.start(limit)
    if outcome[0] in ('failed', 'timeout'):
        return made, outcome
    with _lock:
        entry = _adapters.get(id(app))
        if entry is not None and entry[0] is app:
            return entry[1], None
        _adapters[id(app)] = (app, made)
    return made, outcome


def shutdown(timeout):
    """lifespan.shutdown of every started application (timeout seconds in all), then the
    loop stops; [(kind, text)] per application whose lifespan had started."""
    global _loop, _thread
    import time
    deadline = time.monotonic() + timeout
    results = []
    with _lock:
        adapters = [a for _, a in _adapters.values()]
        _adapters.clear()
    for a in adapters:
        left = max(0.0, deadline - time.monotonic())
        outcome = a.lifespan.stop(left)
        if outcome[0] != 'skipped':
            results.append(outcome)
    with _lock:
        loop, thread, _loop, _thread = _loop, _thread, None, None
    if loop is not None:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(max(0.5, deadline - time.monotonic()))
    return results
