//! A minimal HTTP/1.1 client for tests: full control over what is sent (bad requests
//! included) and what came back (status, headers, raw body), with a read timeout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The probe app's JSON answers; panics (with the response) when it is not JSON.
pub fn json(resp: &Response) -> serde_json::Value {
    serde_json::from_str(&resp.text())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", resp.status, resp.text()))
}

/// Accessors for JSON values: a missing key reads as empty/NaN, so assertions fail with a
/// clear difference.
pub trait Json {
    fn str(&self) -> &str;
    fn num(&self) -> f64;
    fn list(&self) -> &[serde_json::Value];
}

impl Json for serde_json::Value {
    fn str(&self) -> &str {
        self.as_str().unwrap_or("")
    }
    fn num(&self) -> f64 {
        self.as_f64().unwrap_or(f64::NAN)
    }
    fn list(&self) -> &[serde_json::Value] {
        self.as_array().map(|v| v.as_slice()).unwrap_or(&[])
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    // A Host among `headers` replaces the default one (name-based virtual hosts).
    let host = match headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("host")) {
        Some(_) => String::new(),
        None => format!("Host: 127.0.0.1:{port}\r\n"),
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\n{host}Connection: close\r\n");
    let mut has_length = false;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding") {
            has_length = true;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length && (!body.is_empty() || method == "POST" || method == "PUT") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw_request(port, &raw, method == "HEAD")
}

/// Sends raw bytes and parses the response.
pub fn raw_request(port: u16, raw: &[u8], head_only: bool) -> io::Result<Response> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    (&stream).write_all(raw)?;
    read_response(BufReader::new(stream), head_only)
}

/// Reads one response (head with httparse, then the body by its framing); reads no further
/// than the response's end when it has a length or is chunked, so `reader` may carry on
/// with the next response of a keep-alive connection.
pub fn read_response<R: Read>(mut reader: BufReader<R>, head_only: bool) -> io::Result<Response> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    // The head, line by line up to its empty line: nothing of the body is consumed.
    let mut head = Vec::new();
    loop {
        if reader.read_until(b'\n', &mut head)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF in headers",
            ));
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
    }
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Response::new(&mut slots);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(invalid("incomplete response head".into())),
        Err(e) => {
            let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
            return Err(invalid(format!(
                "bad response head ({e}), status line {:?}",
                String::from_utf8_lossy(first)
            )));
        }
    }
    let status = parsed
        .code
        .ok_or_else(|| invalid("no status code".into()))?;
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 204 || status == 304 {
        return Ok(resp);
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size_line = Vec::new();
            if reader.read_until(b'\n', &mut size_line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF in chunked body",
                ));
            }
            let size = match httparse::parse_chunk_size(&size_line) {
                Ok(httparse::Status::Complete((_, size))) => usize::try_from(size)
                    .map_err(|_| invalid(format!("chunk size {size} too large")))?,
                _ => {
                    return Err(invalid(format!(
                        "bad chunk size {:?}",
                        String::from_utf8_lossy(&size_line)
                    )));
                }
            };
            if size == 0 {
                // Trailer fields, if any, up to the empty line.
                loop {
                    let mut trailer = Vec::new();
                    if reader.read_until(b'\n', &mut trailer)? == 0
                        || trailer == b"\r\n"
                        || trailer == b"\n"
                    {
                        break;
                    }
                }
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            reader.read_exact(&mut resp.body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = resp
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        resp.body.resize(len, 0);
        reader.read_exact(&mut resp.body)?;
    } else {
        reader.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

/// The value of the hidden input `name` in an HTML page.
pub fn hidden_field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden field {name} in:\n{page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_string()
}
