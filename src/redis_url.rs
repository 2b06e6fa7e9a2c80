//! Where the site's Redis is, as configured: one server (`redis://`, `rediss://`, `unix://`,
//! handed to the client library as written) or a master found through Redis Sentinel:
//!
//! ```text
//! redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]…]/MASTER_NAME[/DB][?sentinel_password=P]
//! ```
//!
//! The credentials and the database are the master's (as in `redis://`); the sentinels are
//! asked without a password unless `sentinel_password` is given. A port left out is
//! Sentinel's default, 26379. Pure: parsing and building the URLs the shell connects to.

use crate::error::ConfigError;

pub const SENTINEL_SCHEME: &str = "redis+sentinel://";
/// Sentinel's default port.
pub const SENTINEL_PORT: u16 = 26379;
/// Sentinels one URL may name (a site runs three or five).
pub const MAX_SENTINELS: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server: the URL as configured.
    Direct(String),
    Sentinel(Sentinels),
}

/// A master known to a set of sentinels by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentinels {
    pub hosts: Vec<(String, u16)>,
    pub master_name: String,
    /// `USER:PASSWORD@` as written (percent-encoding kept), or empty.
    userinfo: String,
    db: u32,
    /// As written (percent-encoding kept).
    sentinel_password: Option<String>,
}

impl RedisTarget {
    pub fn parse(url: &str) -> Result<RedisTarget, ConfigError> {
        let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) else {
            return Ok(RedisTarget::Direct(url.to_string()));
        };
        Sentinels::parse(rest).map(RedisTarget::Sentinel).map_err(|why| {
            ConfigError(format!(
                "redis_url: {why} (expected {SENTINEL_SCHEME}[[user]:password@]host[:port][,host[:port]…]/master_name[/db])"
            ))
        })
    }
}

fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `host:port` as written in a URL (an IPv6 host in brackets), for URLs, logs and health.
pub fn host_port(host: &str, port: u16) -> String {
    format!("{}:{port}", url_host(host))
}

impl Sentinels {
    fn parse(rest: &str) -> Result<Sentinels, String> {
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let mut sentinel_password = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sentinel_password", v)) if !v.is_empty() => {
                    sentinel_password = Some(v.to_string())
                }
                _ => return Err(format!("unknown query parameter '{pair}'")),
            }
        }
        let (authority, path) = rest.split_once('/').ok_or("no master name")?;
        // A password may contain '@': the userinfo ends at the last one.
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (format!("{}@", &authority[..at]), &authority[at + 1..]),
            None => (String::new(), authority),
        };
        let hosts = hosts
            .split(',')
            .map(parse_host)
            .collect::<Result<Vec<_>, _>>()?;
        if hosts.len() > MAX_SENTINELS {
            return Err(format!("more than {MAX_SENTINELS} sentinels"));
        }
        let mut parts = path.split('/');
        let master_name = parts.next().unwrap_or("");
        if master_name.is_empty()
            || master_name.len() > 64
            || !master_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(format!(
                "master name '{master_name}' is not 1-64 of A-Za-z0-9._-"
            ));
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(d) => d
                .parse()
                .map_err(|_| format!("database '{d}' is not a number"))?,
        };
        if parts.next().is_some() {
            return Err("too many path segments".into());
        }
        Ok(Sentinels {
            hosts,
            master_name: master_name.to_string(),
            userinfo,
            db,
            sentinel_password,
        })
    }

    /// The `redis://` URL of the master at `host:port`, with the configured credentials and db.
    pub fn master_url(&self, host: &str, port: u16) -> String {
        format!(
            "redis://{}{}:{port}/{}",
            self.userinfo,
            url_host(host),
            self.db
        )
    }

    /// The `redis://` URL of the `i`th sentinel.
    pub fn sentinel_url(&self, i: usize) -> String {
        let (host, port) = &self.hosts[i];
        let auth = self
            .sentinel_password
            .as_deref()
            .map_or(String::new(), |p| format!(":{p}@"));
        format!("redis://{auth}{}:{port}", url_host(host))
    }

    /// `host:port,…/name` for logs and health (never the credentials).
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self.hosts.iter().map(|(h, p)| host_port(h, *p)).collect();
        format!(
            "master '{}' of sentinels {}",
            self.master_name,
            hosts.join(",")
        )
    }
}

fn parse_host(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("sentinel address '{s}' is not host[:port]");
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        // Brackets hold an IPv6 address and nothing else.
        h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty()
        || host.len() > 253
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
    {
        return Err(bad());
    }
    let port = match port {
        None => SENTINEL_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(bad)?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinels(url: &str) -> Sentinels {
        match RedisTarget::parse(url).unwrap() {
            RedisTarget::Sentinel(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_urls_are_passed_on_as_written() {
        assert_eq!(
            RedisTarget::parse("redis://:pw@10.0.0.5:6379/2").unwrap(),
            RedisTarget::Direct("redis://:pw@10.0.0.5:6379/2".into())
        );
    }

    #[test]
    fn sentinel_urls_name_hosts_master_credentials_and_db() {
        let s = sentinels("redis+sentinel://gw:p%40ss@10.0.0.1,10.0.0.2:26380,[::1]:5000/site-a/3");
        assert_eq!(
            s.hosts,
            vec![
                ("10.0.0.1".to_string(), 26379),
                ("10.0.0.2".to_string(), 26380),
                ("::1".to_string(), 5000)
            ]
        );
        assert_eq!(s.master_name, "site-a");
        assert_eq!(
            s.master_url("10.0.0.9", 6380),
            "redis://gw:p%40ss@10.0.0.9:6380/3"
        );
        assert_eq!(
            s.master_url("fe80::1", 6379),
            "redis://gw:p%40ss@[fe80::1]:6379/3"
        );
        assert_eq!(
            s.sentinel_url(2),
            "redis://[::1]:5000",
            "sentinels get no master password"
        );
        assert_eq!(
            s.describe(),
            "master 'site-a' of sentinels 10.0.0.1:26379,10.0.0.2:26380,[::1]:5000"
        );
        let s = sentinels("redis+sentinel://h:1/m?sentinel_password=sp");
        assert_eq!(s.master_url("h", 2), "redis://h:2/0");
        assert_eq!(s.sentinel_url(0), "redis://:sp@h:1");
    }

    #[test]
    fn bad_sentinel_urls_are_refused_saying_what() {
        for (url, why) in [
            ("redis+sentinel://h:1", "no master name"),
            ("redis+sentinel://h:1/", "master name ''"),
            ("redis+sentinel://h:1/a b", "master name 'a b'"),
            ("redis+sentinel://h:0/m", "sentinel address 'h:0'"),
            ("redis+sentinel://h:1,/m", "sentinel address ''"),
            ("redis+sentinel://h:x/m", "sentinel address 'h:x'"),
            ("redis+sentinel://h/m/x", "database 'x'"),
            ("redis+sentinel://h/m/0/1", "too many path segments"),
            ("redis+sentinel://h/m?password=1", "unknown query parameter"),
            (
                "redis+sentinel://[::1ws:]:5000/m",
                "sentinel address '[::1ws:]:5000'",
            ),
        ] {
            let e = RedisTarget::parse(url).unwrap_err().0;
            assert!(e.contains(why), "{url}: {e}");
        }
        let many = vec!["h"; MAX_SENTINELS + 1].join(",");
        assert!(RedisTarget::parse(&format!("redis+sentinel://{many}/m")).is_err());
    }
}
