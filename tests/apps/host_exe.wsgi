# Answers with the executable of the process that serves it, its Python's major.minor, its
# process group and its pid: tests/daemon_host.rs checks a daemon was exec'd as the daemon
# host (and, by the pid, that touching this file replaced it).
import os
import sys


def application(environ, start_response):
    body = ("%s %d.%d %s %d" % (os.readlink("/proc/self/exe"), sys.version_info[0],
                                sys.version_info[1], environ.get("mod_wsgi.process_group"),
                                os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
