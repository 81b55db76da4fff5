# WSGIDispatchScript for tests/auth_scripts.rs: the query string chooses the process group,
# the application group and the callable.
def _query(environ):
    return dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)


def process_group(environ):
    q = _query(environ)
    if q.get("boom") == "1":
        raise LookupError("process_group exploded")
    if q.get("bad") == "1":
        return 3.5
    return q.get("group")


def application_group(environ):
    assert environ["mod_wsgi.process_group"] == ""
    assert "mod_wsgi.callable_object" not in environ
    return _query(environ).get("appgroup")


def callable_object(environ):
    return _query(environ).get("callable")
