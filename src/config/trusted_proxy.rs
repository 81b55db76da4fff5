//! Values of WSGITrustedProxies (`IpNet`) and WSGITrustedProxyHeaders (the
//! header names mod_wsgi knows, reference §6), and how they rewrite a request's CGI
//! environment (`apply_trusted_proxy_headers`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 address with a prefix length: `10.0.0.0/8`, `::1`,
/// `192.168.1.0/255.255.255.0`, or a partial IPv4 address such as `10.1`
/// (= `10.1.0.0/16`), the forms `apr_ipsubnet_create` accepts. Host bits are
/// cleared, as APR does. Parsing is ours (APR's forms, errors naming what is wrong); the
/// subnet itself and its matching are the `ipnet` crate's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet(ipnet::IpNet);

impl IpNet {
    /// Parses one address or subnet; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr_text, mask_text) = match text.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (text, None),
        };
        if addr_text.is_empty() {
            return Err("expected an IP address or subnet like 10.0.0.0/8".into());
        }
        if addr_text.contains(':') {
            let addr: Ipv6Addr = addr_text
                .parse()
                .map_err(|_| "expected an IPv6 address like 2001:db8::/32".to_string())?;
            let prefix = match mask_text {
                None => 128,
                Some(m) => parse_bits(m, 128)?,
            };
            return IpNet::new(IpAddr::V6(addr), prefix);
        }
        let (addr, implied) = parse_ipv4_partial(addr_text)?;
        let prefix = match mask_text {
            None => implied,
            Some(m) if m.contains('.') => netmask_bits(m)?,
            Some(m) => parse_bits(m, 32)?,
        };
        IpNet::new(IpAddr::V4(addr), prefix)
    }

    fn new(addr: IpAddr, prefix: u8) -> Result<Self, String> {
        ipnet::IpNet::new(addr, prefix)
            .map(|net| IpNet(net.trunc()))
            .map_err(|_| format!("prefix length {prefix} is too long for {addr}"))
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.0.network()
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `ip` is inside this subnet. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`) matches an IPv4 subnet, as with APR.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.0, ip) {
            (ipnet::IpNet::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        self.0.contains(&ip)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn parse_bits(text: &str, max: u8) -> Result<u8, String> {
    let err = || format!("expected a prefix length from 0 to {max} after '/'");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    match text.parse::<u8>() {
        Ok(bits) if bits <= max => Ok(bits),
        _ => Err(err()),
    }
}

fn netmask_bits(text: &str) -> Result<u8, String> {
    let mask: Ipv4Addr = text
        .parse()
        .map_err(|_| "expected a netmask like 255.255.255.0 after '/'".to_string())?;
    ipnet::ipv4_mask_to_prefix(mask).map_err(|_| "netmask is not contiguous".to_string())
}

/// A full dotted quad (prefix 32) or 1 to 3 leading octets (prefix 8 per octet).
fn parse_ipv4_partial(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let err = || "expected an IPv4 address like 192.168.0.1 or 10.0.0.0/8".to_string();
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() > 4 {
        return Err(err());
    }
    let mut octets = [0u8; 4];
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        octets[i] = part.parse().map_err(|_| err())?;
    }
    Ok((Ipv4Addr::from(octets), (parts.len() * 8) as u8))
}

/// The category a trusted proxy header belongs to. From an untrusted peer,
/// every header of a configured category is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyHeaderCategory {
    /// The client address (REMOTE_ADDR).
    Client,
    /// The host (HTTP_HOST).
    Host,
    /// The server name (SERVER_NAME).
    Server,
    /// The server port (SERVER_PORT).
    Port,
    /// The mount point (SCRIPT_NAME).
    ScriptName,
    /// The URL scheme (wsgi.url_scheme).
    Scheme,
}

/// Every header WSGITrustedProxyHeaders accepts, in canonical spelling.
pub static KNOWN_PROXY_HEADERS: &[(&str, ProxyHeaderCategory)] = &[
    ("X-Forwarded-For", ProxyHeaderCategory::Client),
    ("X-Client-IP", ProxyHeaderCategory::Client),
    ("X-Real-IP", ProxyHeaderCategory::Client),
    ("X-Forwarded-Host", ProxyHeaderCategory::Host),
    ("X-Host", ProxyHeaderCategory::Host),
    ("X-Forwarded-Server", ProxyHeaderCategory::Server),
    ("X-Forwarded-Port", ProxyHeaderCategory::Port),
    ("X-Script-Name", ProxyHeaderCategory::ScriptName),
    ("X-Forwarded-Script-Name", ProxyHeaderCategory::ScriptName),
    ("X-Forwarded-Proto", ProxyHeaderCategory::Scheme),
    ("X-Forwarded-Scheme", ProxyHeaderCategory::Scheme),
    ("X-Forwarded-HTTPS", ProxyHeaderCategory::Scheme),
    ("X-Forwarded-SSL", ProxyHeaderCategory::Scheme),
    ("X-Scheme", ProxyHeaderCategory::Scheme),
    ("X-HTTPS", ProxyHeaderCategory::Scheme),
];

/// The canonical spelling of a known proxy header (case-insensitive lookup).
pub fn canonical_proxy_header(name: &str) -> Option<&'static str> {
    KNOWN_PROXY_HEADERS
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(known, _)| *known)
}

/// The category of a known proxy header (case-insensitive lookup).
pub fn proxy_header_category(name: &str) -> Option<ProxyHeaderCategory> {
    KNOWN_PROXY_HEADERS
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(_, category)| *category)
}

/// The CGI/WSGI environ key of a header: `X-Forwarded-For` → `HTTP_X_FORWARDED_FOR`.
pub fn header_env_name(header: &str) -> String {
    let mut key = String::with_capacity(header.len() + 5);
    key.push_str("HTTP_");
    key.extend(header.chars().map(|c| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    key
}

/// One environ variable as byte strings (the CGI environment of a request).
pub type EnvPair = (Vec<u8>, Vec<u8>);

fn env_get<'e>(env: &'e [EnvPair], key: &str) -> Option<&'e [u8]> {
    env.iter()
        .rev()
        .find(|(k, _)| k == key.as_bytes())
        .map(|(_, v)| v.as_slice())
}

fn env_set(env: &mut Vec<EnvPair>, key: &str, value: &[u8]) {
    env.retain(|(k, _)| k != key.as_bytes());
    env.push((key.as_bytes().to_vec(), value.to_vec()));
}

fn env_remove(env: &mut Vec<EnvPair>, key: &str) {
    env.retain(|(k, _)| k != key.as_bytes());
}

fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

fn is_trusted(proxies: &[IpNet], ip: IpAddr) -> bool {
    proxies.iter().any(|net| net.contains(ip))
}

/// The non-empty, trimmed entries of a comma-separated header value (empty list elements
/// are skipped, RFC 9110 §5.6.1, as mod_wsgi does).
fn list_entries(value: &[u8]) -> Vec<&[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
        .collect()
}

/// What X-Forwarded-For says about the client, as mod_wsgi reads it, from a trusted peer:
/// the client address and, with WSGITrustedProxies, the rewritten X-Forwarded-For (from the
/// client on). Empty entries are skipped.
/// - Without WSGITrustedProxies (`proxies` None): the first entry is the client.
/// - With it: walking from the right (the entry the peer itself added), every entry that is
///   a trusted proxy is passed over; the entry left of the last one passed over is the
///   client (the leftmost if all are trusted; the last if none is). A malformed entry stops
///   the walk.
///
/// None when there is no entry or the chosen one is not an IP address.
pub fn forwarded_for_client(
    value: &[u8],
    proxies: Option<&[IpNet]>,
) -> Option<(IpAddr, Option<Vec<u8>>)> {
    let entries = list_entries(value);
    let Some(proxies) = proxies else {
        return Some((parse_ip(entries.first()?)?, None));
    };
    let last = entries.len().checked_sub(1)?;
    let mut leftmost_trusted = None;
    for (i, entry) in entries.iter().enumerate().rev() {
        match parse_ip(entry) {
            Some(ip) if is_trusted(proxies, ip) => leftmost_trusted = Some(i),
            _ => break,
        }
    }
    let client = leftmost_trusted.map_or(last, |i| i.saturating_sub(1));
    let ip = parse_ip(entries[client])?;
    Some((ip, Some(entries[client..].join(&b", "[..]))))
}

/// What `apply_trusted_proxy_headers` did that the server log should show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyNote {
    /// A trusted header's value was unusable and was ignored.
    Ignored { header: &'static str, value: String },
}

impl fmt::Display for ProxyNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyNote::Ignored { header, value } => write!(
                f,
                "ignored {header}: {value:?} from a trusted proxy is not a valid value"
            ),
        }
    }
}

/// WSGITrustedProxyHeaders and WSGITrustedProxies applied to a request's CGI environment
/// (its REMOTE_ADDR is the direct peer), as mod_wsgi does. The peer is trusted when it is
/// inside `proxies` or, as mod_wsgi documents, when there is no WSGITrustedProxies at all
/// (`proxies` None: every peer is trusted; configtest warns about it). Then every listed
/// header present, in the listed order, rewrites what it stands for (REMOTE_ADDR,
/// HTTP_HOST, SERVER_NAME, SERVER_PORT, SCRIPT_NAME and mod_wsgi.mount_point, or the
/// scheme through HTTPS/REQUEST_SCHEME); the last one applied in a category is kept. For
/// every category with a listed header, every other header of the category is removed, so
/// the app cannot be fooled by a client that sends them itself (CVE-2022-2255): from an
/// untrusted peer that is all of them. Headers of categories that have no listed header
/// pass through untouched. A value that is not usable is ignored (a note says so) and its
/// header removed.
pub fn apply_trusted_proxy_headers(
    env: &mut Vec<EnvPair>,
    proxies: Option<&[IpNet]>,
    trusted_headers: &[String],
) -> Vec<ProxyNote> {
    let mut notes = Vec::new();
    if trusted_headers.is_empty() {
        return notes;
    }
    let peer_trusted = match proxies {
        None => true,
        Some(list) => env_get(env, "REMOTE_ADDR")
            .and_then(parse_ip)
            .is_some_and(|peer| is_trusted(list, peer)),
    };
    // (category, the header applied last in it, if any)
    let mut categories: Vec<(ProxyHeaderCategory, Option<&'static str>)> = Vec::new();
    for listed in trusted_headers {
        let Some(&(name, category)) = KNOWN_PROXY_HEADERS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(listed))
        else {
            continue;
        };
        let slot = match categories.iter().position(|(c, _)| *c == category) {
            Some(i) => i,
            None => {
                categories.push((category, None));
                categories.len() - 1
            }
        };
        if !peer_trusted {
            continue;
        }
        let Some(value) = env_get(env, &header_env_name(name)).map(<[u8]>::to_vec) else {
            continue;
        };
        match apply_one(env, name, category, &value, proxies) {
            Ok(()) => categories[slot].1 = Some(name),
            Err(note) => notes.push(note),
        }
    }
    for (category, kept) in categories {
        for (name, c) in KNOWN_PROXY_HEADERS {
            if *c == category && kept != Some(*name) {
                env_remove(env, &header_env_name(name));
            }
        }
    }
    notes
}

fn apply_one(
    env: &mut Vec<EnvPair>,
    header: &'static str,
    category: ProxyHeaderCategory,
    value: &[u8],
    proxies: Option<&[IpNet]>,
) -> Result<(), ProxyNote> {
    let ignored = || ProxyNote::Ignored {
        header,
        value: String::from_utf8_lossy(value).into_owned(),
    };
    // A list ("a, b") has one entry per proxy: the last is what the trusted peer said.
    let trimmed = value
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or(value)
        .trim_ascii();
    match category {
        ProxyHeaderCategory::Client if header == "X-Forwarded-For" => {
            let (client, rewritten) = forwarded_for_client(value, proxies).ok_or_else(ignored)?;
            env_set(env, "REMOTE_ADDR", client.to_string().as_bytes());
            if let Some(list) = rewritten {
                env_set(env, "HTTP_X_FORWARDED_FOR", &list);
            }
        }
        ProxyHeaderCategory::Client => {
            let client = parse_ip(value).ok_or_else(ignored)?;
            env_set(env, "REMOTE_ADDR", client.to_string().as_bytes());
        }
        ProxyHeaderCategory::Host => {
            if trimmed.is_empty() || trimmed.iter().any(|b| b.is_ascii_control() || *b == b' ') {
                return Err(ignored());
            }
            env_set(env, "HTTP_HOST", trimmed);
        }
        ProxyHeaderCategory::Server => {
            if trimmed.is_empty() || trimmed.iter().any(|b| b.is_ascii_control() || *b == b' ') {
                return Err(ignored());
            }
            env_set(env, "SERVER_NAME", trimmed);
        }
        ProxyHeaderCategory::Port => {
            let port = std::str::from_utf8(trimmed)
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0)
                .ok_or_else(ignored)?;
            env_set(env, "SERVER_PORT", port.to_string().as_bytes());
        }
        ProxyHeaderCategory::ScriptName => {
            if !trimmed.is_empty() && trimmed[0] != b'/' {
                return Err(ignored());
            }
            let mount = trimmed.strip_suffix(b"/").unwrap_or(trimmed);
            env_set(env, "SCRIPT_NAME", mount);
            env_set(env, "mod_wsgi.mount_point", mount);
        }
        ProxyHeaderCategory::Scheme => {
            let https = match header {
                "X-Forwarded-Proto" | "X-Forwarded-Scheme" | "X-Scheme" => {
                    if trimmed.eq_ignore_ascii_case(b"https") {
                        true
                    } else if trimmed.eq_ignore_ascii_case(b"http") {
                        false
                    } else {
                        return Err(ignored());
                    }
                }
                // X-Forwarded-SSL, X-Forwarded-HTTPS, X-HTTPS: a flag, as mod_wsgi reads it.
                _ => {
                    let is = |word: &[u8]| trimmed.eq_ignore_ascii_case(word);
                    if is(b"on") || is(b"true") || is(b"1") {
                        true
                    } else if is(b"off") || is(b"false") || is(b"0") {
                        false
                    } else {
                        return Err(ignored());
                    }
                }
            };
            if https {
                env_set(env, "HTTPS", b"on");
                env_set(env, "REQUEST_SCHEME", b"https");
            } else {
                env_remove(env, "HTTPS");
                env_set(env, "REQUEST_SCHEME", b"http");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<EnvPair> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn get(env: &[EnvPair], key: &str) -> Option<String> {
        env_get(env, key).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| IpNet::parse(n).unwrap()).collect()
    }

    fn headers(list: &[&str]) -> Vec<String> {
        list.iter().map(|h| h.to_string()).collect()
    }

    /// A request from `peer` carrying every spoofable header.
    fn spoofed(peer: &str) -> Vec<EnvPair> {
        env(&[
            ("REMOTE_ADDR", peer),
            ("HTTP_HOST", "backend:8080"),
            ("SERVER_NAME", "backend"),
            ("SERVER_PORT", "8080"),
            ("SCRIPT_NAME", "/app"),
            ("REQUEST_SCHEME", "http"),
            ("HTTP_X_FORWARDED_FOR", "1.1.1.1, 10.0.0.7"),
            ("HTTP_X_CLIENT_IP", "2.2.2.2"),
            ("HTTP_X_REAL_IP", "3.3.3.3"),
            ("HTTP_X_FORWARDED_HOST", "public.example"),
            ("HTTP_X_HOST", "other.example"),
            ("HTTP_X_FORWARDED_SERVER", "front"),
            ("HTTP_X_FORWARDED_PORT", "443"),
            ("HTTP_X_SCRIPT_NAME", "/mount"),
            ("HTTP_X_FORWARDED_PROTO", "https"),
            ("HTTP_X_FORWARDED_SSL", "on"),
            ("HTTP_X_UNRELATED", "kept"),
        ])
    }

    #[test]
    fn nothing_changes_without_trusted_headers() {
        let mut e = spoofed("10.0.0.1");
        let before = e.clone();
        apply_trusted_proxy_headers(&mut e, Some(&nets(&["10.0.0.0/8"])), &[]);
        assert_eq!(e, before);
    }

    #[test]
    fn trusted_peer_rewrites_and_keeps_only_listed_headers() {
        let mut e = spoofed("10.0.0.1");
        let notes = apply_trusted_proxy_headers(
            &mut e,
            Some(&nets(&["10.0.0.0/8"])),
            &headers(&[
                "X-Forwarded-For",
                "X-Forwarded-Host",
                "X-Forwarded-Server",
                "X-Forwarded-Port",
                "X-Script-Name",
                "X-Forwarded-Proto",
            ]),
        );
        assert_eq!(notes, []);
        // 10.0.0.7 is a trusted proxy: the client is the entry left of it.
        assert_eq!(get(&e, "REMOTE_ADDR").as_deref(), Some("1.1.1.1"));
        assert_eq!(get(&e, "HTTP_HOST").as_deref(), Some("public.example"));
        assert_eq!(get(&e, "SERVER_NAME").as_deref(), Some("front"));
        assert_eq!(get(&e, "SERVER_PORT").as_deref(), Some("443"));
        assert_eq!(get(&e, "SCRIPT_NAME").as_deref(), Some("/mount"));
        assert_eq!(get(&e, "mod_wsgi.mount_point").as_deref(), Some("/mount"));
        assert_eq!(get(&e, "HTTPS").as_deref(), Some("on"));
        assert_eq!(get(&e, "REQUEST_SCHEME").as_deref(), Some("https"));
        // Listed headers stay (they say what was used); unlisted ones of the same purpose go.
        assert!(get(&e, "HTTP_X_FORWARDED_FOR").is_some());
        for gone in [
            "HTTP_X_CLIENT_IP",
            "HTTP_X_REAL_IP",
            "HTTP_X_HOST",
            "HTTP_X_FORWARDED_SSL",
        ] {
            assert_eq!(get(&e, gone), None, "{gone}");
        }
        assert_eq!(get(&e, "HTTP_X_UNRELATED").as_deref(), Some("kept"));
    }

    #[test]
    fn untrusted_peer_gets_every_header_of_a_listed_category_removed() {
        for peer in ["192.0.2.9", "not-an-address"] {
            let mut e = spoofed(peer);
            apply_trusted_proxy_headers(
                &mut e,
                Some(&nets(&["10.0.0.0/8"])),
                &headers(&["X-Forwarded-For", "X-Forwarded-Proto"]),
            );
            assert_eq!(get(&e, "REMOTE_ADDR").as_deref(), Some(peer));
            assert_eq!(get(&e, "REQUEST_SCHEME").as_deref(), Some("http"));
            assert_eq!(get(&e, "HTTPS"), None);
            for gone in [
                "HTTP_X_FORWARDED_FOR",
                "HTTP_X_CLIENT_IP",
                "HTTP_X_REAL_IP",
                "HTTP_X_FORWARDED_PROTO",
                "HTTP_X_FORWARDED_SSL",
            ] {
                assert_eq!(get(&e, gone), None, "{gone}");
            }
            // Categories with nothing listed are not touched.
            assert_eq!(
                get(&e, "HTTP_X_FORWARDED_HOST").as_deref(),
                Some("public.example")
            );
            assert_eq!(get(&e, "HTTP_HOST").as_deref(), Some("backend:8080"));
        }
    }

    #[test]
    fn x_client_ip_from_an_untrusted_peer_is_removed() {
        // CVE-2022-2255: trusting X-Client-IP must not let any client set it.
        let mut e = spoofed("192.0.2.9");
        apply_trusted_proxy_headers(
            &mut e,
            Some(&nets(&["10.0.0.1"])),
            &headers(&["X-Client-IP"]),
        );
        assert_eq!(get(&e, "HTTP_X_CLIENT_IP"), None);
        assert_eq!(get(&e, "REMOTE_ADDR").as_deref(), Some("192.0.2.9"));
        let mut e = spoofed("10.0.0.1");
        apply_trusted_proxy_headers(
            &mut e,
            Some(&nets(&["10.0.0.1"])),
            &headers(&["X-Client-IP"]),
        );
        assert_eq!(get(&e, "REMOTE_ADDR").as_deref(), Some("2.2.2.2"));
        assert_eq!(get(&e, "HTTP_X_FORWARDED_FOR"), None);
        assert_eq!(get(&e, "HTTP_X_REAL_IP"), None);
    }

    #[test]
    fn forwarded_for_walks_right_to_left_through_trusted_proxies() {
        let proxies = nets(&["10.0.0.0/8", "::1"]);
        // (value, client, rewritten X-Forwarded-For)
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("1.1.1.1", Some(("1.1.1.1", "1.1.1.1"))),
            ("1.1.1.1, 10.0.0.2", Some(("1.1.1.1", "1.1.1.1, 10.0.0.2"))),
            (
                "9.9.9.9, 1.1.1.1, 10.0.0.2, 10.0.0.3",
                Some(("1.1.1.1", "1.1.1.1, 10.0.0.2, 10.0.0.3")),
            ),
            // Only what the trusted chain vouches for counts: a spoofed left part is ignored.
            ("6.6.6.6, 1.1.1.1", Some(("1.1.1.1", "1.1.1.1"))),
            (
                "10.0.0.5, 10.0.0.6",
                Some(("10.0.0.5", "10.0.0.5, 10.0.0.6")),
            ),
            (
                " 2001:db8::1 , ::1",
                Some(("2001:db8::1", "2001:db8::1, ::1")),
            ),
            // Empty entries are skipped (RFC 9110 §5.6.1), as mod_wsgi does.
            (
                "1.1.1.1,, 10.0.0.2, ",
                Some(("1.1.1.1", "1.1.1.1, 10.0.0.2")),
            ),
            (",,1.1.1.1", Some(("1.1.1.1", "1.1.1.1"))),
            ("1.1.1.1, garbage", None),
            ("garbage, 10.0.0.2", None),
            ("", None),
            (" , ,", None),
        ];
        for (value, expected) in cases {
            let got = forwarded_for_client(value.as_bytes(), Some(&proxies))
                .map(|(ip, list)| (ip.to_string(), String::from_utf8(list.unwrap()).unwrap()));
            let expected = expected.map(|(ip, list)| (ip.to_string(), list.to_string()));
            assert_eq!(got, expected, "{value:?}");
        }
    }

    #[test]
    fn without_trusted_proxies_every_peer_is_trusted_and_the_first_entry_is_the_client() {
        // As mod_wsgi documents: WSGITrustedProxyHeaders alone trusts every peer.
        let cases: &[(&str, Option<&str>)] = &[
            ("1.1.1.1, 10.0.0.7", Some("1.1.1.1")),
            (", , 2.2.2.2 ,3.3.3.3", Some("2.2.2.2")),
            ("garbage, 1.1.1.1", None),
            (",", None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                forwarded_for_client(value.as_bytes(), None).map(|(ip, list)| {
                    assert_eq!(list, None, "X-Forwarded-For is left as sent");
                    ip.to_string()
                }),
                expected.map(str::to_string),
                "{value:?}"
            );
        }
        let mut e = spoofed("192.0.2.9");
        let notes = apply_trusted_proxy_headers(
            &mut e,
            None,
            &headers(&["X-Forwarded-For", "X-Script-Name", "X-Forwarded-SSL"]),
        );
        assert_eq!(notes, []);
        assert_eq!(get(&e, "REMOTE_ADDR").as_deref(), Some("1.1.1.1"));
        assert_eq!(
            get(&e, "HTTP_X_FORWARDED_FOR").as_deref(),
            Some("1.1.1.1, 10.0.0.7")
        );
        assert_eq!(get(&e, "SCRIPT_NAME").as_deref(), Some("/mount"));
        assert_eq!(get(&e, "mod_wsgi.mount_point").as_deref(), Some("/mount"));
        assert_eq!(get(&e, "HTTPS").as_deref(), Some("on"));
        for gone in [
            "HTTP_X_CLIENT_IP",
            "HTTP_X_REAL_IP",
            "HTTP_X_FORWARDED_PROTO",
        ] {
            assert_eq!(get(&e, gone), None, "{gone}");
        }
    }

    #[test]
    fn the_last_listed_header_applied_in_a_category_wins_and_is_kept() {
        let mut e = env(&[
            ("REMOTE_ADDR", "127.0.0.1"),
            ("HTTP_X_SCRIPT_NAME", "/first"),
            ("HTTP_X_FORWARDED_SCRIPT_NAME", "/second"),
        ]);
        apply_trusted_proxy_headers(
            &mut e,
            Some(&nets(&["127.0.0.1"])),
            &headers(&["X-Script-Name", "X-Forwarded-Script-Name"]),
        );
        assert_eq!(get(&e, "SCRIPT_NAME").as_deref(), Some("/second"));
        assert_eq!(get(&e, "mod_wsgi.mount_point").as_deref(), Some("/second"));
        assert_eq!(get(&e, "HTTP_X_SCRIPT_NAME"), None);
        assert_eq!(
            get(&e, "HTTP_X_FORWARDED_SCRIPT_NAME").as_deref(),
            Some("/second")
        );
    }

    #[test]
    fn unusable_values_are_ignored_with_a_note() {
        let mut e = env(&[
            ("REMOTE_ADDR", "127.0.0.1"),
            ("HTTP_X_REAL_IP", "not-an-ip"),
            ("HTTP_X_FORWARDED_PORT", "99999"),
            ("HTTP_X_FORWARDED_PROTO", "gopher"),
        ]);
        let notes = apply_trusted_proxy_headers(
            &mut e,
            Some(&nets(&["127.0.0.1"])),
            &headers(&["X-Real-IP", "X-Forwarded-Port", "X-Forwarded-Proto"]),
        );
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert_eq!(get(&e, "REMOTE_ADDR").as_deref(), Some("127.0.0.1"));
        assert_eq!(get(&e, "SERVER_PORT"), None);
        assert!(notes[0].to_string().contains("X-Real-IP"));
    }

    #[test]
    fn listed_values_use_the_entry_of_the_trusted_peer() {
        let mut e = env(&[
            ("REMOTE_ADDR", "127.0.0.1"),
            ("HTTP_X_FORWARDED_PROTO", "http, https"),
            ("HTTP_X_FORWARDED_HOST", "spoofed.example, public.example"),
            ("HTTP_X_FORWARDED_PORT", "1, 8443"),
        ]);
        let notes = apply_trusted_proxy_headers(
            &mut e,
            Some(&nets(&["127.0.0.1"])),
            &headers(&["X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port"]),
        );
        assert_eq!(notes, []);
        assert_eq!(get(&e, "REQUEST_SCHEME").as_deref(), Some("https"));
        assert_eq!(get(&e, "HTTP_HOST").as_deref(), Some("public.example"));
        assert_eq!(get(&e, "SERVER_PORT").as_deref(), Some("8443"));
    }

    #[test]
    fn scheme_flags_turn_https_on_and_off() {
        for (header, value, https) in [
            ("X-Forwarded-SSL", "on", true),
            ("X-Forwarded-SSL", "On", true),
            ("X-Forwarded-SSL", "true", true),
            ("X-Forwarded-SSL", "TRUE", true),
            ("X-Forwarded-HTTPS", "1", true),
            ("X-Forwarded-HTTPS", "true", true),
            ("X-Forwarded-HTTPS", "false", false),
            ("X-Forwarded-SSL", "0", false),
            ("X-HTTPS", "off", false),
            ("X-Forwarded-Scheme", "HTTPS", true),
            ("X-Scheme", "http", false),
        ] {
            let mut e = env(&[
                ("REMOTE_ADDR", "127.0.0.1"),
                ("HTTPS", "on"),
                (header_env_name(header).as_str(), value),
            ]);
            apply_trusted_proxy_headers(&mut e, Some(&nets(&["127.0.0.1"])), &headers(&[header]));
            assert_eq!(get(&e, "HTTPS").is_some(), https, "{header}: {value}");
            let scheme = if https { "https" } else { "http" };
            assert_eq!(get(&e, "REQUEST_SCHEME").as_deref(), Some(scheme));
        }
    }

    #[test]
    fn parses_and_normalises() {
        let cases: &[(&str, &str)] = &[
            ("127.0.0.1", "127.0.0.1/32"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("192.168.1.0/255.255.255.0", "192.168.1.0/24"),
            ("10.1", "10.1.0.0/16"),
            ("10", "10.0.0.0/8"),
            ("172.16.5", "172.16.5.0/24"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::1", "::1/128"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:db8::1/64", "2001:db8::/64"),
            ("1.2.3.4/0", "0.0.0.0/0"),
            ("10.1.2.3/255.255.255.255", "10.1.2.3/32"),
            ("10.1.2.3/0.0.0.0", "0.0.0.0/0"),
            ("::ffff:10.1.2.3/104", "::ffff:10.0.0.0/104"),
        ];
        for (text, expected) in cases {
            let net = IpNet::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(net.to_string(), *expected, "{text}");
        }
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "",
            "/8",
            "localhost",
            "10.0.0.256",
            "1.2.3.4.5",
            "10..1",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/255.0.255.0",
            "::1/129",
            "2001:db8::g",
            "::1/255.0.0.0",
            "10.0.0.0/0.255.255.255",
            "10.0.0.0/+8",
        ] {
            assert!(IpNet::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn containment() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("10.0.0.0/8", "::ffff:11.1.2.3", false),
            ("10.0.0.0/8", "::1", false),
            ("2001:db8::/32", "2001:db8:1::5", true),
            ("2001:db8::/32", "2001:db9::5", false),
            ("::1", "127.0.0.1", false),
            ("::/0", "127.0.0.1", false),
            ("0.0.0.0/0", "::ffff:8.8.8.8", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("::ffff:0:0/96", "::ffff:1.2.3.4", true),
            ("10.1.2.3/32", "10.1.2.3", true),
            ("10.1.2.3/32", "10.1.2.4", false),
        ];
        for (net, addr, expected) in cases {
            let n = IpNet::parse(net).unwrap();
            assert_eq!(n.contains(ip(addr)), *expected, "{net} contains {addr}");
        }
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        assert_eq!(
            canonical_proxy_header("x-forwarded-for"),
            Some("X-Forwarded-For")
        );
        assert_eq!(canonical_proxy_header("X-REAL-IP"), Some("X-Real-IP"));
        assert_eq!(canonical_proxy_header("X-Forwarded_For"), None);
        assert_eq!(canonical_proxy_header("Forwarded"), None);
        assert_eq!(
            proxy_header_category("x-forwarded-proto"),
            Some(ProxyHeaderCategory::Scheme)
        );
        assert_eq!(header_env_name("X-Forwarded-For"), "HTTP_X_FORWARDED_FOR");
        assert_eq!(KNOWN_PROXY_HEADERS.len(), 15);
    }
}
