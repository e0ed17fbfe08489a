//! A node's address: what the cluster announces and redirects name.

use std::fmt;

/// A node's address as the cluster announces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    /// Host name or IP (IPv6 without brackets). Empty in a redirect means "the host of the
    /// node that answered" (the client fills it in).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddr {
    /// Makes an address.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        NodeAddr {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port`, `[v6]:port`, and the bare `v6:port` that MOVED replies carry
    /// (the last colon separates the port). `:port` gives an empty host.
    ///
    /// ```
    /// use redis_cluster_uring::NodeAddr;
    /// assert_eq!(NodeAddr::parse("127.0.0.1:7000"), Some(NodeAddr::new("127.0.0.1", 7000)));
    /// assert_eq!(NodeAddr::parse("[::1]:7000"), Some(NodeAddr::new("::1", 7000)));
    /// assert_eq!(NodeAddr::parse("::1:7000"), Some(NodeAddr::new("::1", 7000)));
    /// assert_eq!(NodeAddr::parse("7000"), None);
    /// ```
    pub fn parse(s: &str) -> Option<NodeAddr> {
        let (host, port) = s.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']')?,
            None => host,
        };
        if host.contains(['[', ']', ' ']) {
            return None;
        }
        Some(NodeAddr::new(host, port))
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}
