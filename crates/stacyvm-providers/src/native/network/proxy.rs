//! The egress proxy of one sandbox: a listener on the sandbox's host-side
//! address that takes every TCP connection the sandbox makes (nftables
//! redirects them there), reads where it was headed, and joins it to that
//! destination only if the sandbox's policy allows it. A refused
//! connection is reset. Outgoing sockets carry [`nft::PROXY_MARK`], so the
//! host's rules keep them off local and internal addresses even if a
//! check here were wrong.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use stacyvm_core::CompiledPolicy;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::nft;
use super::resolver::{self, Names};
use super::sniff::{self, Sniffed};

/// A running proxy; dropping it stops the listener and cuts every
/// connection it carries.
#[derive(Debug)]
pub struct Proxy {
    cancel: CancellationToken,
    /// Where a changed policy goes to the resolver and every connection.
    policy: watch::Sender<Arc<CompiledPolicy>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What the proxy needs besides the policy.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The sandbox pool: never a destination.
    pub pool: Ipv4Net,
    pub connect_timeout: Duration,
    /// Where the resolver asks; `None`: no domain entry can match.
    pub upstream: Option<SocketAddr>,
    pub dns_port: u16,
}

impl Proxy {
    /// Binds `addr` and serves until dropped.
    pub async fn start(
        sandbox: String,
        addr: SocketAddr,
        policy: CompiledPolicy,
        settings: Settings,
    ) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(addr).await?;
        let dns = tokio::net::UdpSocket::bind((addr.ip(), settings.dns_port)).await?;
        let cancel = CancellationToken::new();
        let (tx, rx) = watch::channel(Arc::new(policy));
        let names = Names::default();
        tokio::spawn(resolver::serve(
            dns,
            sandbox.clone(),
            rx.clone(),
            settings.upstream,
            names.clone(),
            cancel.clone(),
        ));
        tokio::spawn(serve(
            listener,
            sandbox,
            rx,
            settings,
            names,
            cancel.clone(),
        ));
        Ok(Proxy { cancel, policy: tx })
    }

    /// Puts `policy` in force: new connections and DNS queries follow it
    /// at once, and open connections it no longer allows are cut.
    pub fn set_policy(&self, policy: CompiledPolicy) {
        self.policy.send_replace(Arc::new(policy));
    }
}

async fn serve(
    listener: TcpListener,
    sandbox: String,
    policy: watch::Receiver<Arc<CompiledPolicy>>,
    settings: Settings,
    names: Names,
    cancel: CancellationToken,
) {
    loop {
        let conn = tokio::select! {
            _ = cancel.cancelled() => return,
            conn = listener.accept() => conn,
        };
        let (stream, _) = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(sandbox_id = %sandbox, error = %e, "egress proxy accept");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (policy, cancel, sandbox) = (policy.clone(), cancel.child_token(), sandbox.clone());
        let names = names.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = handle(stream, &sandbox, policy, settings, &names) => {}
            }
        });
    }
}

async fn handle(
    stream: TcpStream,
    sandbox: &str,
    policy: watch::Receiver<Arc<CompiledPolicy>>,
    settings: Settings,
    names: &Names,
) {
    let Some(dest) = original_destination(&stream) else {
        reset(stream);
        return;
    };
    let p = policy.borrow().clone();
    if forbidden(dest.ip(), settings.pool) {
        tracing::debug!(sandbox_id = %sandbox, destination = %dest, "egress refused (internal)");
        reset(stream);
        return;
    }
    let mut stream = stream;
    let mut first = Vec::new();
    let mut by_name = None;
    if !p.allows_ip(dest.ip(), dest.port()) {
        // Only a domain entry can still allow it: by the name the
        // connection itself asks for, and only to an address of that name.
        let name = if p.has_domains() {
            read_name(&mut stream, &mut first).await
        } else {
            None
        };
        let ok = match (&name, dest.ip()) {
            (Some(n), IpAddr::V4(v4)) => {
                p.allows_name(n, dest.ip(), dest.port())
                    && names.resolves_to(settings.upstream, n, v4).await
            }
            _ => false,
        };
        if !ok {
            tracing::debug!(sandbox_id = %sandbox, destination = %dest, name = ?name, "egress refused");
            reset(stream);
            return;
        }
        by_name = name;
    }
    let upstream = match tokio::time::timeout(settings.connect_timeout, connect_marked(dest)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(sandbox_id = %sandbox, destination = %dest, error = %e, "egress connect failed");
            reset(stream);
            return;
        }
        Err(_) => {
            reset(stream);
            return;
        }
    };
    let (mut a, mut b) = (stream, upstream);
    if !first.is_empty() {
        use tokio::io::AsyncWriteExt;
        if b.write_all(&first).await.is_err() {
            return;
        }
    }
    // Still allowed under a changed policy? (The name's addresses were
    // checked when it opened.)
    let still = |p: &CompiledPolicy| {
        p.allows_ip(dest.ip(), dest.port())
            || by_name
                .as_deref()
                .is_some_and(|n| p.allows_name(n, dest.ip(), dest.port()))
    };
    let mut policy = policy;
    let cut = async {
        loop {
            if policy.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if !still(&policy.borrow_and_update()) {
                return;
            }
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
        _ = cut => {
            tracing::debug!(sandbox_id = %sandbox, destination = %dest, "egress cut: no longer allowed");
            reset(a);
        }
    }
}

/// How long a connection may take to say which name it wants.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the first bytes of `stream` into `buf` until they name a host
/// (TLS SNI or HTTP `Host`).
async fn read_name(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + SNIFF_TIMEOUT;
    let mut chunk = [0u8; 4096];
    loop {
        match sniff::sniff(buf) {
            Sniffed::Tls(n) | Sniffed::Http(n) => return Some(n),
            Sniffed::Unknown => return None,
            Sniffed::NeedMore if buf.len() >= sniff::MAX_PEEK => return None,
            Sniffed::NeedMore => {}
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Where the sandbox meant to connect, before the redirect.
fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    sock.original_dst_v4().ok()?.as_socket()
}

/// A marked connection from the host to `dest`.
async fn connect_marked(dest: SocketAddr) -> std::io::Result<TcpStream> {
    let domain = match dest {
        SocketAddr::V4(_) => socket2::Domain::IPV4,
        SocketAddr::V6(_) => socket2::Domain::IPV6,
    };
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.set_mark(nft::PROXY_MARK)?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    let std_stream: std::net::TcpStream = sock.into();
    TcpSocket::from_std_stream(std_stream).connect(dest).await
}

/// Closes with a reset, so the sandbox sees "connection refused/reset"
/// rather than an empty answer.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Destinations no policy can open: the pool (other sandboxes and the
/// host's side of every link), loopback, link-local (cloud metadata),
/// multicast, broadcast, "this network", reserved, and IPv6 (sandboxes
/// have no IPv6 egress).
pub fn forbidden(ip: IpAddr, pool: Ipv4Net) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            pool.contains(&v4)
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.octets()[0] == 0
                || v4.octets()[0] >= 240
                || v4 == Ipv4Addr::new(169, 254, 169, 254)
        }
        IpAddr::V6(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_destinations_are_forbidden() {
        let pool: Ipv4Net = "10.231.0.0/16".parse().unwrap();
        for ip in [
            "10.231.0.6",
            "127.0.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "240.0.0.1",
            "::1",
            "2001:db8::1",
        ] {
            assert!(forbidden(ip.parse().unwrap(), pool), "{ip}");
        }
        for ip in ["10.1.0.1", "198.18.0.1", "192.0.2.1"] {
            assert!(!forbidden(ip.parse().unwrap(), pool), "{ip}");
        }
    }
}
