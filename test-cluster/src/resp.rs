//! A tiny blocking RESP2 client for controlling test servers.
//!
//! Deliberately separate from the library's codec: the harness checks the client, so it
//! must not share its parser.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A reply as the harness sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+...`
    Status(String),
    /// `-...`
    Error(String),
    /// `:...`
    Int(i64),
    /// `$...`; `None` for the null bulk.
    Bulk(Option<Vec<u8>>),
    /// `*...`; `None` for the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a status or bulk reply.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The integer of an integer reply.
    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The items of an array reply.
    pub fn items(&self) -> &[Reply] {
        match self {
            Reply::Array(Some(items)) => items,
            _ => &[],
        }
    }
}

/// One blocking connection.
#[derive(Debug)]
pub struct Conn {
    reader: BufReader<TcpStream>,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Longest aggregate the harness accepts (it only reads its own servers' replies).
const MAX_ITEMS: i64 = 10_000_000;

/// Passwords of the nodes this process started with `requirepass`, by port: the
/// harness's own connections authenticate with them.
fn passwords() -> &'static std::sync::Mutex<std::collections::HashMap<u16, String>> {
    static PASSWORDS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<u16, String>>,
    > = std::sync::OnceLock::new();
    PASSWORDS.get_or_init(Default::default)
}

/// Remembers (or, with `None`, forgets) the password of the node on `port`.
pub(crate) fn set_password(port: u16, password: Option<&str>) {
    let mut map = passwords().lock().unwrap_or_else(|p| p.into_inner());
    match password {
        Some(p) => map.insert(port, p.to_string()),
        None => map.remove(&port),
    };
}

/// The password of the node on `port`, if it has one.
pub(crate) fn password(port: u16) -> Option<String> {
    passwords()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&port)
        .cloned()
}

impl Conn {
    /// Connects to `127.0.0.1:port` (authenticating when the node has a password).
    pub fn open(port: u16) -> io::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut conn = Conn {
            reader: BufReader::new(stream),
        };
        if let Some(pw) = password(port) {
            conn.call(&["AUTH", &pw])?;
        }
        Ok(conn)
    }

    /// Sends several commands, then reads as many replies.
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> io::Result<Vec<Reply>> {
        let mut out = Vec::new();
        for args in cmds {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a);
                out.extend_from_slice(b"\r\n");
            }
        }
        self.reader.get_mut().write_all(&out)?;
        (0..cmds.len()).map(|_| self.read_reply(0)).collect()
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&str]) -> io::Result<Reply> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        let mut replies = self.pipeline(&[args])?;
        replies.pop().ok_or_else(|| bad("no reply"))
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\r\n") {
            return Err(bad("connection closed mid-reply"));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|_| bad("non-UTF-8 header"))
    }

    fn read_reply(&mut self, depth: usize) -> io::Result<Reply> {
        if depth > 32 {
            return Err(bad("reply nested too deeply"));
        }
        let line = self.read_line()?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let number = || rest.parse::<i64>().map_err(|_| bad("bad number"));
        match kind {
            "+" => Ok(Reply::Status(rest.to_string())),
            "-" => Ok(Reply::Error(rest.to_string())),
            ":" => Ok(Reply::Int(number()?)),
            "$" => {
                let n = number()?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut body = vec![0; n as usize + 2];
                io::Read::read_exact(&mut self.reader, &mut body)?;
                body.truncate(n as usize);
                Ok(Reply::Bulk(Some(body)))
            }
            "*" => {
                let n = number()?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                if n > MAX_ITEMS {
                    return Err(bad("array too long"));
                }
                let items = (0..n)
                    .map(|_| self.read_reply(depth + 1))
                    .collect::<io::Result<Vec<_>>>()?;
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(bad("unknown reply type")),
        }
    }
}
