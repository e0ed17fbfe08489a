//! `--nodes` seeds, in the forms the client takes (`host:port`,
//! `redis://[[user]:password@]host[:port]`, `rediss://...`): checked with the client's own
//! parser, handed to our client unchanged, and turned into what each peer can take.

use redis_cluster_uring::url::parse_seed;

/// One seed, as the peers need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// Host (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// ACL user from the URL (`None`: `default`).
    pub username: Option<String>,
    /// Password from the URL.
    pub password: Option<String>,
    /// `rediss://` (or `valkeys://`).
    pub tls: bool,
}

/// Parses a seed; the error never shows the password (the client's parser hides it).
pub fn parse(seed: &str) -> Result<Seed, String> {
    let parsed = parse_seed(seed).map_err(|e| e.to_string())?;
    let (username, password) = match userinfo(seed) {
        Some(info) => {
            let (user, password) = info.split_once(':').unwrap_or(("", info));
            let user = decode(user);
            (Some(user).filter(|u| !u.is_empty()), Some(decode(password)))
        }
        None => (None, None),
    };
    Ok(Seed {
        host: parsed.addr.host,
        port: parsed.addr.port,
        username,
        password,
        tls: parsed.tls,
    })
}

/// The `user:password` part of a URL seed.
fn userinfo(seed: &str) -> Option<&str> {
    let (_, rest) = seed.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once('@').map(|(info, _)| info)
}

/// Percent-decoding (the client has already refused malformed escapes).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL redis-rs takes for a seed: URLs as given (redis-rs reads the same credentials
/// and schemes), `host:port` with the scheme of the run.
pub fn redis_rs_url(seed: &str, tls: bool) -> String {
    if seed.contains("://") {
        seed.to_string()
    } else {
        let scheme = if tls { "rediss" } else { "redis" };
        format!("{scheme}://{seed}")
    }
}

/// True when the seeds are `rediss://` URLs; an error when some are and some are not.
pub fn all_tls(seeds: &[String]) -> Result<bool, String> {
    let parsed = seeds
        .iter()
        .map(|s| parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let tls = parsed.iter().filter(|s| s.tls).count();
    match tls {
        0 => Ok(false),
        n if n == parsed.len() => Ok(true),
        _ => Err("--nodes mixes rediss:// seeds with plain ones; give one kind".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_and_urls_with_credentials() {
        let s = parse("127.0.0.1:7000").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls), ("127.0.0.1", 7000, false));
        assert_eq!((s.username, s.password), (None, None));

        let s = parse("redis://:p%40ss@127.0.0.1:7001").unwrap();
        assert_eq!(
            (s.port, s.username, s.password),
            (7001, None, Some("p@ss".into()))
        );

        let s = parse("rediss://app:pw@cache.test:7002/0").unwrap();
        assert_eq!(s.host, "cache.test");
        assert_eq!(s.username.as_deref(), Some("app"));
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert!(s.tls);
    }

    #[test]
    fn errors_never_show_the_password() {
        let e = parse("redis://u:hunter2@h:99999").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn peers_get_urls_and_mixed_schemes_are_refused() {
        assert_eq!(redis_rs_url("h:1", false), "redis://h:1");
        assert_eq!(redis_rs_url("h:1", true), "rediss://h:1");
        assert_eq!(redis_rs_url("redis://:pw@h:1", false), "redis://:pw@h:1");
        assert_eq!(all_tls(&["h:1".into(), "redis://h:2".into()]), Ok(false));
        assert_eq!(all_tls(&["rediss://h:1".into()]), Ok(true));
        assert!(all_tls(&["rediss://h:1".into(), "h:2".into()]).is_err());
    }
}
