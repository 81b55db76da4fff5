//! Values of WSGITrustedProxies (`IpNet`) and WSGITrustedProxyHeaders (the
//! header names mod_wsgi knows, reference §6).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 address with a prefix length: `10.0.0.0/8`, `::1`,
/// `192.168.1.0/255.255.255.0`, or a partial IPv4 address such as `10.1`
/// (= `10.1.0.0/16`), the forms `apr_ipsubnet_create` accepts. Host bits are
/// cleared, as APR does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

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
            return Ok(IpNet::new(IpAddr::V6(addr), prefix));
        }
        let (addr, implied) = parse_ipv4_partial(addr_text)?;
        let prefix = match mask_text {
            None => implied,
            Some(m) if m.contains('.') => netmask_bits(m)?,
            Some(m) => parse_bits(m, 32)?,
        };
        Ok(IpNet::new(IpAddr::V4(addr), prefix))
    }

    fn new(addr: IpAddr, prefix: u8) -> Self {
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & mask128(prefix))),
        };
        IpNet { addr, prefix }
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this subnet. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`) matches an IPv4 subnet, as with APR.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                ip.to_bits() & mask32(self.prefix) == net.to_bits()
            }
            (IpAddr::V4(net), IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
                Some(v4) => v4.to_bits() & mask32(self.prefix) == net.to_bits(),
                None => false,
            },
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                ip.to_bits() & mask128(self.prefix) == net.to_bits()
            }
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
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
    let bits = mask.to_bits();
    let ones = bits.leading_ones();
    if bits.checked_shl(ones).unwrap_or(0) != 0 {
        return Err("netmask is not contiguous".into());
    }
    Ok(ones as u8)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
