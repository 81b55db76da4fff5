# The number of glibc malloc arenas in this process (one <heap nr=...> per arena in
# malloc_info's XML), after THREADS threads have each allocated while all are alive: glibc
# gives each new allocating thread its own arena, up to M_ARENA_MAX.
import ctypes
import os
import tempfile
import threading

THREADS = 12

libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]


def arenas():
    fd, path = tempfile.mkstemp(prefix="rwsgi-heap-")
    os.close(fd)
    try:
        stream = libc.fopen(path.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        with open(path) as f:
            return f.read().count("<heap nr=")
    finally:
        os.unlink(path)


def application(environ, start_response):
    barrier = threading.Barrier(THREADS + 1, timeout=10)
    done = threading.Event()

    def allocate():
        block = libc.malloc(4096)
        barrier.wait()
        done.wait(10)
        libc.free(block)

    threads = [threading.Thread(target=allocate) for _ in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait()
    count = arenas()
    done.set()
    for t in threads:
        t.join(10)
    body = str(count).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
