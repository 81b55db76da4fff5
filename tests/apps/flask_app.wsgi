"""A small Flask app for mod_rwsgi's framework tests: a template-rendered page with
url_for links (which must honour the mount point) and a POST form."""

from importlib.metadata import version

from flask import Flask, render_template_string, request, url_for

app = Flask(__name__)

PAGE = """<!doctype html>
<title>{{ title }}</title>
<h1>{{ title }}</h1>
<p>Hello from Flask {{ version }} at {{ request.script_root }}{{ request.path }}</p>
<form method="post" action="{{ url_for('greet') }}">
  <input name="name"><button>Greet</button>
</form>
"""


@app.route("/")
def index():
    return render_template_string(PAGE, title="Flask on mod_rwsgi",
                                  version=version("flask"))


@app.route("/greet", methods=["POST"])
def greet():
    name = request.form.get("name", "")
    if not name:
        return "name is required\n", 400
    return {"greeting": f"Hello, {name}!", "back": url_for("index"),
            "multithread": request.environ["wsgi.multithread"]}


application = app
