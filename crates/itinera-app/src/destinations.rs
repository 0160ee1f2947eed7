//! Where the server may send requests (alert webhooks today; case follow-ups and triggers share
//! it). A destination set through the API names its host; the host's addresses must be public,
//! unless an admin allowed the network in the configuration (`[outbound] allow_networks`), and
//! when `[outbound] allow_hosts` is set, the host must be one of them. Checked when a rule is
//! saved and again, with a fresh DNS lookup, before every delivery, which then connects to the
//! checked address only (no second lookup to be rebound).

use crate::config::OutboundSettings;
use crate::error::{AppError, Result};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// A destination that passed the check: its URL and the address to connect to.
#[derive(Debug, Clone)]
pub struct Checked {
    pub url: url::Url,
    pub host: String,
    pub addr: SocketAddr,
}

/// Addresses no webhook reaches unless an admin allowed their network: loopback, private,
/// link-local (cloud metadata at 169.254.169.254 among them), shared, unspecified, multicast,
/// broadcast and documentation ranges, IPv4 and IPv6 alike.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let shared = IpNet::V4("100.64.0.0/10".parse().expect("net")).contains(&ip);
            let this_network = v4.octets()[0] == 0;
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || shared
                || this_network)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local())
            }
        },
    }
}

/// Checks a destination URL for a request the server is about to send (`field` names it in
/// errors): http(s), no credentials in it, an allowed host, and every address it resolves to
/// public or in an allowed network.
pub fn check(field: &str, url: &str, policy: &OutboundSettings) -> Result<Checked> {
    let refuse = |reason: String| AppError::invalid(field, reason);
    let parsed = url::Url::parse(url).map_err(|e| refuse(format!("`{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(refuse(format!(
            "only http and https destinations, not {}",
            parsed.scheme()
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refuse(
            "credentials in the URL are not allowed; sign with the secret".into(),
        ));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| refuse("the URL has no host".into()))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_ascii_lowercase();
    if !policy.allow_hosts.is_empty() && !policy.allow_hosts.iter().any(|h| host_matches(h, &host))
    {
        return Err(refuse(format!(
            "{host} is not among the allowed destinations ([outbound] allow_hosts)"
        )));
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| refuse(format!("cannot resolve {host}: {e}")))?
        .collect();
    let allowed_net = |ip: IpAddr| policy.networks().iter().any(|n| n.contains(&ip));
    let first = *addrs
        .first()
        .ok_or_else(|| refuse(format!("{host} has no address")))?;
    if let Some(bad) = addrs
        .iter()
        .find(|a| !is_public(a.ip()) && !allowed_net(a.ip()))
    {
        return Err(refuse(format!(
            "{host} resolves to {}, a loopback, private, link-local or otherwise non-public address; \
             an admin may allow its network ([outbound] allow_networks)",
            bad.ip()
        )));
    }
    Ok(Checked {
        url: parsed,
        host,
        addr: first,
    })
}

/// `hooks.example.com` matches itself; `*.example.com` matches its subdomains.
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(domain) => host.ends_with(&format!(".{domain}")),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str], nets: &[&str]) -> OutboundSettings {
        OutboundSettings {
            allow_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            allow_networks: nets.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn non_public_addresses_are_refused_unless_allowed() {
        let none = policy(&[], &[]);
        for url in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/",
            "http://192.168.0.10/",
            "http://172.16.5.5/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            let err = check("webhook.url", url, &none).unwrap_err().to_string();
            assert!(
                err.contains("webhook.url") && err.contains("non-public"),
                "{url}: {err}"
            );
        }
        let local = policy(&[], &["127.0.0.0/8"]);
        assert_eq!(
            check("w", "http://127.0.0.1:9/x", &local)
                .unwrap()
                .addr
                .port(),
            9
        );
        assert!(
            check("w", "http://10.0.0.1/", &local).is_err(),
            "only the allowed network"
        );
        assert!(
            check("w", "http://93.184.215.14/hook", &none).is_ok(),
            "a public address"
        );
    }

    #[test]
    fn schemes_credentials_and_host_lists() {
        let none = policy(&[], &[]);
        assert!(check("w", "file:///etc/passwd", &none).is_err());
        assert!(check("w", "ftp://93.184.215.14/", &none).is_err());
        assert!(check("w", "http://user:pw@93.184.215.14/", &none).is_err());
        let listed = policy(&["*.example.com", "93.184.215.14"], &[]);
        assert!(check("w", "https://93.184.215.14/h", &listed).is_ok());
        let err = check("w", "https://93.184.215.15/h", &listed)
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_hosts"), "{err}");
        assert!(host_matches("*.example.com", "hooks.example.com"));
        assert!(!host_matches("*.example.com", "example.com.evil.net"));
        assert!(!host_matches("*.example.com", "evilexample.com"));
    }
}
