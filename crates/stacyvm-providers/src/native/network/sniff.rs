//! The name a connection asks for, from its first bytes: the SNI of a TLS
//! ClientHello (RFC 8446 §4.1.2, RFC 6066 §3), or the `Host` header of an
//! HTTP/1 request. The proxy reads until one of these can be decided.

/// Most bytes read before deciding.
pub const MAX_PEEK: usize = 16 * 1024;

/// What the first bytes say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    /// Not enough bytes yet.
    NeedMore,
    /// TLS with this server name.
    Tls(String),
    /// HTTP with this `Host` (port removed).
    Http(String),
    /// Neither, or TLS without SNI, or malformed.
    Unknown,
}

pub fn sniff(buf: &[u8]) -> Sniffed {
    match buf.first() {
        None => Sniffed::NeedMore,
        Some(0x16) => tls(buf),
        Some(b) if b.is_ascii_uppercase() => http(buf),
        Some(_) => Sniffed::Unknown,
    }
}

fn tls(buf: &[u8]) -> Sniffed {
    if buf.len() < 5 {
        return Sniffed::NeedMore;
    }
    let record_len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if buf.len() < 5 + record_len {
        return if 5 + record_len > MAX_PEEK {
            Sniffed::Unknown
        } else {
            Sniffed::NeedMore
        };
    }
    client_hello_sni(&buf[5..5 + record_len])
        .map(Sniffed::Tls)
        .unwrap_or(Sniffed::Unknown)
}

/// The host_name of the server_name extension of a ClientHello handshake
/// message that fits in one record.
fn client_hello_sni(hs: &[u8]) -> Option<String> {
    let mut r = Reader(hs);
    if r.u8()? != 1 {
        return None;
    }
    let len = r.u24()?;
    let mut body = Reader(r.take(len)?);
    body.take(2 + 32)?; // version, random
    let sid = usize::from(body.u8()?);
    body.take(sid)?;
    let suites = usize::from(body.u16()?);
    body.take(suites)?;
    let comp = usize::from(body.u8()?);
    body.take(comp)?;
    let ext_len = usize::from(body.u16()?);
    let mut exts = Reader(body.take(ext_len)?);
    while !exts.0.is_empty() {
        let typ = exts.u16()?;
        let len = usize::from(exts.u16()?);
        let data = exts.take(len)?;
        if typ != 0 {
            continue;
        }
        let mut list = Reader(data);
        let list_len = usize::from(list.u16()?);
        let mut names = Reader(list.take(list_len)?);
        while !names.0.is_empty() {
            let kind = names.u8()?;
            let n = usize::from(names.u16()?);
            let name = names.take(n)?;
            if kind == 0 {
                let s = std::str::from_utf8(name).ok()?;
                return valid_host(s).then(|| s.to_ascii_lowercase());
            }
        }
        return None;
    }
    None
}

fn http(buf: &[u8]) -> Sniffed {
    // A first line that is not a request line is decided at once.
    if let Some(eol) = find(buf, b"\r\n") {
        let line = &buf[..eol];
        if !(line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0")) {
            return Sniffed::Unknown;
        }
    }
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() >= MAX_PEEK {
            Sniffed::Unknown
        } else {
            Sniffed::NeedMore
        };
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Sniffed::Unknown;
    };
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    if !request.ends_with(" HTTP/1.1") && !request.ends_with(" HTTP/1.0") {
        return Sniffed::Unknown;
    }
    let mut hosts = lines.filter_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("host").then(|| v.trim())
    });
    // Exactly one Host: two could mean different things to us and to the
    // server.
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return Sniffed::Unknown;
    };
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    if valid_host(name) {
        Sniffed::Http(name.to_ascii_lowercase())
    } else {
        Sniffed::Unknown
    }
}

fn valid_host(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some((usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

/// A minimal TLS 1.2 ClientHello naming `sni` (tests, here and in the
/// provider's integration tests through a sandbox's `printf`).
pub fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut sni_ext = Vec::new();
    sni_ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni_ext.push(0);
    sni_ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni_ext.extend_from_slice(name);
    let mut exts = Vec::new();
    exts.extend_from_slice(&0u16.to_be_bytes());
    exts.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
    exts.extend_from_slice(&sni_ext);
    // supported_groups (P-256), ec_point_formats (uncompressed),
    // signature_algorithms (ecdsa_secp256r1_sha256, rsa_pkcs1_sha256).
    exts.extend_from_slice(&[0x00, 0x0a, 0, 4, 0, 2, 0x00, 0x17]);
    exts.extend_from_slice(&[0x00, 0x0b, 0, 2, 1, 0]);
    exts.extend_from_slice(&[0x00, 0x0d, 0, 6, 0, 4, 0x04, 0x03, 0x04, 0x01]);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    // ECDHE-ECDSA- and ECDHE-RSA-AES128-GCM-SHA256.
    body.extend_from_slice(&[0, 4, 0xc0, 0x2b, 0xc0, 0x2f]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_sni_of_a_client_hello() {
        let hello = client_hello("Allowed.Test");
        assert_eq!(sniff(&hello), Sniffed::Tls("allowed.test".into()));
        for cut in [1, 4, 5, 20, hello.len() - 1] {
            assert_eq!(sniff(&hello[..cut]), Sniffed::NeedMore, "cut at {cut}");
        }
        let mut bad = hello.clone();
        bad[5] = 2; // not a ClientHello
        assert_eq!(sniff(&bad), Sniffed::Unknown);
    }

    #[test]
    fn finds_one_host_header() {
        let req = b"GET / HTTP/1.1\r\nUser-Agent: x\r\nHOST: Allowed.test:8080\r\n\r\n";
        assert_eq!(sniff(req), Sniffed::Http("allowed.test".into()));
        assert_eq!(sniff(&req[..20]), Sniffed::NeedMore);
        let two = b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n";
        assert_eq!(sniff(two), Sniffed::Unknown);
        let none = b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n";
        assert_eq!(sniff(none), Sniffed::Unknown);
        assert_eq!(sniff(b"SSH-2.0-OpenSSH\r\n"), Sniffed::Unknown);
        assert_eq!(sniff(b"\x00\x01"), Sniffed::Unknown);
        let odd = b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n";
        assert_eq!(sniff(odd), Sniffed::Unknown);
    }
}
