# The telemetry test's app (tests/telemetry.rs): /sleep?SECONDS is a slow request,
# /request-metrics shows what mod_wsgi.request_metrics() answers while the reporter runs,
# /gc makes 100 reference cycles and collects them (a full collection) and answers how
# many objects it freed, anything else is a fast one.
import gc
import time

import mod_wsgi


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
        body = b"slept"
    elif path == "/request-metrics":
        mod_wsgi.start_recording_metrics()
        body = repr(mod_wsgi.request_metrics()).encode()
    elif path == "/gc":
        for _ in range(100):
            a = []
            a.append(a)
        del a
        body = str(gc.collect()).encode()
    else:
        body = b"fast"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
