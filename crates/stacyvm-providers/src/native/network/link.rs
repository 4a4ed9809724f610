//! A sandbox's link to the host: its own network namespace
//! (`/run/netns/stacyvm-<id>`, which the runtime joins) and a veth pair,
//! `eth0` inside and `sv<hash>` on the host, with addresses from the pool.
//! Made and removed with `ip` (iproute2), in two batches.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;

use ipnet::Ipv4Net;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Where `ip netns` keeps named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// The host-side names and addresses of one sandbox's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub netns: String,
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    pub sandbox_ip: Ipv4Addr,
}

impl Link {
    /// The link of sandbox `id` in slot `slot` of `pool` (a /30 per slot).
    pub fn new(id: &str, slot: u32, pool: Ipv4Net) -> Link {
        let base = u32::from(pool.network()) + slot * 4;
        Link {
            netns: format!("stacyvm-{id}"),
            host_if: host_if(id),
            host_ip: Ipv4Addr::from(base + 1),
            sandbox_ip: Ipv4Addr::from(base + 2),
        }
    }

    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.netns)
    }

    /// Makes the namespace and the veth pair, addressed and up, with the
    /// default route through the host side. No IPv6 on either end.
    pub async fn create(&self) -> Result<(), String> {
        let Link {
            netns,
            host_if,
            host_ip,
            sandbox_ip,
        } = self;
        ip(
            &[],
            &format!(
                "netns add {netns}\n\
                 link add {host_if} type veth peer name eth0 netns {netns}\n\
                 link set {host_if} addrgenmode none\n\
                 addr add {host_ip}/30 dev {host_if}\n\
                 link set {host_if} up\n"
            ),
        )
        .await?;
        ip(
            &["-n", netns],
            &format!(
                "link set eth0 addrgenmode none\n\
                 addr add {sandbox_ip}/30 dev eth0\n\
                 link set lo up\n\
                 link set eth0 up\n\
                 route add default via {host_ip}\n"
            ),
        )
        .await
    }

    /// Removes the pair and the namespace; what is already gone is fine.
    pub async fn remove(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        if iface_exists(&self.host_if)
            && let Err(e) = ip(&[], &format!("link del {}\n", self.host_if)).await
        {
            errors.push(e);
        }
        if self.netns_path().exists()
            && let Err(e) = ip(&[], &format!("netns del {}\n", self.netns)).await
        {
            errors.push(e);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// The host interface of sandbox `id`: `sv` and 13 hex digits of a hash of
/// the id (interface names have at most 15 bytes).
pub fn host_if(id: &str) -> String {
    // FNV-1a: stable across builds and restarts.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("sv{:013x}", h & 0x000f_ffff_ffff_ffff)
}

/// Whether a host interface of that name exists.
pub fn iface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

async fn ip(global: &[&str], batch: &str) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(global)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("ip has no stdin")?;
    stdin
        .write_all(batch.as_bytes())
        .await
        .map_err(|e| format!("writing to ip: {e}"))?;
    drop(stdin);
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            batch.lines().next().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_addresses_follow_the_slot() {
        let l = Link::new("sb-0123456789ab", 3, "10.231.0.0/16".parse().unwrap());
        assert_eq!(l.host_if.len(), 15);
        assert!(l.host_if.starts_with("sv"));
        assert_eq!(l.host_ip, Ipv4Addr::new(10, 231, 0, 13));
        assert_eq!(l.sandbox_ip, Ipv4Addr::new(10, 231, 0, 14));
        assert_eq!(
            l.netns_path(),
            PathBuf::from("/run/netns/stacyvm-sb-0123456789ab")
        );
        assert_ne!(host_if("sb-0123456789ab"), host_if("sb-0123456789ac"));
    }
}
