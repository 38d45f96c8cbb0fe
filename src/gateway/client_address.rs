//! Who the client is. The gateway is the edge unless `gateway.trusted_proxies` names the load
//! balancers in front of it (an Ingress controller, say): only they may tell, through
//! `X-Forwarded-For` and `X-Forwarded-Proto`, whom they forward for. Anyone else could forge
//! those headers to dodge the rate limit, so from anyone else they are ignored.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// The networks whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// `gateway.trusted_proxies`: a list (or a comma-separated string) of addresses and networks.
impl<'de> serde::Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = crate::platform::settings::list(deserializer)?;
        Self::from_entries(&entries).map_err(serde::de::Error::custom)
    }
}

/// The client of one request, resolved once by the request context middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddress {
    /// The peer, or the nearest address a trusted proxy forwarded for.
    pub ip: IpAddr,
    /// The `X-Forwarded-For` chain to pass on: what trusted proxies said, then the peer.
    pub forwarded_for: String,
    /// The scheme the client used: the connection's, or what a trusted proxy said.
    pub proto: String,
}

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR networks.
    pub fn parse(list: &str) -> Result<Self, String> {
        let entries: Vec<&str> = list.split(',').map(str::trim).collect();
        Self::from_entries(&entries)
    }

    /// Parses addresses and CIDR networks; blank entries are skipped.
    pub fn from_entries(entries: &[impl AsRef<str>]) -> Result<Self, String> {
        entries
            .iter()
            .map(AsRef::as_ref)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{entry}` is neither an address nor a CIDR network"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Walks `X-Forwarded-For` from the right for as long as each hop is a trusted proxy; the
    /// first untrusted hop is the client. Unparsable entries end the walk.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap, scheme: &str) -> ClientAddress {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return ClientAddress {
                ip: peer,
                forwarded_for: peer.to_string(),
                proto: scheme.to_owned(),
            };
        }
        let said: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|hop| !hop.is_empty())
            .collect();
        let mut hops: Vec<IpAddr> = Vec::with_capacity(said.len() + 1);
        // Only the trusted tail of the chain is kept: anything left of an unparsable entry
        // came from someone this gateway cannot vouch for.
        for hop in said.iter().rev() {
            match parse_hop(hop) {
                Some(ip) => hops.push(ip),
                None => break,
            }
        }
        hops.reverse();
        let mut ip = peer;
        for hop in hops.iter().rev() {
            if !self.trusts(ip) {
                break;
            }
            ip = *hop;
        }
        hops.push(peer);
        let proto = headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(|value| value.trim().to_ascii_lowercase())
            .filter(|value| value == "http" || value == "https")
            .unwrap_or_else(|| scheme.to_owned());
        ClientAddress {
            ip,
            forwarded_for: hops
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            proto,
        }
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_it_says() {
        let forged = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        let client = TrustedProxies::default().resolve(ip("198.51.100.7"), &forged, "http");
        assert_eq!(
            client,
            ClientAddress {
                ip: ip("198.51.100.7"),
                forwarded_for: "198.51.100.7".into(),
                proto: "http".into(),
            }
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_the_chain_is_passed_on() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.0.2.1").unwrap();
        let said = headers(&[
            ("x-forwarded-for", "203.0.113.9, 10.1.2.3"),
            ("x-forwarded-proto", "HTTPS"),
        ]);
        let client = trusted.resolve(ip("192.0.2.1"), &said, "http");
        assert_eq!(client.ip, ip("203.0.113.9"));
        assert_eq!(client.forwarded_for, "203.0.113.9, 10.1.2.3, 192.0.2.1");
        assert_eq!(client.proto, "https");
    }

    #[test]
    fn a_client_cannot_hide_behind_a_forged_left_part_of_the_chain() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // The client (198.51.100.7) sent "1.1.1.1" itself; the proxy appended what it saw.
        let said = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7")]);
        let client = trusted.resolve(ip("10.0.0.5"), &said, "http");
        assert_eq!(client.ip, ip("198.51.100.7"));
        // Garbage ends the walk: the client is the last hop a trusted proxy vouched for.
        let said = headers(&[("x-forwarded-for", "198.51.100.7, not-an-ip, 10.0.0.9")]);
        let client = trusted.resolve(ip("10.0.0.5"), &said, "http");
        assert_eq!(client.ip, ip("10.0.0.9"));
        assert_eq!(client.forwarded_for, "10.0.0.9, 10.0.0.5");
    }

    #[test]
    fn ports_and_mapped_addresses_are_understood() {
        let trusted = TrustedProxies::parse("127.0.0.1, ::1").unwrap();
        let said = headers(&[("x-forwarded-for", "[2001:db8::1]:4711")]);
        let client = trusted.resolve(ip("::ffff:127.0.0.1"), &said, "http");
        assert_eq!(client.ip, ip("2001:db8::1"));
        let said = headers(&[("x-forwarded-for", "203.0.113.9:80")]);
        assert_eq!(
            trusted.resolve(ip("::1"), &said, "http").ip,
            ip("203.0.113.9")
        );
    }

    #[test]
    fn bad_entries_are_refused_with_their_text() {
        let err = TrustedProxies::parse("10.0.0.0/8, example.com").unwrap_err();
        assert!(err.contains("example.com"), "{err}");
        assert!(TrustedProxies::parse("").unwrap().0.is_empty());
    }
}
