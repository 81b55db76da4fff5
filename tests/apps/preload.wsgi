# Imported at process start by WSGIImportScript: leaves a marker naming the process that
# imported it, before any request arrives.
import os
import sys

_MARKERS = os.path.join(os.path.dirname(__file__), "..", "markers")
with open(os.path.join(_MARKERS, "preloaded.%d" % os.getpid()), "w") as f:
    f.write(sys.prefix)


def application(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
