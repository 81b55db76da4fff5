# The example application `make serve` runs with rwsgi-express (mod_rwsgi, daemon mode).
#
#   /          a page linking to the others (styled by /static/style.css, served by Apache)
#   /form      a form that POSTs to itself and shows, HTML-escaped, what was posted
#   /process   the daemon process group, PID and thread that served the request
#
# Run it yourself with:
#   rwsgi-express start-server examples/hello/app.wsgi --url-alias /static examples/hello/static
import html
import os
import threading
from urllib.parse import parse_qsl

try:
    import mod_wsgi
except ImportError:  # run outside mod_rwsgi (e.g. wsgiref): still works
    mod_wsgi = None

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<nav><a href="{base}/">Home</a> <a href="{base}/form">Form</a> <a href="{base}/process">Process</a></nav>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"""

MAX_BODY = 64 * 1024


def page(start_response, environ, title, body, status="200 OK"):
    base = html.escape(environ.get("SCRIPT_NAME", ""), quote=True)
    data = PAGE.format(title=html.escape(title), base=base, body=body).encode("utf-8")
    start_response(
        status,
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data)))],
    )
    return [data]


def index(environ, start_response):
    base = html.escape(environ.get("SCRIPT_NAME", ""), quote=True)
    body = f"""<p>Hello from a Python WSGI application served by Apache httpd and
<strong>mod_rwsgi</strong> in daemon mode.</p>
<ul>
<li><a href="{base}/form">A form</a> that posts to the application</li>
<li><a href="{base}/process">Which process and thread</a> served the request</li>
<li><a href="/static/style.css">The stylesheet</a>, a static file Apache serves itself</li>
</ul>"""
    return page(start_response, environ, "Hello, mod_rwsgi", body)


def form(environ, start_response):
    shown = ""
    if environ["REQUEST_METHOD"] == "POST":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            return page(
                start_response, environ, "Too large", "<p>That post is too large.</p>",
                "413 Request Entity Too Large",
            )
        raw = environ["wsgi.input"].read(length).decode("utf-8", "replace")
        fields = parse_qsl(raw, keep_blank_values=True)
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in fields
        )
        shown = f"<h2>You posted</h2><table>{rows}</table>" if rows else "<p>(nothing)</p>"
    elif environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
        start_response("405 Method Not Allowed", [("Allow", "GET, HEAD, POST"),
                                                  ("Content-Type", "text/plain")])
        return [b"method not allowed\n"]
    action = html.escape(environ.get("SCRIPT_NAME", "") + "/form", quote=True)
    body = f"""<form method="post" action="{action}">
<label>Name <input name="name"></label>
<label>Message <textarea name="message"></textarea></label>
<button type="submit">Send</button>
</form>
{shown}"""
    return page(start_response, environ, "Form", body)


def process(environ, start_response):
    group = mod_wsgi.process_group if mod_wsgi else "(not under mod_rwsgi)"
    app_group = mod_wsgi.application_group if mod_wsgi else ""
    threads = mod_wsgi.threads_per_process if mod_wsgi else ""
    rows = [
        ("process group", group),
        ("application group", app_group or "%{GLOBAL}"),
        ("pid", os.getpid()),
        ("thread", threading.get_ident()),
        ("threads per process", threads),
    ]
    table = "".join(
        f'<tr><th>{html.escape(k)}</th><td id="{k.replace(" ", "-")}">{html.escape(str(v))}</td></tr>'
        for k, v in rows
    )
    return page(start_response, environ, "Process", f"<table>{table}</table>")


ROUTES = {"": index, "/": index, "/form": form, "/process": process}


def application(environ, start_response):
    handler = ROUTES.get(environ.get("PATH_INFO", ""))
    if handler is None:
        return page(start_response, environ, "Not found", "<p>No such page.</p>", "404 Not Found")
    return handler(environ, start_response)
