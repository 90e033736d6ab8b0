//! The address a request comes from: the peer, unless the peer is one of
//! the trusted proxies (the api-server's `server.trusted_proxies`); then the address those proxies report in `X-Forwarded-For`, read
//! from the right and skipping the trusted proxies themselves. Nobody else's forwarded headers
//! are believed: a client cannot choose the address its rate limit is counted under, nor pass
//! for this host. A trusted proxy's header that cannot be read leaves the client unknown,
//! never the proxy's own (often loopback) address.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::ConfigError;

/// The proxies whose `X-Forwarded-For` is believed (addresses or CIDR blocks).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `server.trusted_proxies` (`"127.0.0.1"`, `"10.0.0.0/8"`, `"::1"`).
    pub fn parse(entries: &[String]) -> Result<Self, ConfigError> {
        entries
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError::new(
                            "server.trusted_proxies",
                            format!("{entry:?} is not an address or a CIDR block"),
                        )
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether the request comes from this host: its peer is (a proxy on) this host, and
    /// the client that peer reports too. A trusted proxy elsewhere reporting a loopback
    /// client names its own host, not this one.
    pub fn is_this_host(&self, peer: Option<IpAddr>, forwarded: &[&[u8]]) -> bool {
        let peer_local = peer.is_some_and(|peer| peer.to_canonical().is_loopback());
        peer_local
            && self
                .client_ip(peer, forwarded)
                .is_some_and(|client| client.is_loopback())
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(&address))
    }

    /// The client's address: see the module documentation. `peer`: the connection's other
    /// end; `forwarded`: the values of its `X-Forwarded-For` headers, in order. `None` when
    /// the client is unknown: no peer address (a request made in a test without a
    /// connection), or a trusted proxy's `X-Forwarded-For` that cannot be read.
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded: &[&[u8]]) -> Option<IpAddr> {
        let peer = peer?.to_canonical();
        if !self.trusts(peer) {
            return Some(peer);
        }
        // Split as bytes: what a client wrote left of the proxies' entries (not ASCII, say)
        // must not make the entries the proxies appended unreadable.
        let mut entries = Vec::new();
        for value in forwarded {
            entries.extend(value.split(|byte| *byte == b','));
        }
        if entries.is_empty() {
            // No proxy forwarded this request: it comes from the proxy's host itself.
            return Some(peer);
        }
        // Each proxy appends the address it received the request from: the rightmost entry
        // not added by a trusted proxy is the client; when every entry is a trusted proxy,
        // the first is. An entry that does not parse leaves the client unknown.
        let mut client = None;
        for entry in entries.iter().rev() {
            let address = forwarded_address(entry)?;
            client = Some(address);
            if !self.trusts(address) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, with a port after it as some proxies write it
/// (`203.0.113.9:4711`, `[2001:db8::1]:4711`).
fn forwarded_address(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry).ok()?.trim();
    let address = entry.parse::<IpAddr>().ok().or_else(|| {
        entry
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|socket| socket.ip())
    })?;
    Some(address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request's peer and `X-Forwarded-For` values, as [`TrustedProxies`] takes them.
    struct Seen(Option<IpAddr>, Vec<Vec<u8>>);

    fn request(peer: &str, forwarded: &[&str]) -> Seen {
        let values = forwarded.iter().map(|value| value.as_bytes().to_vec());
        Seen(Some(peer.parse().unwrap()), values.collect())
    }

    impl TrustedProxies {
        fn client_of(&self, seen: &Seen) -> Option<IpAddr> {
            let forwarded: Vec<&[u8]> = seen.1.iter().map(Vec::as_slice).collect();
            self.client_ip(seen.0, &forwarded)
        }

        fn is_this_host_for(&self, seen: &Seen) -> bool {
            let forwarded: Vec<&[u8]> = seen.1.iter().map(Vec::as_slice).collect();
            self.is_this_host(seen.0, &forwarded)
        }
    }

    /// `/metrics` is open to this host only: a trusted proxy on another host reporting a
    /// loopback client names its own host.
    #[test]
    fn only_a_loopback_client_through_a_loopback_peer_is_this_host() {
        let proxies = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        assert!(proxies.is_this_host_for(&request("127.0.0.1", &[])));
        assert!(proxies.is_this_host_for(&request("127.0.0.1", &["127.0.0.1"])));
        assert!(!proxies.is_this_host_for(&request("10.1.2.3", &["127.0.0.1"])));
        assert!(!proxies.is_this_host_for(&request("127.0.0.1", &["203.0.113.5"])));
        assert!(!TrustedProxies::default().is_this_host_for(&request("10.1.2.3", &[])));
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        let ip = |text: &str| Some(text.parse::<IpAddr>().unwrap());

        // A client talking directly cannot pick its address.
        assert_eq!(
            proxies.client_of(&request("203.0.113.9", &["127.0.0.1"])),
            ip("203.0.113.9")
        );
        // Through the local proxy: the address it reports.
        assert_eq!(
            proxies.client_of(&request("127.0.0.1", &["198.51.100.7"])),
            ip("198.51.100.7")
        );
        // A client's own forged entry sits left of what the proxies appended: ignored.
        assert_eq!(
            proxies.client_of(&request(
                "127.0.0.1",
                &["127.0.0.1, 198.51.100.7, 10.1.2.3"]
            )),
            ip("198.51.100.7")
        );
        assert_eq!(
            proxies.client_of(&request("127.0.0.1", &["1.1.1.1", "198.51.100.7"])),
            ip("198.51.100.7"),
            "several headers read as one list"
        );
        // Ports, as some proxies write them; IPv4 in IPv6 notation.
        assert_eq!(
            proxies.client_of(&request("127.0.0.1", &["198.51.100.7:4711"])),
            ip("198.51.100.7")
        );
        assert_eq!(
            proxies.client_of(&request("127.0.0.1", &["[2001:db8::1]:4711"])),
            ip("2001:db8::1")
        );
        assert_eq!(
            proxies.client_of(&request("127.0.0.1", &["::ffff:198.51.100.7"])),
            ip("198.51.100.7")
        );
        // A request from the proxy's own host, not forwarded: that host.
        assert_eq!(
            proxies.client_of(&request("127.0.0.1", &[])),
            ip("127.0.0.1")
        );
        // Forwarded through the trusted proxies only: the first of them.
        assert_eq!(
            proxies.client_of(&request("127.0.0.1", &["127.0.0.1"])),
            ip("127.0.0.1")
        );
        // What cannot be read leaves the client unknown, never the (loopback) proxy.
        assert_eq!(proxies.client_of(&request("127.0.0.1", &["garbage"])), None);
        assert_eq!(
            proxies.client_of(&request("127.0.0.1", &["unknown, 10.1.2.3"])),
            None
        );

        // Bytes a client wrote that are not text do not hide what the proxy appended.
        let forged = Seen(ip("127.0.0.1"), vec![b"\xff\xfe, 198.51.100.7".to_vec()]);
        assert_eq!(proxies.client_of(&forged), ip("198.51.100.7"));

        assert!(TrustedProxies::parse(&["not-an-address".into()]).is_err());
        let nobody = TrustedProxies::default();
        assert_eq!(
            nobody.client_of(&request("127.0.0.1", &["198.51.100.7"])),
            ip("127.0.0.1")
        );
    }
}
