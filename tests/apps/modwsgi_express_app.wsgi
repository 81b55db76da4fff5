# Served by the configuration `mod_wsgi-express setup-server` (pip package mod_wsgi) writes,
# through its handler script (mod_wsgi.express.runtime) in its daemon group.
import os


def application(environ, start_response):
    import mod_wsgi.express.runtime  # the pip package's subpackage, through mod_wsgi.__path__
    body = "\n".join([
        "express app",
        "handler_script=" + environ.get("mod_wsgi.handler_script", "<missing>"),
        "process_group=" + environ.get("mod_wsgi.process_group", "<missing>"),
        "runtime=" + mod_wsgi.express.runtime.__name__,
        "uid=%d" % os.getuid(),
    ]).encode() + b"\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
