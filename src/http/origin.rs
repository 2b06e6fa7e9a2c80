//! Which browser pages may use the gateway (PROTOCOL.md §5): the `Origin` allow-list behind
//! CORS, WebSocket upgrades and state-changing requests, the optional `Host` allow-list, and
//! the client's address behind trusted reverse proxies.

use std::net::IpAddr;

/// `scheme://host[:port]` lower-cased without a trailing `/`, when `origin` is one (http or
/// https; `null` and anything with a path are not).
pub fn normalize(origin: &str) -> Option<String> {
    let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let rest = o
        .strip_prefix("http://")
        .or_else(|| o.strip_prefix("https://"))?;
    let ok = !rest.is_empty()
        && rest.len() <= 255
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then_some(o)
}

/// The `host[:port]` part of a normalized origin.
fn authority(origin: &str) -> &str {
    origin.split_once("://").map_or(origin, |(_, a)| a)
}

#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    any: bool,
    allowed: Vec<String>,
    /// `http.allowed_hosts` is set: every Host that got this far is one of the site's names.
    hosts_listed: bool,
    /// The machine's own names (its hostname), trusted as a same origin without a list.
    own_names: Vec<String>,
}

/// Whether a page at the gateway's own origin reached as host `name` (port stripped) is
/// really the gateway's: an IP literal, a localhost name, or one of `own` — not a DNS name an
/// attacker controls and pointed at this address (DNS rebinding: Origin and Host then name
/// the same foreign host).
fn own_origin_name(name: &str, own: &[String]) -> bool {
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || own.iter().any(|o| o.eq_ignore_ascii_case(name))
}

/// `host[:port]` → host.
fn host_name(h: &str) -> &str {
    match h.rsplit_once(':') {
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !n.ends_with(':') => n,
        _ => h,
    }
}

impl OriginPolicy {
    /// From `http.allowed_origins` (validated: origins or `*`); with no `allowed_hosts`, the
    /// gateway's own origin counts only under an IP or a localhost name (see
    /// [`with_hosts`](Self::with_hosts)).
    pub fn new(list: &[String]) -> OriginPolicy {
        OriginPolicy {
            any: list.iter().any(|o| o == "*"),
            allowed: list.iter().filter_map(|o| normalize(o)).collect(),
            hosts_listed: false,
            own_names: Vec::new(),
        }
    }

    /// `hosts_listed`: `http.allowed_hosts` is set (any Host that passed it is the site's);
    /// `own_names`: the machine's names, trusted for its own origin without a list.
    pub fn with_hosts(mut self, hosts_listed: bool, own_names: Vec<String>) -> OriginPolicy {
        self.hosts_listed = hosts_listed;
        self.own_names = own_names;
        self
    }

    /// Whether a page at `origin` may use the gateway reached as `host`: listed, `*`, or
    /// the gateway's own origin (same host and port).
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        if self.any {
            return true;
        }
        let Some(o) = normalize(origin) else {
            return false;
        };
        if host.is_some_and(|h| {
            h.eq_ignore_ascii_case(authority(&o))
                && (self.hosts_listed || own_origin_name(host_name(h), &self.own_names))
        }) {
            return true;
        }
        self.allowed.contains(&o)
    }

    /// Whether a request is refused for its origin: it carries an `Origin` (a browser sent
    /// it) that is not allowed. Requests without one (scripts, device tools) pass.
    pub fn refuses(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        origin.is_some_and(|o| !self.allows(o, host))
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if any.
    pub fn cors(&self, origin: Option<&str>, host: Option<&str>) -> Option<String> {
        let o = origin?;
        if self.any {
            return Some("*".into());
        }
        self.allows(o, host).then(|| o.to_string())
    }
}

/// Whether `host` (the `Host` header, port ignored) is one the gateway answers to; an empty
/// list allows any.
pub fn host_allowed(allowed: &[String], host: Option<&str>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(h) = host else {
        return false;
    };
    let name = match h.rsplit_once(':') {
        // `[::1]:80` and `name:80`; a bare IPv6 address is always bracketed in Host.
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => h,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    allowed.iter().any(|a| {
        a.trim_start_matches('[')
            .trim_end_matches(']')
            .eq_ignore_ascii_case(name)
    })
}

/// The client's address: the peer's, or — when the peer is a trusted proxy — the last
/// address in `X-Forwarded-For` that is not a trusted proxy (entries further left were
/// written by the client itself and prove nothing).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let Some(list) = forwarded_for else {
        return peer;
    };
    for item in list.rsplit(',') {
        match item.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            // Unparseable: stop believing the chain here.
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            normalize("HTTPS://Scada.Example.com/").as_deref(),
            Some("https://scada.example.com")
        );
        assert_eq!(normalize("null"), None);
        assert_eq!(normalize("https://a.b/path"), None);
        assert_eq!(normalize("ftp://a.b"), None);
        let p = OriginPolicy::new(&["https://scada.example.com".into()])
            .with_hosts(false, vec!["gw".into()]);
        assert!(p.allows("https://scada.example.com", Some("gw:6005")));
        assert!(p.allows("http://gw:6005", Some("gw:6005")), "same origin");
        assert!(p.allows("http://127.0.0.1:6005", Some("127.0.0.1:6005")));
        assert!(p.allows("http://[::1]:6005", Some("[::1]:6005")));
        assert!(p.allows("http://localhost:6005", Some("localhost:6005")));
        // DNS rebinding: a foreign name pointed at this address is not the gateway's origin…
        assert!(!p.allows("http://rebind.example:6005", Some("rebind.example:6005")));
        // …unless the site listed its names (http.allowed_hosts), which Host then passed.
        let listed = OriginPolicy::new(&[]).with_hosts(true, Vec::new());
        assert!(listed.allows("http://gw.site:6005", Some("gw.site:6005")));
        assert!(!p.allows("http://evil.example", Some("gw:6005")));
        assert!(!p.allows("null", Some("gw:6005")));
        assert!(
            !p.refuses(None, Some("gw:6005")),
            "no Origin: not a browser page"
        );
        assert!(p.refuses(Some("http://evil.example"), Some("gw:6005")));
        assert_eq!(
            p.cors(Some("https://scada.example.com"), None).as_deref(),
            Some("https://scada.example.com")
        );
        assert_eq!(p.cors(Some("http://evil.example"), None), None);
        let any = OriginPolicy::new(&["*".into()]);
        assert!(any.allows("http://anything", None));
        assert_eq!(any.cors(Some("http://x"), None).as_deref(), Some("*"));
        assert_eq!(
            OriginPolicy::new(&[]).cors(Some("http://x"), Some("gw")),
            None
        );
    }

    #[test]
    fn hosts() {
        assert!(host_allowed(&[], None));
        let l = [
            "gw.site".to_string(),
            "10.0.0.5".to_string(),
            "::1".to_string(),
        ];
        assert!(host_allowed(&l, Some("gw.site:6005")));
        assert!(host_allowed(&l, Some("GW.SITE")));
        assert!(host_allowed(&l, Some("10.0.0.5")));
        assert!(host_allowed(&l, Some("[::1]:6005")));
        assert!(!host_allowed(&l, Some("evil.example")));
        assert!(!host_allowed(&l, None));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_ip(other, Some("192.0.2.7"), &[proxy]),
            other,
            "not a proxy"
        );
        assert_eq!(client_ip(proxy, Some("192.0.2.7"), &[proxy]), client);
        assert_eq!(
            client_ip(proxy, Some("1.2.3.4, 192.0.2.7, 10.0.0.1"), &[proxy]),
            client,
            "the rightmost untrusted entry"
        );
        assert_eq!(client_ip(proxy, Some("junk"), &[proxy]), proxy);
        assert_eq!(client_ip(proxy, None, &[proxy]), proxy);
    }
}
