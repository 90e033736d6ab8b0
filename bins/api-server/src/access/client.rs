//! The address a request comes from: the peer, unless the peer is one of
//! `server.trusted_proxies`; then the address those proxies report in `X-Forwarded-For`, read
//! from the right and skipping the trusted proxies themselves. Nobody else's forwarded headers
//! are believed: a client cannot choose the address its rate limit is counted under, nor pass
//! for this host.

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

    /// The client's address: see the module documentation. `None` without a peer address
    /// (a request made in a test without a connection).
    pub fn client_ip(&self, request: &HttpRequest) -> Option<IpAddr> {
        let peer = request.peer_addr()?.ip();
        if !self.trusts(peer) {
            return Some(peer);
        }
        // Each proxy appends the address it received the request from: the rightmost entry
        // not added by a trusted proxy is the client. An entry that does not parse ends the
        // walk (what lies left of it cannot be trusted either).
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let mut client = peer;
        for entry in forwarded.iter().rev() {
            match entry.parse::<IpAddr>() {
                Ok(address) => {
                    client = address;
                    if !self.trusts(address) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Some(client)
    }
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
        // A proxy that reports nothing: the proxy itself.
        assert_eq!(
            proxies.client_ip(&request("127.0.0.1", &[])),
            ip("127.0.0.1")
        );
        assert_eq!(
            proxies.client_ip(&request("127.0.0.1", &["garbage"])),
            ip("127.0.0.1")
        );

        assert!(TrustedProxies::parse(&["not-an-address".into()]).is_err());
        let nobody = TrustedProxies::default();
        assert_eq!(
            nobody.client_ip(&request("127.0.0.1", &["198.51.100.7"])),
            ip("127.0.0.1")
        );
    }
}
