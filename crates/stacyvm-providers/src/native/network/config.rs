//! `providers.native.egress.*`: the host side of network mode `allow`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Settings of egress for sandboxes with network mode `allow` (and the
/// opt-in for mode `host`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Private IPv4 range the sandboxes' links take their addresses from,
    /// a /30 each (host side `.1`, sandbox `.2`). Never reachable from a
    /// sandbox, whatever its policy.
    pub subnet: String,
    /// Lets a spawn ask for network mode `host` (the host's network,
    /// unfiltered). Off: such a spawn is refused with 400.
    pub allow_host_mode: bool,
    /// TCP port of the egress proxy on each sandbox's host-side address;
    /// every TCP connection a sandbox makes is redirected there.
    pub proxy_port: u16,
    /// How long the proxy waits for an allowed destination to accept.
    pub connect_timeout_ms: u64,
    /// The DNS server (`address:port`, or an address for port 53) the
    /// StacyVM resolver asks for the names a policy allows. Empty: domain
    /// entries are refused at spawn (400).
    pub dns_upstream: String,
    /// UDP port of the resolver on each sandbox's host-side address; a
    /// sandbox's DNS to any address is redirected there.
    pub dns_port: u16,
    /// The nftables table (family `inet`) this server owns and replaces at
    /// start; two servers on one host need different tables and subnets.
    pub table: String,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            subnet: "10.231.0.0/16".into(),
            allow_host_mode: false,
            proxy_port: 17480,
            connect_timeout_ms: 10_000,
            table: "stacyvm".into(),
            dns_upstream: String::new(),
            dns_port: 17453,
        }
    }
}

impl EgressConfig {
    /// The pool, checked; errors name the key.
    pub fn pool(&self) -> Result<Ipv4Net, String> {
        let key = "providers.native.egress.subnet";
        let net: Ipv4Net = self
            .subnet
            .parse()
            .map_err(|_| format!("{key} {:?} is not an IPv4 CIDR", self.subnet))?;
        if net.prefix_len() > 28 {
            return Err(format!("{key} {net} is too small: use a /28 or larger"));
        }
        let shared = Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10).expect("valid");
        if !(net.addr().is_private() || shared.contains(&net)) {
            return Err(format!(
                "{key} {net} must be private (10/8, 172.16/12, 192.168/16 or 100.64/10)"
            ));
        }
        Ok(net.trunc())
    }

    /// The upstream resolver, if configured; errors name the key.
    pub fn upstream(&self) -> Result<Option<SocketAddr>, String> {
        let s = self.dns_upstream.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<SocketAddr>()
            .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map(Some)
            .map_err(|_| {
                format!(
                    "providers.native.egress.dns_upstream {s:?} is not an address or address:port"
                )
            })
    }

    pub fn validate(&self) -> Result<(), String> {
        self.pool()?;
        self.upstream()?;
        if self.dns_port == 0 || self.dns_port == self.proxy_port {
            return Err(
                "providers.native.egress.dns_port must be set and differ from proxy_port".into(),
            );
        }
        if self.proxy_port == 0 {
            return Err("providers.native.egress.proxy_port must not be 0".into());
        }
        let t = &self.table;
        if t.is_empty()
            || t.len() > 64
            || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || t.as_bytes()[0].is_ascii_digit()
        {
            return Err(format!(
                "providers.native.egress.table {t:?} must be 1 to 64 letters, digits or \"_\", not starting with a digit"
            ));
        }
        if self.connect_timeout_ms == 0 {
            return Err("providers.native.egress.connect_timeout_ms must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_must_be_private_and_big_enough() {
        assert!(EgressConfig::default().validate().is_ok());
        for (subnet, why) in [
            ("8.8.0.0/16", "private"),
            ("10.0.0.0/30", "too small"),
            ("nonsense", "not an IPv4"),
            ("fd00::/64", "not an IPv4"),
        ] {
            let c = EgressConfig {
                subnet: subnet.into(),
                ..Default::default()
            };
            let err = c.validate().unwrap_err();
            assert!(err.contains(why) && err.contains("egress.subnet"), "{err}");
        }
        let c = EgressConfig {
            subnet: "100.80.0.0/16".into(),
            ..Default::default()
        };
        assert!(c.validate().is_ok());
        let up = |s: &str| {
            EgressConfig {
                dns_upstream: s.into(),
                ..Default::default()
            }
            .upstream()
        };
        assert_eq!(up("").unwrap(), None);
        assert_eq!(
            up("198.18.0.1").unwrap(),
            Some("198.18.0.1:53".parse().unwrap())
        );
        assert_eq!(
            up("198.18.0.1:5353").unwrap(),
            Some("198.18.0.1:5353".parse().unwrap())
        );
        assert!(up("dns.example").unwrap_err().contains("dns_upstream"));
    }
}
