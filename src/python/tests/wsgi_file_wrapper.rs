//! wsgi.file_wrapper: send_file from tell(), block reads.

use super::*;

const FILE_APP: &str = r#"
import io
def application(environ, start_response):
    fw = environ['wsgi.file_wrapper']
    w = fw(io.BytesIO(b'abc'), 2)
    assert list(w) == [b'ab', b'c']
    w.close()
    assert w.filelike.closed and w.blksize == 2
    f = open(environ['HTTP_X_FILE'], 'rb')
    f.seek(100)
    headers = []
    if environ['PATH_INFO'] == '/cl':
        headers.append(('Content-Length', '50'))
    start_response('200 OK', headers)
    return fw(f, 64)
"#;

fn data_file() -> (String, Vec<u8>) {
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let path = tmpdir().join("file_wrapper.bin");
    write_atomically(&path, &data);
    (path.to_str().unwrap().to_string(), data)
}

fn file_request(sendfile: bool, path_info: &str) -> FakeIo {
    let host = host();
    let path = script("file_wrapper", FILE_APP);
    let (file, _) = data_file();
    let env = env(&[
        ("PATH_INFO", path_info.as_bytes()),
        ("HTTP_X_FILE", file.as_bytes()),
    ]);
    let mut io = FakeIo {
        sendfile,
        ..FakeIo::new()
    };
    assert_eq!(
        host.handle(&spec(&path, &env), &mut io),
        Outcome::Completed,
        "{}",
        dump(&path)
    );
    io
}

#[test]
fn file_wrapper_uses_send_file_from_tell() {
    let (_, data) = data_file();
    let io = file_request(true, "/");
    assert!(
        matches!(&io.events[..], [Ev::Head(200, _, _), Ev::File(100, 900, _)]),
        "{:?}",
        io.events
    );
    assert_eq!(io.body(), &data[100..]);
    let io = file_request(true, "/cl");
    assert!(
        matches!(&io.events[..], [Ev::Head(200, _, _), Ev::File(100, 50, _)]),
        "{:?}",
        io.events
    );
    assert_eq!(io.body(), &data[100..150]);
}

#[test]
fn file_wrapper_falls_back_to_reading_blocks() {
    let (_, data) = data_file();
    let io = file_request(false, "/");
    assert_eq!(io.body(), &data[100..]);
    let blocks = io
        .events
        .iter()
        .filter(|e| matches!(e, Ev::Body(_)))
        .count();
    assert_eq!(blocks, 900usize.div_ceil(64));
    let io = file_request(false, "/cl");
    assert_eq!(io.body(), &data[100..150]);
}
