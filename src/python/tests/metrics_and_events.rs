//! Metrics and request events.

use super::*;

#[test]
fn metrics_are_none_until_recording_then_count_every_request() {
    let host = host();
    let path = script(
        "metrics",
        r#"
import mod_wsgi
def application(environ, start_response):
    p = environ['PATH_INFO']
    if p == '/none':
        assert mod_wsgi.request_metrics() is None and mod_wsgi.process_metrics() is None
        assert mod_wsgi.server_metrics() is None
    elif p == '/start':
        mod_wsgi.start_recording_metrics()
        mod_wsgi.start_recording_metrics()  # idempotent
        mod_wsgi.request_metrics()  # drains what came before
    elif p == '/404':
        start_response('404 Not Found', [])
        return [b'ok']
    elif p == '/boom':
        raise ValueError('metrics-boom')
    elif p == '/report':
        m = mod_wsgi.request_metrics()
        statuses = [m['status_%dxx' % i] for i in range(1, 6)]
        assert sum(statuses) == m['request_count'], (statuses, m['request_count'])
        assert m['status_4xx'] >= 3 and m['status_5xx'] >= 1, statuses
        # 3 x 404, the failure, the POST and '/'; /start began before recording did.
        assert m['request_count'] >= 6, m['request_count']
        for phase in ('server_time', 'queue_time', 'daemon_time', 'request_time'):
            assert len(m[phase + '_buckets']) == 65, phase
        # No request_start here (not from Apache): only the host's own phases are timed.
        for phase in ('application_time', 'input_read_time', 'output_write_time',
                      'gil_wait_time'):
            assert len(m[phase + '_buckets']) == 65, phase
            assert sum(m[phase + '_buckets']) == m['request_count'], phase
        # No request here came through a daemon queue.
        assert m['queue_time_max_us'] is None and m['daemon_time_max_us'] is None
        assert m['application_time_max_us'] >= m['application_time_min_us'] >= 0
        assert m['input_bytes'] >= 5 and m['input_reads'] >= 1, m['input_bytes']
        assert m['output_bytes'] >= 6 and m['output_writes'] >= 3
        assert 0.0 <= m['capacity_utilization'] <= 1.0001, m['capacity_utilization']
        assert m['sample_period'] > 0 and m['stop_time'] > m['start_time']
        assert len(m['request_threads_completed']) == m['request_threads_maximum']
        assert m['memory_rss'] > 0 and m['memory_max_rss'] > 0
        assert m['cpu_utilization'] >= 0 and m['cpu_time'] == m['cpu_utilization']
        # The window was drained: a second call covers (almost) nothing.
        assert mod_wsgi.request_metrics()['request_count'] == 0
        pm = mod_wsgi.process_metrics()
        assert pm['request_count'] >= 8 and pm['active_requests'] >= 1, pm
        assert pm['running_time'] >= 0 and pm['current_time'] >= pm['restart_time']
        assert sum(t['request_count'] for t in pm['threads']) <= pm['request_count']
        assert all(t['thread_id'] >= 1 for t in pm['threads']), pm['threads']
    elif p == '/post':
        environ['wsgi.input'].read()
    start_response('200 OK', [])
    return [b'ok']
"#,
    );
    let mut io = FakeIo::new();
    assert_ok(&host, &path, "/none", &mut io);
    assert_ok(&host, &path, "/start", &mut FakeIo::new());
    for _ in 0..3 {
        assert_ok(&host, &path, "/404", &mut FakeIo::new());
    }
    assert_eq!(
        request(&host, &path, "/boom", &mut FakeIo::new()),
        Outcome::AppError { head_sent: false }
    );
    let env = env(&[("PATH_INFO", b"/post"), ("CONTENT_LENGTH", b"5")]);
    let mut io = FakeIo::with_body(&[b"hello"]);
    assert_eq!(host.handle(&spec(&path, &env), &mut io), Outcome::Completed);
    assert_ok(&host, &path, "/", &mut FakeIo::new());
    assert_ok(&host, &path, "/report", &mut FakeIo::new());
}

#[test]
fn request_events_carry_mod_wsgis_fields_and_request_data() {
    let host = host();
    let path = script(
        "event_fields",
        r#"
import mod_wsgi, threading
seen = {}
mine = set()
def on_event(name, **kw):
    data = kw.get('request_data')
    if name == 'request_started' and 'HTTP_X_FIELDS_TEST' in kw['request_environ']:
        mine.add(threading.get_ident())
        data['started'] = True
    if threading.get_ident() not in mine:
        return
    seen[name] = dict(kw)
    if name == 'request_finished':
        mine.discard(threading.get_ident())
mod_wsgi.subscribe_events(on_event)
def application(environ, start_response):
    p = environ['PATH_INFO']
    if p == '/report':
        mod_wsgi.event_callbacks.remove(on_event)
        f = seen['request_finished']
        for key in ('request_id', 'thread_id', 'request_data', 'server_pid', 'request_start',
                    'queue_start', 'daemon_start', 'application_start', 'application_finish',
                    'application_time', 'input_reads', 'input_length', 'input_time',
                    'output_writes', 'output_length', 'output_time', 'status',
                    'cpu_user_time', 'cpu_system_time', 'cpu_time', 'gil_wait_time',
                    'gil_wait_count'):
            assert key in f, key
        assert f['request_id'] == 'req-7', f['request_id']
        assert f['server_pid'] == 4242 and f['request_start'] == 1700000000.25
        assert f['thread_id'] >= 1 and f['status'] == 500
        assert f['input_length'] == 3 and f['input_reads'] >= 1, f
        assert f['request_data'] == {'started': True, 'app': 'set'}, f['request_data']
        assert f['application_finish'] >= f['application_start']
        s = seen['response_started']
        assert s['response_status'] == '200 OK' and s['response_headers'] == [('A', 'b')]
        assert s['exception_info'] is None and s['request_id'] == 'req-7'
        e = seen['request_exception']
        assert e['exception_info'][0] is KeyError and e['request_data'] is f['request_data']
        try:
            mod_wsgi.request_data()['x'] = 1
        except RuntimeError:
            raise AssertionError('request_data() must work inside a request')
        start_response('200 OK', [])
        return [b'ok']
    environ['wsgi.input'].read()
    mod_wsgi.request_data()['app'] = 'set'
    start_response('200 OK', [('A', 'b')])
    raise KeyError('event-fields')
"#,
    );
    let env = env(&[
        ("PATH_INFO", b"/fail"),
        ("HTTP_X_FIELDS_TEST", b"1"),
        ("CONTENT_LENGTH", b"3"),
        ("mod_wsgi.request_id", b"req-7"),
        ("mod_wsgi.server_pid", b"4242"),
    ]);
    let spec_fail = RequestSpec {
        times: RequestTimes {
            request_start_us: 1_700_000_000_250_000,
            ..Default::default()
        },
        ..spec(&path, &env)
    };
    let mut io = FakeIo::with_body(&[b"abc"]);
    assert_eq!(
        host.handle(&spec_fail, &mut io),
        Outcome::AppError { head_sent: false },
        "{}",
        dump(&path)
    );
    assert_ok(&host, &path, "/report", &mut FakeIo::new());
    // Outside a request there is no request data.
    Python::attach(|py| {
        let err = py
            .import("mod_wsgi")
            .unwrap()
            .call_method0("request_data")
            .unwrap_err();
        assert!(err.is_instance_of::<pyo3::exceptions::PyRuntimeError>(py));
    });
}

#[test]
fn a_thread_keeps_its_thread_id() {
    let host = host();
    let path = script(
        "thread_id",
        r#"
ids = []
def application(environ, start_response):
    ids.append(environ['mod_wsgi.thread_id'])
    start_response('200 OK', [])
    return [b'ok' if len(set(ids)) == 1 else repr(ids).encode()]
"#,
    );
    for _ in 0..3 {
        assert_ok(&host, &path, "/", &mut FakeIo::new());
    }
}
