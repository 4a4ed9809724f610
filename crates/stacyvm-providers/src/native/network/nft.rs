//! The host's nftables rules for sandboxes with network mode `allow`, in
//! one table of our own (`inet stacyvm`), driven through the `nft` binary.
//!
//! What the table enforces, whatever a sandbox's policy says:
//! - every TCP connection a sandbox makes is redirected to the egress
//!   proxy on its own host-side address (the proxy applies the policy),
//!   and its DNS, to whatever address, to the StacyVM resolver there;
//! - nothing else from a sandbox reaches the host: not its loopback
//!   services, not the API port, not another sandbox's proxy;
//! - nothing from a sandbox is forwarded, and nothing is forwarded to one:
//!   sandboxes cannot reach each other or anything by routing;
//! - the proxy's own connections (marked with [`PROXY_MARK`]) never reach
//!   a local address, the sandbox pool, loopback, link-local (metadata
//!   services such as 169.254.169.254), multicast or IPv6.
//!
//! The per-sandbox part is one element of the `sandbox_ifs` set: its host
//! interface, added at spawn and removed at destroy.

use std::process::Stdio;

use ipnet::Ipv4Net;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The `SO_MARK` of the proxy's outgoing sockets.
pub const PROXY_MARK: u32 = 0x5356_4d31;
/// The `SO_MARK` of the resolver's queries to its upstream (which may be
/// a local resolver, so the proxy's fence does not apply).
pub const RESOLVER_MARK: u32 = 0x5356_4d32;

/// The whole table, replacing any earlier one in one transaction, with
/// the interfaces of the sandboxes that exist now.
pub fn table_script(
    table: &str,
    pool: Ipv4Net,
    proxy_port: u16,
    dns_port: u16,
    ifaces: &[String],
) -> String {
    let elements = if ifaces.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = ifaces.iter().map(|i| format!("\"{i}\"")).collect();
        format!("\n    elements = {{ {} }}", quoted.join(", "))
    };
    format!(
        r#"add table inet {table}
delete table inet {table}
table inet {table} {{
  set sandbox_ifs {{
    type ifname;{elements}
  }}
  set guard4 {{
    type ipv4_addr; flags interval;
    elements = {{ 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/3, {pool} }}
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname @sandbox_ifs meta l4proto tcp redirect to :{proxy_port}
    iifname @sandbox_ifs udp dport 53 redirect to :{dns_port}
  }}
  chain input {{
    type filter hook input priority filter - 5; policy accept;
    iifname @sandbox_ifs ct state established,related accept
    iifname @sandbox_ifs tcp dport {proxy_port} ct status dnat accept
    iifname @sandbox_ifs udp dport {dns_port} ct status dnat accept
    iifname @sandbox_ifs counter drop
  }}
  chain forward {{
    type filter hook forward priority filter - 5; policy accept;
    iifname @sandbox_ifs counter drop
    oifname @sandbox_ifs counter drop
  }}
  chain output {{
    type filter hook output priority filter - 5; policy accept;
    meta mark {PROXY_MARK:#x} fib daddr type {{ local, broadcast, multicast, anycast }} counter reject with tcp reset
    meta mark {PROXY_MARK:#x} ip daddr @guard4 counter reject with tcp reset
    meta mark {PROXY_MARK:#x} meta nfproto ipv6 counter reject with tcp reset
  }}
}}
"#
    )
}

/// Runs an nft script (`nft -f -`), all or nothing.
pub async fn apply(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("nft has no stdin")?;
    stdin
        .write_all(script.as_bytes())
        .await
        .map_err(|e| format!("writing to nft: {e}"))?;
    drop(stdin);
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub async fn add_iface(table: &str, iface: &str) -> Result<(), String> {
    apply(&format!(
        "add element inet {table} sandbox_ifs {{ \"{iface}\" }}\n"
    ))
    .await
}

/// Removes a sandbox's interface; one that is not there is not an error.
pub async fn remove_iface(table: &str, iface: &str) -> Result<(), String> {
    match apply(&format!(
        "delete element inet {table} sandbox_ifs {{ \"{iface}\" }}\n"
    ))
    .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.contains("No such file") || e.contains("does not exist") => Ok(()),
        Err(e) => Err(e),
    }
}

/// The interfaces in the set now (for leak checks).
pub async fn ifaces(table: &str) -> Result<Vec<String>, String> {
    let out = Command::new("nft")
        .args(["-j", "list", "set", "inet", table, "sandbox_ifs"])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file") {
            return Ok(Vec::new());
        }
        return Err(format!("nft failed: {}", err.trim()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("nft -j: {e}"))?;
    let mut names = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        for e in item["set"]["elem"].as_array().into_iter().flatten() {
            if let Some(s) = e.as_str() {
                names.push(s.to_string());
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_names_the_pool_port_and_interfaces() {
        let s = table_script(
            "stacyvm",
            "10.231.0.0/16".parse().unwrap(),
            17480,
            17453,
            &["sva".into()],
        );
        assert!(s.contains("redirect to :17480"));
        assert!(s.contains("udp dport 53 redirect to :17453"));
        assert!(s.contains("10.231.0.0/16 }"));
        assert!(s.contains("elements = { \"sva\" }"));
        assert!(!table_script("t", "10.0.0.0/8".parse().unwrap(), 1, 2, &[]).contains("\"sva\""));
    }
}
