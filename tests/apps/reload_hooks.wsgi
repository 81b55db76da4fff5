# mod_wsgi 6's reload hooks in a WSGI script (tests/reload_hooks.rs): a module-level
# reload_required(resource) that asks for a reload once the file "reload-generation" next to
# the script changes (so a replacement process, which reads the new generation, does not ask
# again), and raises while armed by /raise; /drop-mtime removes __mtime__.
import json
import os

GENERATION_FILE = os.path.join(os.path.dirname(__file__), "reload-generation")


def _generation():
    try:
        with open(GENERATION_FILE) as f:
            return f.read()
    except OSError:
        return ""


GENERATION = _generation()
IMPORT_ID = os.urandom(8).hex()
SEEN = []
RAISE = []


def reload_required(resource):
    SEEN.append(resource)
    if RAISE:
        raise ValueError("reload-hook-failure: raised on purpose")
    return _generation() != GENERATION


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/drop-mtime":
        del globals()["__mtime__"]
    elif path == "/raise":
        RAISE.append(True)
    mtime = globals().get("__mtime__")
    body = json.dumps({"pid": os.getpid(), "import_id": IMPORT_ID, "generation": GENERATION,
                       "resource": SEEN[-1] if SEEN else None,
                       "mtime": mtime, "mtime_type": type(mtime).__name__}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
