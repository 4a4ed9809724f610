//! The egress policy of a sandbox: what it may reach on the network.
//!
//! A policy comes in at spawn as `{"mode", "allow", "deny"}`; entries are
//! CIDRs or addresses (`10.0.0.0/8`, `192.0.2.7`, `[2001:db8::1]`), domain
//! names (`pypi.org`) or wildcards (`*.pypi.org`: every name below
//! `pypi.org`, not `pypi.org` itself), each optionally with a port
//! (`pypi.org:443`, `10.0.0.0/8:5432`). [`NetworkPolicy::compile`] checks
//! a policy and gives the [`CompiledPolicy`] the providers enforce. A deny
//! entry always wins over an allow entry.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Most entries in each of `allow` and `deny`.
pub const MAX_ENTRIES: usize = 256;
/// Longest entry, in bytes (a full domain name plus a port).
const MAX_ENTRY_LEN: usize = 260;

/// How a sandbox reaches the network.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Loopback only (the default).
    #[default]
    None,
    /// Only what `allow` names, minus what `deny` names.
    Allow,
    /// The host's network, unfiltered; only where the server's config
    /// allows it.
    Host,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Allow => "allow",
            NetworkMode::Host => "host",
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The egress policy as sent and stored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    #[serde(default)]
    pub mode: NetworkMode,
    /// With mode `allow`: CIDRs, addresses, domain names and `*.` wildcards,
    /// each optionally with `:port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["pypi.org:443", "*.pythonhosted.org:443", "10.20.0.0/16"]))]
    pub allow: Vec<String>,
    /// Entries of the same forms that are refused even when `allow` names
    /// them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// A policy that does not parse; the message names the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NetworkPolicyError(pub String);

/// What an entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Addresses (a single address is a /32 or /128).
    Net(IpNet),
    /// A name, or with `wildcard` every name below it.
    Domain { name: String, wildcard: bool },
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub dest: Destination,
    /// `None`: every port.
    pub port: Option<u16>,
}

impl Rule {
    fn port_matches(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }

    /// Whether this rule names `ip` (on `port`).
    pub fn matches_ip(&self, ip: IpAddr, port: u16) -> bool {
        match &self.dest {
            Destination::Net(net) => net.contains(&ip) && self.port_matches(port),
            Destination::Domain { .. } => false,
        }
    }

    /// Whether this rule names `name` (normalised by [`normalise_name`]),
    /// on `port`, or on any port when `port` is `None`.
    pub fn matches_name(&self, name: &str, port: Option<u16>) -> bool {
        let Destination::Domain {
            name: pattern,
            wildcard,
        } = &self.dest
        else {
            return false;
        };
        let name_ok = if *wildcard {
            name.len() > pattern.len() + 1
                && name.ends_with(pattern.as_str())
                && name.as_bytes()[name.len() - pattern.len() - 1] == b'.'
        } else {
            name == pattern
        };
        name_ok && port.is_none_or(|p| self.port_matches(p))
    }

    pub fn is_domain(&self) -> bool {
        matches!(self.dest, Destination::Domain { .. })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.dest {
            Destination::Net(n) => {
                let single = n.prefix_len() == n.max_prefix_len();
                match (n, single, self.port) {
                    (IpNet::V6(_), true, Some(_)) => format!("[{}]", n.addr()),
                    (IpNet::V6(_), false, Some(_)) => format!("[{n}]"),
                    (_, true, _) => n.addr().to_string(),
                    _ => n.to_string(),
                }
            }
            Destination::Domain { name, wildcard } => {
                format!("{}{name}", if *wildcard { "*." } else { "" })
            }
        };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => f.write_str(&host),
        }
    }
}

/// A checked policy, ready to enforce.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompiledPolicy {
    pub mode: NetworkMode,
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
}

impl CompiledPolicy {
    /// A connection to `ip:port` whose name is not known (no SNI, no
    /// `Host`): allowed when an address entry names it and none denies it.
    pub fn allows_ip(&self, ip: IpAddr, port: u16) -> bool {
        self.mode == NetworkMode::Allow
            && self.allow.iter().any(|r| r.matches_ip(ip, port))
            && !self.deny.iter().any(|r| r.matches_ip(ip, port))
    }

    /// A connection to `name` (from SNI or `Host`) at `ip:port`: allowed
    /// when an entry names the name (or the address) and no deny entry
    /// names either.
    pub fn allows_name(&self, name: &str, ip: IpAddr, port: u16) -> bool {
        let name = normalise_name(name);
        self.mode == NetworkMode::Allow
            && (self.allow.iter().any(|r| r.matches_name(&name, Some(port)))
                || self.allow.iter().any(|r| r.matches_ip(ip, port)))
            && !self
                .deny
                .iter()
                .any(|r| r.matches_name(&name, Some(port)) || r.matches_ip(ip, port))
    }

    /// Whether the resolver may answer for `name`: some allow entry names
    /// it (on any port) and no port-less deny entry does.
    pub fn resolves(&self, name: &str) -> bool {
        let name = normalise_name(name);
        self.mode == NetworkMode::Allow
            && self.allow.iter().any(|r| r.matches_name(&name, None))
            && !self
                .deny
                .iter()
                .any(|r| r.port.is_none() && r.matches_name(&name, None))
    }

    /// Whether any entry is a domain (the resolver and proxy have work).
    pub fn has_domains(&self) -> bool {
        self.allow.iter().any(Rule::is_domain)
    }
}

/// Lowercase, without a final dot.
pub fn normalise_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl NetworkPolicy {
    /// The default: no network.
    pub fn none() -> Self {
        NetworkPolicy::default()
    }

    /// Checks every entry; errors name the list, the index and the entry.
    pub fn compile(&self) -> Result<CompiledPolicy, NetworkPolicyError> {
        if self.mode != NetworkMode::Allow && !(self.allow.is_empty() && self.deny.is_empty()) {
            return Err(NetworkPolicyError(format!(
                "network.allow and network.deny are only used with mode \"allow\" (mode is {:?})",
                self.mode.as_str()
            )));
        }
        let list = |key: &str, entries: &[String]| -> Result<Vec<Rule>, NetworkPolicyError> {
            if entries.len() > MAX_ENTRIES {
                return Err(NetworkPolicyError(format!(
                    "network.{key} has {} entries; at most {MAX_ENTRIES} are allowed",
                    entries.len()
                )));
            }
            entries
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    parse_entry(e).map_err(|why| {
                        let shown: String = e.chars().take(80).collect();
                        NetworkPolicyError(format!("network.{key}[{i}] {shown:?}: {why}"))
                    })
                })
                .collect()
        };
        Ok(CompiledPolicy {
            mode: self.mode,
            allow: list("allow", &self.allow)?,
            deny: list("deny", &self.deny)?,
        })
    }
}

impl FromStr for Rule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_entry(s)
    }
}

/// Parses one entry: `host`, `host:port`, `[v6]`, `[v6]:port`, where host
/// is a CIDR, an address, a domain name or `*.` and a domain name.
fn parse_entry(entry: &str) -> Result<Rule, String> {
    let s = entry.trim();
    if s.is_empty() {
        return Err("empty entry".into());
    }
    if s.len() > MAX_ENTRY_LEN {
        return Err(format!("longer than {MAX_ENTRY_LEN} bytes"));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| "a \"[\" without \"]\"".to_string())?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| "expected \":port\" after \"]\"".to_string())?,
            ),
        };
        if !inner.contains(':') {
            return Err("brackets are only for IPv6 addresses".into());
        }
        (inner, port)
    } else if s.matches(':').count() > 1 {
        // A bare IPv6 address or network: no port without brackets.
        (s, None)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("invalid port {p:?} (1 to 65535)")),
            Ok(n) => Ok(n),
        })
        .transpose()?;
    let dest = parse_host(host)?;
    Ok(Rule { dest, port })
}

fn parse_host(host: &str) -> Result<Destination, String> {
    if host.is_empty() {
        return Err("no host before the port".into());
    }
    if host.contains('/') {
        let net = IpNet::from_str(host).map_err(|_| "invalid CIDR".to_string())?;
        return Ok(Destination::Net(net.trunc()));
    }
    if let Ok(ip) = IpAddr::from_str(host) {
        return Ok(Destination::Net(IpNet::from(ip)));
    }
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    if name.contains('*') {
        return Err("a wildcard is only allowed as a leading \"*.\"".into());
    }
    let name = normalise_name(name);
    valid_domain(&name)?;
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err("not an IP address, and a name cannot be all digits".into());
    }
    Ok(Destination::Domain { name, wildcard })
}

fn valid_domain(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("a domain name has 1 to 253 characters".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "invalid domain label {label:?} (letters, digits, \"-\", \"_\"; 1 to 63)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> CompiledPolicy {
        NetworkPolicy {
            mode: NetworkMode::Allow,
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        }
        .compile()
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_form_and_prints_it_back() {
        for (input, shown) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("192.0.2.7", "192.0.2.7"),
            ("192.0.2.7:443", "192.0.2.7:443"),
            ("10.0.0.0/8:5432", "10.0.0.0/8:5432"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("[2001:db8::1]:443", "[2001:db8::1]:443"),
            ("[2001:db8::/32]:80", "[2001:db8::/32]:80"),
            ("PyPI.org.", "pypi.org"),
            ("pypi.org:443", "pypi.org:443"),
            ("*.pythonhosted.org", "*.pythonhosted.org"),
            ("*.a-b.example:8080", "*.a-b.example:8080"),
            ("_svc.example", "_svc.example"),
        ] {
            let rule: Rule = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(rule.to_string(), shown, "{input}");
        }
    }

    #[test]
    fn refuses_malformed_entries_naming_them() {
        for bad in [
            "",
            " ",
            "*",
            "*.",
            "a.*.b",
            "foo*.com",
            "10.0.0.0/33",
            "pypi.org:0",
            "pypi.org:65536",
            "pypi.org:http",
            ":443",
            "[10.0.0.1]:80",
            "[2001:db8::1",
            "[2001:db8::1]443",
            "-bad.example",
            "bad-.example",
            "a..b",
            "exa mple.com",
            "1.2.3",
            "ünicode.example",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad:?} should be refused");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(long.parse::<Rule>().is_err());
        let err = NetworkPolicy {
            mode: NetworkMode::Allow,
            allow: vec!["ok.example".into(), "bad*.example".into()],
            deny: vec![],
        }
        .compile()
        .unwrap_err();
        assert!(
            err.0.starts_with("network.allow[1] \"bad*.example\""),
            "{err}"
        );
    }

    #[test]
    fn lists_only_go_with_allow_and_are_bounded() {
        for mode in [NetworkMode::None, NetworkMode::Host] {
            let p = NetworkPolicy {
                mode,
                allow: vec!["10.0.0.0/8".into()],
                deny: vec![],
            };
            assert!(p.compile().unwrap_err().0.contains("only used with mode"));
            assert!(
                NetworkPolicy {
                    mode,
                    ..Default::default()
                }
                .compile()
                .is_ok()
            );
        }
        let many = NetworkPolicy {
            mode: NetworkMode::Allow,
            allow: (0..=MAX_ENTRIES)
                .map(|i| format!("10.0.0.{}", i % 250))
                .collect(),
            deny: vec![],
        };
        assert!(many.compile().unwrap_err().0.contains("at most 256"));
    }

    #[test]
    fn json_form_refuses_unknown_keys_and_defaults_to_none() {
        let p: NetworkPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p.mode, NetworkMode::None);
        assert!(serde_json::from_str::<NetworkPolicy>(r#"{"mode":"allow","alow":[]}"#).is_err());
        assert!(serde_json::from_str::<NetworkPolicy>(r#"{"mode":"open"}"#).is_err());
        let p: NetworkPolicy =
            serde_json::from_str(r#"{"mode":"allow","allow":["pypi.org"]}"#).unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"mode":"allow","allow":["pypi.org"]})
        );
    }

    #[test]
    fn addresses_are_allowed_by_cidr_and_port_and_deny_wins() {
        let p = policy(&["10.0.0.0/8", "192.0.2.7:443"], &["10.9.0.0/16"]);
        assert!(p.allows_ip(ip("10.1.2.3"), 22));
        assert!(!p.allows_ip(ip("10.9.0.1"), 22));
        assert!(p.allows_ip(ip("192.0.2.7"), 443));
        assert!(!p.allows_ip(ip("192.0.2.7"), 80));
        assert!(!p.allows_ip(ip("192.0.2.8"), 443));
        assert!(!p.allows_ip(ip("::1"), 443));
        // Mode none allows nothing whatever the lists say.
        let none = CompiledPolicy {
            mode: NetworkMode::None,
            ..p.clone()
        };
        assert!(!none.allows_ip(ip("10.1.2.3"), 22));
    }

    #[test]
    fn names_match_exactly_or_below_a_wildcard() {
        let p = policy(
            &["pypi.org:443", "*.pythonhosted.org"],
            &["evil.pythonhosted.org", "10.66.0.0/16"],
        );
        let any = ip("203.0.113.1");
        assert!(p.allows_name("pypi.org", any, 443));
        assert!(p.allows_name("PYPI.ORG.", any, 443));
        assert!(!p.allows_name("pypi.org", any, 80));
        assert!(!p.allows_name("www.pypi.org", any, 443));
        assert!(!p.allows_name("xpypi.org", any, 443));
        assert!(p.allows_name("files.pythonhosted.org", any, 80));
        assert!(p.allows_name("a.b.pythonhosted.org", any, 80));
        assert!(!p.allows_name("pythonhosted.org", any, 80));
        assert!(!p.allows_name("xpythonhosted.org", any, 80));
        assert!(!p.allows_name("evil.pythonhosted.org", any, 80));
        // A denied address stays denied under an allowed name.
        assert!(!p.allows_name("files.pythonhosted.org", ip("10.66.1.1"), 443));
        // No name: a domain entry alone lets no address through.
        assert!(!p.allows_ip(any, 443));
        assert!(p.resolves("pypi.org") && p.resolves("x.pythonhosted.org"));
        assert!(!p.resolves("evil.pythonhosted.org") && !p.resolves("example.com"));
        assert!(p.has_domains());
    }
}
