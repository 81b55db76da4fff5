# A WSGI app that breaks the rules on purpose, one route per way (tests/bad_input.rs).
# Every failure message carries the route name, so a test can find its own log line.
import os
import sys
import time


def _ok(start_response, body=b"ok"):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _query(environ):
    out = {}
    for part in environ.get("QUERY_STRING", "").split("&"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


class RaisingClose:
    def __iter__(self):
        yield b"body before a failing close"

    def close(self):
        raise RuntimeError("close-raises: close() failed on purpose")


class RaisingIter:
    def __iter__(self):
        raise RuntimeError("iter-raises: __iter__ failed on purpose")


def _client(environ):
    """The tag tests/bad_input.rs looks for: the same words Apache logs for the connection."""
    return "client %s:%s" % (environ.get("REMOTE_ADDR", "?"), environ.get("REMOTE_PORT", "?"))


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = _query(environ)
    if path == "/pid":
        return _ok(start_response, str(os.getpid()).encode())
    if path == "/echo":
        data = environ["wsgi.input"].read()
        return _ok(start_response, b"%d bytes" % len(data))
    if path == "/header":
        value = environ.get("HTTP_X_PROBE", "<missing>")
        return _ok(start_response, value.encode("utf-8", "backslashreplace"))
    if path == "/envkeys":
        keys = sorted(k for k in environ if k.startswith("HTTP_"))
        return _ok(start_response, ",".join(keys).encode())
    if path == "/upload":
        total = 0
        try:
            while True:
                chunk = environ["wsgi.input"].read(65536)
                if not chunk:
                    break
                if not total:
                    print("upload-reading (%s)" % _client(environ), file=sys.stderr)
                total += len(chunk)
        except OSError as e:
            print("upload-aborted (%s): read failed after %d bytes: %s" % (_client(environ), total, e),
                  file=sys.stderr)
            raise
        return _ok(start_response, b"%d" % total)
    if path == "/download":
        n = int(q.get("n", "64"))
        def gen():
            try:
                for _ in range(n):
                    yield b"d" * 65536
                    time.sleep(0.01)
            except GeneratorExit:
                print("download-aborted (%s): client went away mid-download" % _client(environ),
                      file=sys.stderr)
                raise
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(n * 65536))])
        return gen()
    if path == "/not-iterable":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return 42
    if path == "/none":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return None
    if path == "/str-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["str-body: a str, not bytes"]
    if path == "/str-mid-body":
        def gen():
            yield b"first part is bytes;"
            yield "str-mid-body: then a str"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/int-item":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"a", 7]
    if path == "/start-response-errors":
        # mod_wsgi 6's cases (its tests/wsgi/start_response.sh): each call's exception type
        # and message, one per line; then a valid call.
        h = [("Content-Type", "text/plain")]
        cases = [
            ("200OK", h, None),
            ("20X OK", h, None),
            ("200 OK\r\nX-Injected: yes", h, None),
            (200, h, None),
            ("200 OK", h + [("X Foo", "v")], None),
            ("200 OK", h + [("X-Foo", "line1\nline2")], None),
            ("200 OK", h + [(42, "v")], None),
            ("200 OK", h + [("X-Foo", "\u65e5\u672c")], None),
            ("200 OK", h + ["X-Foo:value"], None),
            ("200 OK", h + [("a", "b", "c")], None),
            ("200 OK", (("Content-Type", "text/plain"),), None),
            ("200 OK", h, "not-a-tuple"),
        ]
        lines = []
        for status, headers, exc_info in cases:
            try:
                start_response(status, headers, exc_info)
                lines.append("no error")
            except Exception as e:
                lines.append("%s:%s" % (type(e).__name__, e))
        start_response("200 OK", h)
        return [("\n".join(lines) + "\nend").encode()]
    if path == "/write-str":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write("write-str: a str")
        return []
    if path == "/start-twice":
        # mod_wsgi: a second call before any body byte replaces status and headers.
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        start_response("202 Accepted", [("Content-Type", "text/plain"), ("X-Second", "2")])
        return [b"start-twice replaced"]
    if path == "/start-after-head":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"head sent;")
        try:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        except RuntimeError as e:
            return [("start-after-head: " + str(e)).encode()]
        return [b"start-after-head: no error"]
    if path == "/exc-info-not-tuple":
        start_response("200 OK", [("Content-Type", "text/plain")], ["not", "a", "tuple"])
        return [b"exc-info-not-tuple accepted"]
    if path == "/exc-info-before-head":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("exc-info-before-head")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced by the error page"]
    if path == "/exc-info-after-head":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"head and some body already sent;")
        try:
            raise ValueError("exc-info-after-head: raised after the head went out")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"never reached"]
    if path == "/header-crlf":
        start_response("200 OK", [("X-Bad", "value\r\nInjected: header-crlf")])
        return [b""]
    if path == "/header-lf":
        start_response("200 OK", [("X-Bad", "value\nInjected: header-lf")])
        return [b""]
    if path == "/header-name-crlf":
        start_response("200 OK", [("X-Bad\r\nInjected", "header-name-crlf")])
        return [b""]
    if path == "/header-name-space":
        start_response("200 OK", [("X Bad", "header-name-space")])
        return [b""]
    if path == "/header-name-colon":
        start_response("200 OK", [("X-Bad:", "header-name-colon")])
        return [b""]
    if path == "/header-empty-name":
        start_response("200 OK", [("", "header-empty-name")])
        return [b""]
    if path == "/header-non-latin1":
        start_response("200 OK", [("X-Euro", "header-non-latin1 \u20ac")])
        return [b""]
    if path == "/header-latin1":
        start_response("200 OK", [("X-Latin1", "caf\u00e9"), ("Content-Type", "text/plain")])
        return [b"latin-1 ok"]
    if path == "/header-bytes":
        start_response("200 OK", [(b"X-Bytes", b"header-bytes")])
        return [b""]
    if path == "/header-not-tuple":
        start_response("200 OK", ["X-Flat: header-not-tuple"])
        return [b""]
    if path == "/headers-tuple":
        start_response("200 OK", (("X-Tuple", "headers-tuple"),))
        return [b""]
    if path == "/status-int":
        start_response(200, [])
        return [b""]
    if path == "/status-garbage":
        start_response("status-garbage", [])
        return [b""]
    if path == "/status-range":
        start_response("1000 Out Of Range", [])
        return [b""]
    if path == "/status-crlf":
        start_response("200 OK\r\nInjected: status-crlf", [])
        return [b""]
    if path == "/bad-content-length":
        start_response("200 OK", [("Content-Length", "bad-content-length")])
        return [b""]
    if path == "/short-body":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return [b"only ten b"]
    if path == "/long-body":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"12345", b"-and-more-than-promised"]
    if path == "/raise-before":
        raise RuntimeError("raise-before: failed before start_response")
    if path == "/raise-non-ascii":
        raise RuntimeError("raise-non-ascii: \u00e9\u20ac\u4e2d")
    if path == "/sys-exit":
        sys.exit("sys-exit: the app called sys.exit()")
    if path == "/keyboard-interrupt":
        raise KeyboardInterrupt("keyboard-interrupt")
    if path == "/raise-mid-chunked":
        def gen():
            yield b"first chunk;"
            raise ValueError("raise-mid-chunked: failed after the head was sent")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/raise-mid-length":
        def gen():
            yield b"partial"
            raise ValueError("raise-mid-length: failed after the head was sent")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1000")])
        return gen()
    if path == "/iter-raises":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return RaisingIter()
    if path == "/close-raises":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return RaisingClose()
    if path == "/hang":
        def gen():
            yield b"started;"
            time.sleep(float(q.get("s", "30")))
            yield b"hang: finished late"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/hang-before-head":
        time.sleep(float(q.get("s", "30")))
        return _ok(start_response, b"hang-before-head: finished late")
    if path == "/no-start":
        return [b"no-start: body without start_response"]
    if path == "/read-after-end":
        data = environ["wsgi.input"].read()
        more = environ["wsgi.input"].read(10)
        return _ok(start_response, b"%d+%d" % (len(data), len(more)))
    return _ok(start_response, ("misbehave: unknown path %r" % path).encode())
