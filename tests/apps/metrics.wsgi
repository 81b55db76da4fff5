# The metrics tests' app (tests/metrics.rs): mod_wsgi's metrics API and request events,
# reported as JSON so the test checks them against the requests it made.
import json
import threading
import time

import mod_wsgi

# The last request_started (its scalar fields) / request_finished / response_started /
# request_exception event of requests carrying an X-Watch header, by event name.
watched = {}
_lock = threading.Lock()


def on_event(name, **event):
    data = event.get("request_data")
    if name == "request_started":
        if "HTTP_X_WATCH" in event["request_environ"]:
            data["watch"] = event["request_environ"]["HTTP_X_WATCH"]
            # Its scalar fields (the environ and the application are not JSON).
            kept = {k: v for k, v in event.items()
                    if isinstance(v, (int, float, str)) or v is None}
            kept["watch"] = data["watch"]
            with _lock:
                watched[name] = kept
        return
    if data is None or "watch" not in data:
        return
    kept = {}
    for key, value in event.items():
        if key == "exception_info":
            value = None if value is None else value[0].__name__
        elif key == "request_data":
            value = dict(value)
        elif key == "response_headers":
            value = [list(h) for h in value]
        kept[key] = value
    with _lock:
        watched[name] = kept


mod_wsgi.subscribe_events(on_event)


def _json(start_response, value, status="200 OK"):
    body = json.dumps(value).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)
    if path == "/before":
        return _json(start_response, {
            "request_metrics": mod_wsgi.request_metrics(),
            "process_metrics": mod_wsgi.process_metrics(),
            "server_metrics": mod_wsgi.server_metrics(),
        })
    if path == "/start":
        mod_wsgi.start_recording_metrics()
        mod_wsgi.request_metrics()  # an empty window from here on
        return _json(start_response, {"pid": mod_wsgi.process_metrics()["pid"]})
    if path == "/request_metrics":
        return _json(start_response, mod_wsgi.request_metrics())
    if path == "/process_metrics":
        return _json(start_response, mod_wsgi.process_metrics())
    if path == "/watched":
        with _lock:
            return _json(start_response, watched)
    if path == "/sleep":
        time.sleep(float(query.get("s", "1")))
    if path == "/fail":
        mod_wsgi.request_data()["app"] = "was here"
        mod_wsgi.request_data()["environ_thread_id"] = environ["mod_wsgi.thread_id"]
        environ["wsgi.input"].read()
        start_response("200 OK", [("X-Before", "failure")])
        raise KeyError("metrics-test failure")
    status = query.get("status", "200")
    start_response(status + " Whatever", [("Content-Type", "text/plain"),
                                          ("Content-Length", "5")])
    return [b"hello"]
