//! Seed addresses: `host:port`, or URLs in the conventions users know from redis-rs and
//! other clients.
//!
//! - `redis://[[username]:password@]host[:port][/db]`: plain TCP; port 6379 by default;
//!   `db` is the numbered database every connection selects (`Config::database`; Valkey
//!   9 clusters with `cluster-databases`);
//! - `rediss://...`: the same over TLS;
//! - `valkey://` and `valkeys://` are accepted as synonyms;
//! - user and password are percent-decoded (`%40` for `@`); a path that is no number is
//!   refused, as is any query string, so nothing a user wrote is silently ignored.

use crate::core::error::{Error, ErrorKind, Result};
use crate::core::handshake::Credentials;
use crate::core::topology::NodeAddr;

/// One parsed seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// Where to connect.
    pub addr: NodeAddr,
    /// Credentials given in the URL, if any (never printed).
    pub credentials: Option<Credentials>,
    /// `rediss://` (TLS).
    pub tls: bool,
    /// The URL's path, `redis://host:port/3`: the database to select (see
    /// [`Config::database`](crate::Config::database)).
    pub database: Option<u32>,
}

fn bad(seed: &str, why: &str) -> Error {
    // The seed may hold a password: show only its scheme and host part.
    let shown = match seed.rsplit_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => seed.to_string(),
    };
    Error::new(ErrorKind::Config, format!("seed {shown:?}: {why}"))
}

/// Parses a seed: `host:port`, `[v6]:port`, or a `redis://` / `rediss://` URL.
///
/// ```
/// use redis_cluster_uring::url::parse_seed;
/// use redis_cluster_uring::NodeAddr;
/// let s = parse_seed("rediss://app:p%40ss@cache.example:7000").unwrap();
/// assert_eq!(s.addr, NodeAddr::new("cache.example", 7000));
/// assert!(s.tls);
/// assert_eq!(s.credentials.unwrap().username(), Some("app"));
/// assert_eq!(parse_seed("10.0.0.1:6379").unwrap().addr, NodeAddr::new("10.0.0.1", 6379));
/// assert_eq!(parse_seed("redis://h:1/3").unwrap().database, Some(3));
/// assert!(parse_seed("redis://h:1/x").is_err());
/// ```
pub fn parse_seed(seed: &str) -> Result<Seed> {
    let (scheme, rest) = match seed.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, seed),
    };
    let tls = match scheme.as_deref() {
        None | Some("redis") | Some("valkey") => false,
        Some("rediss") | Some("valkeys") => true,
        Some(other) => {
            return Err(bad(
                seed,
                &format!("unknown scheme {other:?} (use redis:// or rediss://)"),
            ))
        }
    };
    if scheme.is_none() {
        let addr = NodeAddr::parse(seed).ok_or_else(|| bad(seed, "not host:port"))?;
        return Ok(Seed {
            addr,
            credentials: None,
            tls: false,
            database: None,
        });
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(bad(seed, "query strings and fragments are not supported"));
    }
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, p),
        None => (rest, ""),
    };
    let database = match path {
        "" => None,
        n => Some(
            n.parse::<u32>()
                .map_err(|_| bad(seed, "the path must be a database number"))?,
        ),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let credentials = match userinfo {
        None => None,
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((u, p)) => (
                    decode(u).map_err(|w| bad(seed, w))?,
                    decode(p).map_err(|w| bad(seed, w))?,
                ),
                None => return Err(bad(seed, "a user needs a password (user:password@)")),
            };
            Some(if user.is_empty() {
                Credentials::password(password)
            } else {
                Credentials::user(user, password)
            })
        }
    };
    let addr = if hostport.is_empty() {
        return Err(bad(seed, "no host"));
    } else if let Some(addr) = NodeAddr::parse(hostport).filter(|a| !a.host.is_empty()) {
        addr
    } else if !hostport.contains(':') || (hostport.starts_with('[') && hostport.ends_with(']')) {
        let host = hostport.trim_start_matches('[').trim_end_matches(']');
        NodeAddr::new(host, 6379)
    } else {
        return Err(bad(seed, "not host[:port]"));
    };
    Ok(Seed {
        addr,
        credentials,
        tls,
        database,
    })
}

/// Percent-decoding of the user and password parts.
fn decode(s: &str) -> std::result::Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad percent-encoding")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "credentials are not UTF-8")
}

/// Parses a client's seeds, checked against its configuration: `rediss://` needs
/// `Config::tls`, the URLs may not disagree on credentials or databases, and their
/// credentials and database serve when the configuration names none (they are moved
/// into `config`; a database the configuration names must be the URLs' too).
///
/// ```
/// use redis_cluster_uring::{url::parse_seeds, Config, ErrorKind};
/// let mut config = Config::default();
/// let seeds = parse_seeds(&["redis://:pw@10.0.0.1:7000", "10.0.0.2:7000"], &mut config).unwrap();
/// assert_eq!(seeds.len(), 2);
/// assert!(parse_seeds::<&str>(&[], &mut config).is_err());
/// let e = parse_seeds(&["rediss://10.0.0.1"], &mut Config::default()).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::Config);
/// ```
pub fn parse_seeds<S: AsRef<str>>(
    seeds: &[S],
    config: &mut crate::core::config::Config,
) -> Result<Vec<NodeAddr>> {
    use crate::core::handshake::CredentialSource;
    let mut parsed = Vec::with_capacity(seeds.len());
    let mut from_urls: Option<Credentials> = None;
    let mut database: Option<u32> = None;
    for s in seeds {
        let seed = parse_seed(s.as_ref())?;
        if seed.tls && config.tls.is_none() {
            return Err(Error::new(
                ErrorKind::Config,
                "rediss:// seeds need Config::tls (the CA that signed the nodes' certificates)",
            ));
        }
        if let Some(c) = seed.credentials {
            if from_urls.as_ref().is_some_and(|known| *known != c) {
                return Err(Error::new(
                    ErrorKind::Config,
                    "the seed URLs give different credentials",
                ));
            }
            from_urls = Some(c);
        }
        if let Some(n) = seed.database {
            if database.is_some_and(|known| known != n) {
                return Err(Error::new(
                    ErrorKind::Config,
                    "the seed URLs name different databases",
                ));
            }
            database = Some(n);
        }
        parsed.push(seed.addr);
    }
    if parsed.is_empty() {
        return Err(Error::new(ErrorKind::Config, "no seed address given"));
    }
    if let (Some(c), CredentialSource::None) = (from_urls, &config.credentials) {
        config.credentials = CredentialSource::Fixed(c);
    }
    match database {
        Some(n) if config.database != 0 && config.database != n => {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "the seed URLs name database {n}, Config::database {}",
                    config.database
                ),
            ))
        }
        Some(n) => config.database = n,
        None => {}
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_urls_path_is_the_database_and_the_seeds_must_agree() {
        use crate::core::config::Config;
        assert_eq!(parse_seed("redis://h:1").unwrap().database, None);
        assert_eq!(parse_seed("redis://h:1/").unwrap().database, None);
        assert_eq!(parse_seed("redis://h:1/0").unwrap().database, Some(0));
        assert_eq!(parse_seed("rediss://:pw@h/15").unwrap().database, Some(15));
        for bad in [
            "redis://h:1/x",
            "redis://h:1/-1",
            "redis://h:1/3/4",
            "redis://h:1/99999999999",
        ] {
            assert_eq!(
                parse_seed(bad).unwrap_err().kind(),
                ErrorKind::Config,
                "{bad}"
            );
        }
        // The URLs' database moves into the configuration.
        let mut config = Config::default();
        parse_seeds(&["redis://h:1/3", "h:2"], &mut config).unwrap();
        assert_eq!(config.database, 3);
        // Disagreeing seeds, or a URL against the configuration: refused.
        let e = parse_seeds(&["redis://h:1/3", "redis://h:2/2"], &mut Config::default());
        assert_eq!(e.unwrap_err().kind(), ErrorKind::Config);
        let e = parse_seeds(&["redis://h:1/3"], &mut Config::default().database(2));
        assert_eq!(e.unwrap_err().kind(), ErrorKind::Config);
        // The same database twice is fine, and a plain seed keeps the configuration's.
        let mut config = Config::default().database(3);
        parse_seeds(&["redis://h:1/3", "h:2"], &mut config).unwrap();
        assert_eq!(config.database, 3);
    }

    #[test]
    fn urls_in_the_usual_forms() {
        let s = parse_seed("redis://127.0.0.1:7000").unwrap();
        assert_eq!(
            (s.addr, s.credentials, s.tls),
            (NodeAddr::new("127.0.0.1", 7000), None, false)
        );
        let s = parse_seed("redis://:pw@host").unwrap();
        assert_eq!(s.addr, NodeAddr::new("host", 6379));
        assert_eq!(s.credentials, Some(Credentials::password("pw")));
        let s = parse_seed("REDISS://u:p%3Aq%40@[::1]:7001/0").unwrap();
        assert_eq!(s.addr, NodeAddr::new("::1", 7001));
        assert_eq!(s.credentials, Some(Credentials::user("u", "p:q@")));
        assert!(s.tls);
        let s = parse_seed("valkey://[::1]").unwrap();
        assert_eq!(s.addr, NodeAddr::new("::1", 6379));
        assert!(parse_seed("valkeys://h:1").unwrap().tls);
        let s = parse_seed("[::1]:7002").unwrap();
        assert_eq!(s.addr, NodeAddr::new("::1", 7002));
    }

    #[test]
    fn bad_urls_are_typed_errors_that_hide_the_password() {
        for bad in [
            "http://h:1",
            "redis://",
            "redis://h:notaport",
            // A database path that is no number (a number selects it: issue 21).
            "redis://h:1/two",
            "redis://u:hunter2@h:1/x",
            "redis://h:1?protocol=resp3",
            "redis://user@h:1",
            "redis://u:%zz@h:1",
            "redis://u:%ff@h:1",
            "no-port",
            "redis://u:hunter2@h:99999",
        ] {
            let e = parse_seed(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }
}
