//! The address a request comes from: the peer, unless the peer is one of
//! `server.trusted_proxies`; then the address those proxies report in `X-Forwarded-For`, read
//! from the right and skipping the trusted proxies themselves. Nobody else's forwarded headers
//! are believed: a client cannot choose the address its rate limit is counted under, nor pass
//! for this host. A trusted proxy's header that cannot be read leaves the client unknown,
//! never the proxy's own (often loopback) address.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed (addresses or CIDR blocks).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `server.trusted_proxies` (`"127.0.0.1"`, `"10.0.0.0/8"`, `"::1"`).
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        entries
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "server.trusted_proxies: {entry:?} is not an address or a CIDR block"
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()
            .map(Self)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(&address))
    }

    /// The client's address: see the module documentation. `None` when it is unknown: no
    /// peer address (a request made in a test without a connection), or a trusted proxy's
    /// `X-Forwarded-For` that cannot be read.
    pub fn client_ip(&self, request: &HttpRequest) -> Option<IpAddr> {
        let peer = request.peer_addr()?.ip().to_canonical();
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut entries = Vec::new();
        for value in request.headers().get_all("x-forwarded-for") {
            entries.extend(value.to_str().ok()?.split(',').map(str::trim));
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
fn forwarded_address(entry: &str) -> Option<IpAddr> {
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
    use actix_web::test::TestRequest;

    fn request(peer: &str, forwarded: &[&str]) -> HttpRequest {
        let mut request = TestRequest::default().peer_addr(format!("{peer}:4000").parse().unwrap());
        for value in forwarded {
            request = request.append_header(("x-forwarded-for", *value));
        }
        request.to_http_request()
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        let ip = |text: &str| Some(text.parse::<IpAddr>().unwrap());

        // A client talking directly cannot pick its address.
        assert_eq!(
            proxies.client_ip(&request("203.0.113.9", &["127.0.0.1"])),
            ip("203.0.113.9")
        );
        // Through the local proxy: the address it reports.
        assert_eq!(
            proxies.client_ip(&request("127.0.0.1", &["198.51.100.7"])),
            ip("198.51.100.7")
        );
        // A client's own forged entry sits left of what the proxies appended: ignored.
        assert_eq!(
            proxies.client_ip(&request(
                "127.0.0.1",
                &["127.0.0.1, 198.51.100.7, 10.1.2.3"]
            )),
            ip("198.51.100.7")
        );
        assert_eq!(
            proxies.client_ip(&request("127.0.0.1", &["1.1.1.1", "198.51.100.7"])),
            ip("198.51.100.7"),
            "several headers read as one list"
        );
        // Ports, as some proxies write them; IPv4 in IPv6 notation.
        assert_eq!(
            proxies.client_ip(&request("127.0.0.1", &["198.51.100.7:4711"])),
            ip("198.51.100.7")
        );
        assert_eq!(
            proxies.client_ip(&request("127.0.0.1", &["[2001:db8::1]:4711"])),
            ip("2001:db8::1")
        );
        assert_eq!(
            proxies.client_ip(&request("127.0.0.1", &["::ffff:198.51.100.7"])),
            ip("198.51.100.7")
        );
        // A request from the proxy's own host, not forwarded: that host.
        assert_eq!(
            proxies.client_ip(&request("127.0.0.1", &[])),
            ip("127.0.0.1")
        );
        // Forwarded through the trusted proxies only: the first of them.
        assert_eq!(
            proxies.client_ip(&request("127.0.0.1", &["127.0.0.1"])),
            ip("127.0.0.1")
        );
        // What cannot be read leaves the client unknown, never the (loopback) proxy.
        assert_eq!(proxies.client_ip(&request("127.0.0.1", &["garbage"])), None);
        assert_eq!(
            proxies.client_ip(&request("127.0.0.1", &["unknown, 10.1.2.3"])),
            None
        );

        assert!(TrustedProxies::parse(&["not-an-address".into()]).is_err());
        let nobody = TrustedProxies::default();
        assert_eq!(
            nobody.client_ip(&request("127.0.0.1", &["198.51.100.7"])),
            ip("127.0.0.1")
        );
    }
}
