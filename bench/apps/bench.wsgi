"""WSGI app for `make bench`: one route per workload.

The payload files live in ../data next to this script's directory (bench/run.py writes
them); the static variant serves the very same files with Apache core.
"""

import os
import time

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data')


def _read(name):
    with open(os.path.join(DATA, name), 'rb') as f:
        return f.read()


# BENCH_RECORD_METRICS=1 (bench/run.py passes the environment on): mod_wsgi's metrics
# recording on, to measure what it costs per request.
if os.environ.get('BENCH_RECORD_METRICS') == '1':
    import mod_wsgi
    mod_wsgi.start_recording_metrics()

HELLO = _read('hello.txt')
BODY_64K = _read('64k.bin')
FILE_1M = os.path.join(DATA, '1m.bin')
FILE_1M_SIZE = os.path.getsize(FILE_1M)
WRITE_CHUNKS = 16
CHUNK = len(BODY_64K) // WRITE_CHUNKS


def _headers(length):
    return [('Content-Type', 'application/octet-stream'),
            ('Content-Length', str(length))]


def hello(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'),
                              ('Content-Length', str(len(HELLO)))])
    return [HELLO]


def body_64k(environ, start_response):
    start_response('200 OK', _headers(len(BODY_64K)))
    return [BODY_64K]


def file_1m(environ, start_response):
    start_response('200 OK', _headers(FILE_1M_SIZE))
    f = open(FILE_1M, 'rb')
    wrapper = environ.get('wsgi.file_wrapper')
    if wrapper is None:
        # It is optional (PEP 3333); granian has none: the file in blocks, as its fallback.
        return _blocks(f, 65536)
    return wrapper(f, 65536)


def _blocks(f, size):
    with f:
        while True:
            block = f.read(size)
            if not block:
                return
            yield block


def echo(environ, start_response):
    length = int(environ.get('CONTENT_LENGTH') or 0)
    body = environ['wsgi.input'].read(length)
    start_response('200 OK', _headers(len(body)))
    return [body]


def write_16(environ, start_response):
    write = start_response('200 OK', _headers(len(BODY_64K)))
    for i in range(WRITE_CHUNKS):
        write(BODY_64K[i * CHUNK:(i + 1) * CHUNK])
    return []


CPU_LOOPS = 20000


def cpu(environ, start_response):
    # A CPU-bound page: pure Python arithmetic, about a millisecond, holding the GIL.
    total = 0
    for i in range(CPU_LOOPS):
        total += i * i % 7
    body = b'cpu done %d' % total
    start_response('200 OK', [('Content-Type', 'text/plain'),
                              ('Content-Length', str(len(body)))])
    return [body]


def sleep_20ms(environ, start_response):
    time.sleep(0.02)  # an I/O wait (a database stand-in): the GIL is released
    return hello(environ, start_response)


ROUTES = {
    '/hello': hello,
    '/64k': body_64k,
    '/file1m': file_1m,
    '/echo': echo,
    '/write16': write_16,
    '/cpu': cpu,
    '/sleep20': sleep_20ms,
}


def application(environ, start_response):
    route = ROUTES.get(environ.get('PATH_INFO', ''))
    if route is None:
        start_response('404 Not Found', [('Content-Type', 'text/plain')])
        return [b'not found\n']
    return route(environ, start_response)
