//! The little of the DNS wire format the resolver needs (RFC 1035): the
//! question of a query, refusals built from it, a query for A records and
//! the A records of an answer. Kept to what is read and checked here, so
//! nothing a sandbox sends is interpreted beyond it.

use std::net::Ipv4Addr;

pub const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// Longest name we read, in wire bytes.
const MAX_NAME: usize = 255;

/// The one question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    /// Lowercase, dot-separated, no final dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question ends in the message.
    end: usize,
}

/// Reads the question of a standard query with exactly one question.
pub fn parse_query(msg: &[u8]) -> Option<Question> {
    if msg.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if qr || opcode != 0 || qdcount != 1 {
        return None;
    }
    let (name, at) = read_name(msg, 12, false)?;
    let fixed = msg.get(at..at + 4)?;
    Some(Question {
        id: u16::from_be_bytes([msg[0], msg[1]]),
        name,
        qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
        end: at + 4,
    })
}

/// Reads a name at `at`; with `follow`, compression pointers are followed
/// (answers), otherwise refused (questions). Returns the name and where
/// the name ends at `at`.
fn read_name(msg: &[u8], mut at: usize, follow: bool) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut len = 0usize;
    let mut end = None;
    for _ in 0..128 {
        let b = *msg.get(at)?;
        match b {
            0 => {
                let name = labels.join(".").to_ascii_lowercase();
                return Some((name, end.unwrap_or(at + 1)));
            }
            1..=63 => {
                let label = msg.get(at + 1..at + 1 + b as usize)?;
                len += b as usize + 1;
                if len > MAX_NAME {
                    return None;
                }
                labels.push(String::from_utf8_lossy(label).into_owned());
                at += 1 + b as usize;
            }
            0xc0..=0xff if follow => {
                let ptr = (usize::from(b & 0x3f) << 8) | usize::from(*msg.get(at + 1)?);
                end.get_or_insert(at + 2);
                if ptr >= at {
                    return None;
                }
                at = ptr;
            }
            _ => return None,
        }
    }
    None
}

/// A reply to `q` with no answer and `rcode` (0 NOERROR, 3 NXDOMAIN,
/// 5 REFUSED), echoing the question.
pub fn reply(query: &[u8], q: &Question, rcode: u8) -> Vec<u8> {
    let mut out = query[..q.end].to_vec();
    // QR, the query's RD, RA, the rcode.
    let rd = query[2] & 0x01;
    out[2] = 0x80 | rd;
    out[3] = 0x80 | (rcode & 0x0f);
    // One question, nothing else.
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out
}

/// A recursive query for the A records of `name`.
pub fn a_query(id: u16, name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&TYPE_A.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(out)
}

/// The A records of a response to query `id` (any owner name: a CNAME
/// chain's last name carries them), with the smallest TTL seen.
pub fn a_records(msg: &[u8], id: u16) -> Option<(Vec<Ipv4Addr>, u32)> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id || msg[2] & 0x80 == 0 {
        return None;
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = 12;
    for _ in 0..qd {
        let (_, end) = read_name(msg, at, true)?;
        at = end + 4;
    }
    let mut addrs = Vec::new();
    let mut ttl = u32::MAX;
    for _ in 0..an {
        let (_, end) = read_name(msg, at, true)?;
        let fixed = msg.get(end..end + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data = msg.get(end + 10..end + 10 + rdlen)?;
        if rtype == TYPE_A && rdlen == 4 {
            addrs.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
            ttl = ttl.min(rttl);
        }
        at = end + 10 + rdlen;
    }
    Some((addrs, if ttl == u32::MAX { 0 } else { ttl }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_question_and_refuses_what_is_not_a_plain_query() {
        let q = a_query(0x1234, "Pypi.ORG").unwrap();
        let parsed = parse_query(&q).unwrap();
        assert_eq!(
            (parsed.id, parsed.name.as_str(), parsed.qtype),
            (0x1234, "pypi.org", TYPE_A)
        );
        let mut response = q.clone();
        response[2] |= 0x80;
        assert!(parse_query(&response).is_none());
        assert!(parse_query(&q[..10]).is_none());
        let mut two = q.clone();
        two[5] = 2;
        assert!(parse_query(&two).is_none());
        // A pointer in a question is refused.
        let mut ptr = q[..12].to_vec();
        ptr.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        assert!(parse_query(&ptr).is_none());
    }

    #[test]
    fn refusals_echo_the_question() {
        let q = a_query(7, "evil.example").unwrap();
        let parsed = parse_query(&q).unwrap();
        let r = reply(&q, &parsed, 3);
        assert_eq!(&r[..2], &[0, 7]);
        assert_eq!(r[3] & 0x0f, 3);
        assert_eq!(r[2] & 0x80, 0x80);
        assert_eq!(&r[12..], &q[12..]);
        assert_eq!(a_records(&r, 7).unwrap().0, Vec::<Ipv4Addr>::new());
    }

    #[test]
    fn reads_a_records_through_compression() {
        let q = a_query(9, "www.example").unwrap();
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 2;
        // CNAME www.example -> ex.example (pointer to the question name),
        // then its A record.
        r.extend_from_slice(&[
            0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 5, 2, b'e', b'x', 0xc0, 16,
        ]);
        let cname_target = r.len() - 5;
        r.extend_from_slice(&[0xc0, cname_target as u8, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        r.extend_from_slice(&[198, 18, 0, 1]);
        let (addrs, ttl) = a_records(&r, 9).unwrap();
        assert_eq!(addrs, [Ipv4Addr::new(198, 18, 0, 1)]);
        assert_eq!(ttl, 30);
        assert!(a_records(&r, 10).is_none());
        assert!(a_records(&r[..r.len() - 2], 9).is_none());
    }
}
