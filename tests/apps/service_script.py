# A service script (WSGIDaemonProcess threads=0 + WSGIImportScript), as a sidecar server
# would be: it runs until stopped. It leaves markers in ../markers so the test sees each
# start (service-PID.started) and how it ended (service-PID.systemexit on SystemExit).
import os
import time

_markers = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "markers")
_pid = os.getpid()


def _mark(what):
    # Written whole, then renamed into place: the test reads it as soon as it exists.
    path = os.path.join(_markers, "service-%d.%s" % (_pid, what))
    with open(path + ".tmp", "w") as f:
        f.write("%d %s\n" % (os.getuid(), time.time()))
    os.rename(path + ".tmp", path)


try:
    # Inside the try: once the marker exists, SystemExit leaves its own marker.
    _mark("started")
    while True:
        time.sleep(0.1)
except SystemExit:
    _mark("systemexit")
    raise
