# Answers with the executable of the process that serves it, its Python's major.minor and its
# process group: tests/daemon_host.rs checks a daemon was exec'd as the daemon host.
import os
import sys


def application(environ, start_response):
    body = ("%s %d.%d %s" % (os.readlink("/proc/self/exe"), sys.version_info[0],
                             sys.version_info[1], environ.get("mod_wsgi.process_group"))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
