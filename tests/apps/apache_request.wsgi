# The app of tests/phase_scripts.rs for WSGIPassApacheRequest and WSGICaseSensitivity. It
# answers key=value lines: its module name, its groups, how many requests this module
# object has served, and what environ['apache.request_rec'] is. The capsule is read as
# mod_wsgi's (a PyCapsule of Apache's request_rec): its name, and the request line read
# through it from request_rec's `the_request` (after six pointers: pool, connection, server,
# next, prev, main). As a WSGIDispatchScript, application_group() names the group after what
# it saw, for the app to report; as a WSGIAccessScript, allow_access() lets a request on
# only when it read the request's own line through the capsule.
import ctypes
import os

_served = 0

_api = ctypes.pythonapi
_api.PyCapsule_GetName.restype = ctypes.c_char_p
_api.PyCapsule_GetName.argtypes = [ctypes.py_object]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _request_line(capsule):
    address = _api.PyCapsule_GetPointer(capsule, None)
    field = address + 6 * ctypes.sizeof(ctypes.c_void_p)
    return ctypes.cast(field, ctypes.POINTER(ctypes.c_char_p))[0].decode("latin-1")


def _capsule_lines(environ):
    capsule = environ.get("apache.request_rec")
    if capsule is None:
        return ["capsule=<missing>"]
    return [
        "capsule=" + type(capsule).__name__,
        "capsule_name=%r" % (_api.PyCapsule_GetName(capsule),),
        "the_request=" + _request_line(capsule),
    ]


def application_group(environ):
    capsule = environ.get("apache.request_rec")
    if capsule is None:
        return "dispatch-saw-nothing"
    return "dispatch-saw:" + _request_line(capsule)


def allow_access(environ, host):
    capsule = environ.get("apache.request_rec")
    if capsule is None:
        return False
    return _request_line(capsule).split()[1] == environ["REQUEST_URI"]


def application(environ, start_response):
    global _served
    _served += 1
    lines = [
        "module=" + __name__,
        "file=" + __file__,
        "pid=%d" % os.getpid(),
        "served=%d" % _served,
        "process_group=" + environ["mod_wsgi.process_group"],
        "application_group=" + environ["mod_wsgi.application_group"],
    ] + _capsule_lines(environ)
    body = ("\n".join(lines) + "\n").encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
