//! The connection handshake, as a pure state machine run on every new connection before
//! any caller's command.
//!
//! One round trip in the common case: `HELLO <proto> [AUTH user pass] [SETNAME name]`,
//! `CLIENT SETINFO LIB-NAME`, `CLIENT SETINFO LIB-VER`, `SELECT <db>` for a numbered
//! database and, on replica connections, `READONLY`, pipelined. A server that does not
//! know `HELLO` (before Redis 6) gets a second round in RESP2: `AUTH`, `CLIENT SETNAME`,
//! `SELECT`, `READONLY`. `CLIENT SETINFO` errors
//! are ignored (older servers lack it); any other failure is a typed error that says which
//! step failed and why, and the connection is not used.
//!
//! The machine only decides: [`Handshake::start`] gives the commands to write, each reply
//! goes to [`Handshake::on_reply`], which answers with the next [`HandshakeStep`]. The
//! driver (`connection.rs`) writes and reads; the same machine serves every engine, with
//! or without TLS.

use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

use crate::core::cmd::{cmd, Cmd};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::resp::Value;

/// The RESP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2: arrays, bulk strings, integers; maps come as flat arrays.
    Resp2,
    /// RESP3 (default where the server supports it; RESP2 otherwise): maps, sets,
    /// doubles, booleans, push frames.
    #[default]
    Resp3,
}

/// A username (ACL user; `None` means `default`) and a password or token.
///
/// The secret never appears in `Debug`, `Display`, errors or logs.
///
/// ```
/// use redis_cluster_uring::core::handshake::Credentials;
/// let c = Credentials::user("app", "s3cret");
/// assert!(!format!("{c:?}").contains("s3cret"));
/// assert_eq!(c.username(), Some("app"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: Option<String>,
    password: String,
}

impl Credentials {
    /// The `default` user with this password (`requirepass`).
    pub fn password(password: impl Into<String>) -> Credentials {
        Credentials {
            username: None,
            password: password.into(),
        }
    }

    /// An ACL user and its password.
    pub fn user(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: Some(username.into()),
            password: password.into(),
        }
    }

    /// The ACL user, if not `default`.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    fn user_or_default(&self) -> &str {
        self.username.as_deref().unwrap_or("default")
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.user_or_default())
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where a connection's credentials come from: fixed, or a provider consulted on every
/// connect and reconnect (rotating tokens such as cloud IAM authentication; it should
/// return a cached token quickly, it runs on the event loop).
#[derive(Clone, Default)]
pub enum CredentialSource {
    /// No authentication.
    #[default]
    None,
    /// The same credentials for every connection.
    Fixed(Credentials),
    /// Asked for every new connection.
    Provider(Rc<dyn Fn() -> Result<Credentials>>),
}

impl CredentialSource {
    /// The credentials for a connection being opened now.
    pub fn current(&self) -> Result<Option<Credentials>> {
        match self {
            CredentialSource::None => Ok(None),
            CredentialSource::Fixed(c) => Ok(Some(c.clone())),
            CredentialSource::Provider(p) => p().map(Some),
        }
    }
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::None => f.write_str("None"),
            CredentialSource::Fixed(c) => f.debug_tuple("Fixed").field(c).finish(),
            CredentialSource::Provider(_) => f.write_str("Provider(..)"),
        }
    }
}

/// What one connection's handshake must do.
#[derive(Debug, Clone)]
pub struct HandshakeOptions {
    /// The protocol asked for.
    pub protocol: Protocol,
    /// Credentials, if the cluster needs them.
    pub credentials: Option<Credentials>,
    /// `CLIENT SETNAME`, if any.
    pub client_name: Option<String>,
    /// `CLIENT SETINFO LIB-NAME` / `LIB-VER`.
    pub lib: Option<(&'static str, &'static str)>,
    /// Send `READONLY` (a connection to a replica that serves reads).
    pub read_only: bool,
    /// `SELECT` this database (0: none sent).
    pub database: u32,
    /// Send `CLIENT TRACKING ON` (the client-side cache; RESP3 only: a connection that
    /// falls back to RESP2 does not track).
    pub tracking: bool,
}

impl Default for HandshakeOptions {
    fn default() -> Self {
        HandshakeOptions {
            protocol: Protocol::Resp3,
            credentials: None,
            client_name: None,
            lib: Some(("redis-cluster-uring", env!("CARGO_PKG_VERSION"))),
            read_only: false,
            database: 0,
            tracking: false,
        }
    }
}

/// What the server told about itself (from `HELLO`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// The protocol the connection speaks now.
    pub protocol: Protocol,
    /// `redis` or `valkey`, when `HELLO` said.
    pub server: Option<String>,
    /// The server's version, when `HELLO` said.
    pub version: Option<String>,
    /// `master` or `replica`, when `HELLO` said.
    pub role: Option<String>,
    /// The node's availability zone (Valkey's `availability-zone`), when set.
    pub availability_zone: Option<String>,
    /// `CLIENT TRACKING ON` was accepted: the node pushes `invalidate` for the keys this
    /// connection reads, so its replies may fill the client-side cache.
    pub tracking: bool,
}

/// What the driver does next.
#[derive(Debug)]
pub enum HandshakeStep {
    /// Write these commands, then feed each reply to [`Handshake::on_reply`].
    Send(Vec<Cmd>),
    /// Read the next reply.
    Wait,
    /// The connection is ready for callers' commands.
    Done(ServerInfo),
    /// The handshake failed; close the connection.
    Failed(Error),
}

/// The reply each written command is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Hello,
    SetInfo,
    ReadOnly { after_fallback: bool },
    Select { after_fallback: bool },
    Auth,
    SetName,
    Tracking,
}

/// One connection's handshake.
///
/// ```
/// use bytes::Bytes;
/// use redis_cluster_uring::core::handshake::{Credentials, Handshake, HandshakeOptions, HandshakeStep};
/// use redis_cluster_uring::Value;
/// let mut h = Handshake::new(HandshakeOptions {
///     credentials: Some(Credentials::password("pw")),
///     lib: None,
///     ..HandshakeOptions::default()
/// });
/// let HandshakeStep::Send(cmds) = h.start() else { unreachable!() };
/// assert_eq!(cmds[0].name(), b"HELLO");
/// let hello = Value::Map(vec![(
///     Value::Bulk(Bytes::from_static(b"proto")),
///     Value::Int(3),
/// )]);
/// assert!(matches!(h.on_reply(hello), HandshakeStep::Done(_)));
/// ```
#[derive(Debug)]
pub struct Handshake {
    options: HandshakeOptions,
    awaiting: VecDeque<Expect>,
    info: ServerInfo,
    /// HELLO was unknown: the RESP2 commands are (being) sent.
    fell_back: bool,
}

impl Handshake {
    /// A handshake with these options.
    pub fn new(options: HandshakeOptions) -> Handshake {
        Handshake {
            options,
            awaiting: VecDeque::new(),
            info: ServerInfo::default(),
            fell_back: false,
        }
    }

    /// The commands of the first round.
    pub fn start(&mut self) -> HandshakeStep {
        let proto = match self.options.protocol {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        };
        let mut hello = cmd("HELLO").arg(proto);
        if let Some(c) = &self.options.credentials {
            hello = hello.arg("AUTH").arg(c.user_or_default()).arg(&c.password);
        }
        if let Some(name) = &self.options.client_name {
            hello = hello.arg("SETNAME").arg(name);
        }
        let mut cmds = vec![hello];
        self.awaiting.push_back(Expect::Hello);
        if let Some((name, version)) = self.options.lib {
            cmds.push(cmd("CLIENT").arg("SETINFO").arg("LIB-NAME").arg(name));
            cmds.push(cmd("CLIENT").arg("SETINFO").arg("LIB-VER").arg(version));
            self.awaiting.push_back(Expect::SetInfo);
            self.awaiting.push_back(Expect::SetInfo);
        }
        if self.options.database != 0 {
            cmds.push(cmd("SELECT").arg(self.options.database));
            self.awaiting.push_back(Expect::Select {
                after_fallback: false,
            });
        }
        if self.options.read_only {
            cmds.push(cmd("READONLY"));
            self.awaiting.push_back(Expect::ReadOnly {
                after_fallback: false,
            });
        }
        if self.options.tracking && self.options.protocol == Protocol::Resp3 {
            cmds.push(cmd("CLIENT").arg("TRACKING").arg("ON"));
            self.awaiting.push_back(Expect::Tracking);
        }
        HandshakeStep::Send(cmds)
    }

    /// Feeds the next reply (push frames must not be fed: they answer nothing).
    pub fn on_reply(&mut self, reply: Value) -> HandshakeStep {
        let Some(expect) = self.awaiting.pop_front() else {
            return HandshakeStep::Failed(Error::protocol(
                "a reply arrived during the handshake that nothing asked for",
            ));
        };
        let error = reply
            .as_error()
            .map(|e| String::from_utf8_lossy(e).into_owned());
        match (expect, error) {
            (Expect::Hello, None) => return self.read_hello(&reply),
            (Expect::Hello, Some(e)) if is_unknown_command(&e) => {
                // Before Redis 6: RESP2 only, AUTH and CLIENT SETNAME one by one.
                self.fell_back = true;
                self.info.protocol = Protocol::Resp2;
                let mut cmds = Vec::new();
                if let Some(c) = &self.options.credentials {
                    let mut auth = cmd("AUTH");
                    if let Some(user) = c.username() {
                        auth = auth.arg(user);
                    }
                    cmds.push(auth.arg(&c.password));
                    self.awaiting.push_back(Expect::Auth);
                }
                if let Some(name) = &self.options.client_name {
                    cmds.push(cmd("CLIENT").arg("SETNAME").arg(name));
                    self.awaiting.push_back(Expect::SetName);
                }
                if self.options.database != 0 {
                    cmds.push(cmd("SELECT").arg(self.options.database));
                    self.awaiting.push_back(Expect::Select {
                        after_fallback: true,
                    });
                }
                if self.options.read_only {
                    cmds.push(cmd("READONLY"));
                    self.awaiting.push_back(Expect::ReadOnly {
                        after_fallback: true,
                    });
                }
                if !cmds.is_empty() {
                    return HandshakeStep::Send(cmds);
                }
            }
            (Expect::Hello, Some(e)) => {
                return HandshakeStep::Failed(hello_error(&e, &self.options))
            }
            (Expect::Auth, Some(e)) => {
                return HandshakeStep::Failed(Error::new(
                    ErrorKind::Auth,
                    format!("authentication failed: {e}"),
                ))
            }
            (Expect::SetName, Some(e)) => {
                return HandshakeStep::Failed(Error::new(
                    ErrorKind::Config,
                    format!("CLIENT SETNAME failed: {e}"),
                ))
            }
            // Its first-round copy ran before the RESP2 AUTH: the one after it decides.
            (
                Expect::ReadOnly {
                    after_fallback: false,
                }
                | Expect::Select {
                    after_fallback: false,
                },
                Some(_),
            ) if self.fell_back => {}
            (Expect::Select { .. }, Some(e)) => {
                return HandshakeStep::Failed(Error::new(
                    ErrorKind::Config,
                    format!(
                        "database {} cannot be selected (Config::database): the server \
                         answered {e:?}",
                        self.options.database
                    ),
                ))
            }
            (Expect::ReadOnly { .. }, Some(e)) => {
                return HandshakeStep::Failed(Error::new(
                    ErrorKind::ServerError,
                    format!("READONLY failed: {e}"),
                ))
            }
            // Library name and version are a courtesy: older servers lack SETINFO.
            (Expect::SetInfo, _) => {}
            // Tracking accepted on a RESP3 connection: its reads may fill the cache. A
            // refusal (an ACL without CLIENT, RESP2 after a fallback) leaves a
            // connection that works and fills nothing.
            (Expect::Tracking, None) => {
                // A replica's reads never fill (they may lag the primary's invalidations).
                let replica = self.info.role.as_deref() == Some("replica");
                self.info.tracking =
                    !self.fell_back && self.info.protocol == Protocol::Resp3 && !replica
            }
            (Expect::Tracking, Some(e)) => {
                tracing::debug!(error = %e, "CLIENT TRACKING refused: no client-side caching here");
            }
            (_, None) => {}
        }
        if self.awaiting.is_empty() {
            HandshakeStep::Done(self.info.clone())
        } else {
            HandshakeStep::Wait
        }
    }

    fn read_hello(&mut self, reply: &Value) -> HandshakeStep {
        let fields: Vec<(&Value, &Value)> = match reply {
            Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
            Value::Array(items) => items.chunks_exact(2).map(|p| (&p[0], &p[1])).collect(),
            other => {
                return HandshakeStep::Failed(Error::protocol(format!("HELLO answered {other:?}")))
            }
        };
        let text = |v: &Value| {
            v.as_bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        self.info.protocol = self.options.protocol;
        for (key, value) in fields {
            match key.as_bytes() {
                Some(b"server") => self.info.server = text(value),
                Some(b"version") => self.info.version = text(value),
                Some(b"role") => self.info.role = text(value),
                Some(b"availability_zone") => {
                    self.info.availability_zone = text(value).filter(|z| !z.is_empty())
                }
                Some(b"proto") => {
                    self.info.protocol = match value {
                        Value::Int(2) => Protocol::Resp2,
                        _ => Protocol::Resp3,
                    }
                }
                _ => {}
            }
        }
        if self.awaiting.is_empty() {
            HandshakeStep::Done(self.info.clone())
        } else {
            HandshakeStep::Wait
        }
    }
}

fn is_unknown_command(error: &str) -> bool {
    error.starts_with("ERR unknown command") || error.starts_with("ERR Unknown command")
}

/// The error for a failed `HELLO`: authentication problems get their own kind, and the
/// text says whether credentials were given (never what they were).
fn hello_error(line: &str, options: &HandshakeOptions) -> Error {
    let code = line.split(' ').next().unwrap_or("");
    match code {
        "WRONGPASS" | "NOAUTH" | "NOPERM" => {
            let given = match &options.credentials {
                Some(c) => format!("as user {:?}", c.user_or_default()),
                None => "without credentials (the server requires them)".to_string(),
            };
            Error::new(
                ErrorKind::Auth,
                format!("authentication failed {given}: {line}"),
            )
        }
        "NOPROTO" => Error::new(
            ErrorKind::Config,
            format!("the server refuses the protocol asked for: {line}"),
        ),
        _ => Error::new(ErrorKind::ServerError, format!("HELLO failed: {line}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn err(s: &str) -> Value {
        Value::Error(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn ok() -> Value {
        Value::SimpleString(Bytes::from_static(b"OK"))
    }

    fn args(c: &Cmd) -> Vec<String> {
        c.args()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    fn hello_reply(proto: i64, zone: &str) -> Value {
        Value::Map(vec![
            (bulk("server"), bulk("valkey")),
            (bulk("version"), bulk("9.0.0")),
            (bulk("proto"), Value::Int(proto)),
            (bulk("role"), bulk("replica")),
            (bulk("availability_zone"), bulk(zone)),
        ])
    }

    fn sent(step: HandshakeStep) -> Vec<Vec<String>> {
        match step {
            HandshakeStep::Send(cmds) => cmds.iter().map(args).collect(),
            other => panic!("expected commands, got {other:?}"),
        }
    }

    #[test]
    fn a_database_is_selected_in_the_first_round_and_a_refusal_names_the_answer() {
        let options = HandshakeOptions {
            database: 3,
            read_only: true,
            lib: None,
            ..HandshakeOptions::default()
        };
        let mut h = Handshake::new(options.clone());
        let cmds = sent(h.start());
        assert_eq!(cmds[1], ["SELECT", "3"]);
        assert_eq!(cmds[2], ["READONLY"]);
        assert!(matches!(
            h.on_reply(hello_reply(3, "")),
            HandshakeStep::Wait
        ));
        assert!(matches!(h.on_reply(ok()), HandshakeStep::Wait));
        assert!(matches!(h.on_reply(ok()), HandshakeStep::Done(_)));
        // Database 0 sends nothing.
        let mut h = Handshake::new(HandshakeOptions {
            database: 0,
            ..options.clone()
        });
        assert!(sent(h.start()).iter().all(|c| c[0] != "SELECT"));
        // Refused (Redis Cluster): a configuration error that quotes the server.
        let mut h = Handshake::new(options.clone());
        sent(h.start());
        assert!(matches!(
            h.on_reply(hello_reply(3, "")),
            HandshakeStep::Wait
        ));
        match h.on_reply(err("ERR SELECT is not allowed in cluster mode")) {
            HandshakeStep::Failed(e) => {
                assert_eq!(e.kind(), ErrorKind::Config);
                assert!(e.detail().contains("database 3"), "{e}");
                assert!(e.detail().contains("not allowed in cluster mode"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        // Before Redis 6 the first round's SELECT fails unauthenticated; the one sent
        // after AUTH decides.
        let mut h = Handshake::new(HandshakeOptions {
            credentials: Some(Credentials::password("pw")),
            read_only: false,
            ..options
        });
        sent(h.start());
        let second = sent(h.on_reply(err("ERR unknown command 'HELLO'")));
        assert_eq!(second, [vec!["AUTH", "pw"], vec!["SELECT", "3"]]);
        assert!(matches!(
            h.on_reply(err("NOAUTH Authentication required.")),
            HandshakeStep::Wait
        ));
        assert!(matches!(h.on_reply(ok()), HandshakeStep::Wait));
        assert!(matches!(h.on_reply(ok()), HandshakeStep::Done(_)));
    }

    #[test]
    fn tracking_is_asked_for_in_the_first_round_and_only_a_primary_on_resp3_fills() {
        let tracking = HandshakeOptions {
            lib: None,
            tracking: true,
            ..HandshakeOptions::default()
        };
        let done = |h: &mut Handshake, reply: Value| match h.on_reply(reply) {
            HandshakeStep::Done(info) => info,
            other => panic!("{other:?}"),
        };
        let primary = || {
            Value::Map(vec![
                (bulk("proto"), Value::Int(3)),
                (bulk("role"), bulk("master")),
            ])
        };
        let mut h = Handshake::new(tracking.clone());
        let cmds = sent(h.start());
        assert_eq!(cmds[1], ["CLIENT", "TRACKING", "ON"]);
        assert!(matches!(h.on_reply(primary()), HandshakeStep::Wait));
        assert!(done(&mut h, ok()).tracking);
        // Refused (an ACL without CLIENT): the connection works, and fills nothing.
        let mut h = Handshake::new(tracking.clone());
        sent(h.start());
        h.on_reply(primary());
        assert!(!done(&mut h, err("NOPERM no CLIENT for you")).tracking);
        // A replica does not fill.
        let mut h = Handshake::new(tracking.clone());
        sent(h.start());
        h.on_reply(Value::Map(vec![
            (bulk("proto"), Value::Int(3)),
            (bulk("role"), bulk("replica")),
        ]));
        assert!(!done(&mut h, ok()).tracking);
        // RESP2 asked for: not even sent (its pushes would need a redirect connection).
        let mut h = Handshake::new(HandshakeOptions {
            protocol: Protocol::Resp2,
            ..tracking.clone()
        });
        assert_eq!(sent(h.start()).len(), 1);
        // A server without HELLO falls back to RESP2: the first round's TRACKING is
        // answered, and nothing is trusted to track.
        let mut h = Handshake::new(tracking);
        sent(h.start());
        h.on_reply(err("ERR unknown command 'HELLO'"));
        assert!(!done(&mut h, ok()).tracking);
    }

    #[test]
    fn one_round_with_everything_pipelined() {
        let mut h = Handshake::new(HandshakeOptions {
            credentials: Some(Credentials::user("app", "pw")),
            client_name: Some("svc".into()),
            read_only: true,
            ..HandshakeOptions::default()
        });
        let cmds = sent(h.start());
        assert_eq!(
            cmds[0],
            ["HELLO", "3", "AUTH", "app", "pw", "SETNAME", "svc"]
        );
        assert_eq!(cmds[1][..3], ["CLIENT", "SETINFO", "LIB-NAME"]);
        assert_eq!(cmds[2][..3], ["CLIENT", "SETINFO", "LIB-VER"]);
        assert_eq!(cmds[3], ["READONLY"]);
        assert!(matches!(
            h.on_reply(hello_reply(3, "az1")),
            HandshakeStep::Wait
        ));
        // SETINFO unknown to an older server: ignored.
        assert!(matches!(
            h.on_reply(err("ERR unknown subcommand 'SETINFO'")),
            HandshakeStep::Wait
        ));
        assert!(matches!(h.on_reply(ok()), HandshakeStep::Wait));
        match h.on_reply(ok()) {
            HandshakeStep::Done(info) => {
                assert_eq!(info.protocol, Protocol::Resp3);
                assert_eq!(info.server.as_deref(), Some("valkey"));
                assert_eq!(info.availability_zone.as_deref(), Some("az1"));
                assert_eq!(info.role.as_deref(), Some("replica"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn default_user_and_resp2_on_request() {
        let mut h = Handshake::new(HandshakeOptions {
            protocol: Protocol::Resp2,
            credentials: Some(Credentials::password("pw")),
            lib: None,
            ..HandshakeOptions::default()
        });
        assert_eq!(
            sent(h.start()),
            vec![vec!["HELLO", "2", "AUTH", "default", "pw"]]
        );
        let resp2_hello = Value::Array(vec![bulk("proto"), Value::Int(2)]);
        match h.on_reply(resp2_hello) {
            HandshakeStep::Done(info) => assert_eq!(info.protocol, Protocol::Resp2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn servers_without_hello_get_resp2_auth_and_setname() {
        let mut h = Handshake::new(HandshakeOptions {
            credentials: Some(Credentials::user("app", "pw")),
            client_name: Some("svc".into()),
            lib: None,
            read_only: true,
            ..HandshakeOptions::default()
        });
        sent(h.start());
        let second = sent(h.on_reply(err(
            "ERR unknown command 'HELLO', with args beginning with: '3'",
        )));
        // The first READONLY's reply is still due; then the RESP2 round.
        assert_eq!(
            second,
            vec![
                vec!["AUTH", "app", "pw"],
                vec!["CLIENT", "SETNAME", "svc"],
                vec!["READONLY"]
            ]
        );
        assert!(matches!(
            h.on_reply(err("NOAUTH Authentication required.")),
            HandshakeStep::Wait
        ));
        assert!(matches!(h.on_reply(ok()), HandshakeStep::Wait));
        assert!(matches!(h.on_reply(ok()), HandshakeStep::Wait));
        match h.on_reply(ok()) {
            HandshakeStep::Done(info) => assert_eq!(info.protocol, Protocol::Resp2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn authentication_failures_are_typed_and_keep_the_secret() {
        for (reply, given) in [
            (
                "WRONGPASS invalid username-password pair or user is disabled.",
                true,
            ),
            (
                "NOAUTH HELLO must be called with the client already authenticated",
                false,
            ),
        ] {
            let mut h = Handshake::new(HandshakeOptions {
                credentials: given.then(|| Credentials::user("app", "hunter2")),
                lib: None,
                ..HandshakeOptions::default()
            });
            sent(h.start());
            match h.on_reply(err(reply)) {
                HandshakeStep::Failed(e) => {
                    assert_eq!(e.kind(), ErrorKind::Auth);
                    assert!(!e.to_string().contains("hunter2"));
                    assert!(!format!("{e:?}").contains("hunter2"));
                    assert!(
                        e.detail().contains(if given { "app" } else { "without" }),
                        "{e}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        // The RESP2 AUTH failing is an authentication error too.
        let mut h = Handshake::new(HandshakeOptions {
            credentials: Some(Credentials::password("hunter2")),
            lib: None,
            ..HandshakeOptions::default()
        });
        sent(h.start());
        sent(h.on_reply(err("ERR unknown command 'HELLO'")));
        match h.on_reply(err("ERR invalid password")) {
            HandshakeStep::Failed(e) => assert_eq!(e.kind(), ErrorKind::Auth),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_failures_are_typed_and_stray_replies_refused() {
        let mut h = Handshake::new(HandshakeOptions {
            lib: None,
            read_only: true,
            ..HandshakeOptions::default()
        });
        sent(h.start());
        assert!(matches!(
            h.on_reply(hello_reply(3, "")),
            HandshakeStep::Wait
        ));
        match h.on_reply(err("ERR This instance has cluster support disabled")) {
            HandshakeStep::Failed(e) => assert_eq!(e.kind(), ErrorKind::ServerError),
            other => panic!("{other:?}"),
        }
        let mut h = Handshake::new(HandshakeOptions::default());
        sent(h.start());
        match h.on_reply(err("NOPROTO unsupported protocol version")) {
            HandshakeStep::Failed(e) => assert_eq!(e.kind(), ErrorKind::Config),
            other => panic!("{other:?}"),
        }
        let mut h = Handshake::new(HandshakeOptions {
            lib: None,
            ..HandshakeOptions::default()
        });
        assert!(matches!(h.on_reply(ok()), HandshakeStep::Failed(_)));
        let mut h = Handshake::new(HandshakeOptions {
            lib: None,
            ..HandshakeOptions::default()
        });
        sent(h.start());
        assert!(matches!(
            h.on_reply(Value::Int(1)),
            HandshakeStep::Failed(_)
        ));
    }

    #[test]
    fn secrets_never_print() {
        let fixed = CredentialSource::Fixed(Credentials::user("u", "hunter2"));
        assert!(!format!("{fixed:?}").contains("hunter2"));
        let options = HandshakeOptions {
            credentials: Some(Credentials::password("hunter2")),
            ..HandshakeOptions::default()
        };
        assert!(!format!("{options:?}").contains("hunter2"));
        let provider = CredentialSource::Provider(Rc::new(|| Ok(Credentials::password("hunter2"))));
        assert!(!format!("{provider:?}").contains("hunter2"));
        assert_eq!(
            provider.current().unwrap(),
            Some(Credentials::password("hunter2"))
        );
    }
}
