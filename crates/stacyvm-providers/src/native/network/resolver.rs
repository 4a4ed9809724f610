//! The StacyVM resolver of one sandbox: a UDP DNS listener on its
//! host-side address (nftables sends it the sandbox's DNS, whatever the
//! address asked). It answers only A queries for names the policy allows,
//! by asking the configured upstream; everything else gets NXDOMAIN (names
//! not allowed: nothing leaves, so DNS carries nothing out) or an empty
//! answer (AAAA: sandboxes have no IPv6). The addresses it hands out are
//! remembered for the proxy, which lets a named connection through only to
//! an address of that name.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stacyvm_core::CompiledPolicy;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{dns, nft};

/// How long an upstream query may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// Shortest time an answer is remembered, whatever its TTL.
const MIN_REMEMBER: Duration = Duration::from_secs(60);
/// Most names remembered per sandbox.
const MAX_NAMES: usize = 4096;

/// Names this sandbox was told, with their addresses.
#[derive(Debug, Default, Clone)]
pub struct Names(Arc<Mutex<HashMap<String, Told>>>);

/// The addresses of a name, and until when they hold.
type Told = (Vec<Ipv4Addr>, Instant);

impl Names {
    fn remember(&self, name: &str, addrs: &[Ipv4Addr], ttl: u32) {
        let until = Instant::now() + MIN_REMEMBER.max(Duration::from_secs(u64::from(ttl)));
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_NAMES {
            let now = Instant::now();
            m.retain(|_, (_, t)| *t > now);
            if m.len() >= MAX_NAMES {
                m.clear();
            }
        }
        m.insert(name.to_string(), (addrs.to_vec(), until));
    }

    fn known(&self, name: &str, ip: Ipv4Addr) -> bool {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(name)
            .is_some_and(|(a, t)| *t > Instant::now() && a.contains(&ip))
    }

    /// Whether `name` resolves to `ip`: as told to the sandbox, or asked
    /// again now.
    pub async fn resolves_to(
        &self,
        upstream: Option<SocketAddr>,
        name: &str,
        ip: Ipv4Addr,
    ) -> bool {
        if self.known(name, ip) {
            return true;
        }
        let Some(up) = upstream else { return false };
        match lookup(up, name).await {
            Some((addrs, ttl)) => {
                self.remember(name, &addrs, ttl);
                addrs.contains(&ip)
            }
            None => false,
        }
    }
}

/// Serves DNS on `socket` until `cancel`.
pub async fn serve(
    socket: UdpSocket,
    sandbox: String,
    policy: watch::Receiver<Arc<CompiledPolicy>>,
    upstream: Option<SocketAddr>,
    names: Names,
    cancel: CancellationToken,
) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let query = buf[..n].to_vec();
        let Some(q) = dns::parse_query(&query) else {
            continue;
        };
        let allowed = policy.borrow().resolves(&q.name);
        let (socket, names, sandbox) = (socket.clone(), names.clone(), sandbox.clone());
        let child = cancel.child_token();
        tokio::spawn(async move {
            let answer = tokio::select! {
                _ = child.cancelled() => return,
                a = answer(&query, &q, allowed, upstream, &names) => a,
            };
            if !allowed {
                tracing::debug!(sandbox_id = %sandbox, name = %q.name, "dns refused");
            }
            let _ = socket.send_to(&answer, from).await;
        });
    }
}

async fn answer(
    query: &[u8],
    q: &dns::Question,
    allowed: bool,
    upstream: Option<SocketAddr>,
    names: &Names,
) -> Vec<u8> {
    const NOERROR: u8 = 0;
    const SERVFAIL: u8 = 2;
    const NXDOMAIN: u8 = 3;
    if !allowed || q.qclass != 1 {
        return dns::reply(query, q, NXDOMAIN);
    }
    if q.qtype != dns::TYPE_A {
        return dns::reply(query, q, NOERROR);
    }
    let Some(up) = upstream else {
        return dns::reply(query, q, SERVFAIL);
    };
    match lookup(up, &q.name).await {
        Some((addrs, ttl)) => {
            names.remember(&q.name, &addrs, ttl);
            answer_with(query, q, &addrs, ttl)
        }
        None => dns::reply(query, q, SERVFAIL),
    }
}

/// A reply to `q` carrying `addrs` as A records of the question's name:
/// the sandbox sees only what was checked, never the upstream's own
/// additional records.
fn answer_with(query: &[u8], q: &dns::Question, addrs: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
    let mut out = dns::reply(query, q, if addrs.is_empty() { 3 } else { 0 });
    out[6..8].copy_from_slice(&(addrs.len() as u16).to_be_bytes());
    for a in addrs {
        // Name: a pointer to the question's name at offset 12.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        out.extend_from_slice(&ttl.min(300).to_be_bytes());
        out.extend_from_slice(&[0, 4]);
        out.extend_from_slice(&a.octets());
    }
    out
}

/// Asks `upstream` for the A records of `name`.
pub async fn lookup(upstream: SocketAddr, name: &str) -> Option<(Vec<Ipv4Addr>, u32)> {
    let id: u16 = rand_id();
    let query = dns::a_query(id, name)?;
    let bind: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(bind),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .ok()?;
    sock.set_mark(nft::RESOLVER_MARK).ok()?;
    sock.set_nonblocking(true).ok()?;
    sock.bind(&bind.into()).ok()?;
    let sock = UdpSocket::from_std(sock.into()).ok()?;
    sock.connect(upstream).await.ok()?;
    sock.send(&query).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        if let Some(found) = dns::a_records(&buf[..n], id) {
            return Some(found);
        }
    }
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_carry_only_the_checked_addresses() {
        let q = dns::a_query(5, "allowed.test").unwrap();
        let parsed = dns::parse_query(&q).unwrap();
        let a = answer_with(&q, &parsed, &[Ipv4Addr::new(198, 18, 0, 1)], 30);
        let (addrs, ttl) = dns::a_records(&a, 5).unwrap();
        assert_eq!((addrs, ttl), (vec![Ipv4Addr::new(198, 18, 0, 1)], 30));
        let none = answer_with(&q, &parsed, &[], 30);
        assert_eq!(none[3] & 0x0f, 3);
    }

    #[test]
    fn remembered_names_match_their_addresses_only() {
        let n = Names::default();
        n.remember("a.test", &[Ipv4Addr::new(198, 18, 0, 1)], 1);
        assert!(n.known("a.test", Ipv4Addr::new(198, 18, 0, 1)));
        assert!(!n.known("a.test", Ipv4Addr::new(198, 18, 0, 2)));
        assert!(!n.known("b.test", Ipv4Addr::new(198, 18, 0, 1)));
    }
}
