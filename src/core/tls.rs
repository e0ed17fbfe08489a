//! TLS as a sans-IO layer between an engine's bytes and the RESP codec, on `rustls`.
//!
//! [`TlsConfig`] is the user's side (roots, client certificate, server name). The
//! crate-private `TlsLayer` holds one connection's TLS state and only transforms buffers:
//! ciphertext in, plaintext out (`open`); plaintext in, records out (`seal`).
//! It never touches a socket, so the io_uring and epoll engines carry it the same way
//! (`io/tls.rs`), and it is unit-tested here against an in-memory rustls server.
//!
//! Why rustls: a TLS stack is exactly the code not to write by hand, and rustls is
//! memory-safe, buffer-driven (its `read_tls`/`write_tls` work on any bytes, which is
//! what a completion-based engine needs) and maintained. The `ring` provider keeps the
//! build free of C toolchains beyond `cc`.

use std::fmt;
use std::io::{Read, Write};
// `core::net`: an address is data here, not a socket.
use core::net::IpAddr;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::core::error::{Error, ErrorKind, Result};

/// The rustls configuration a client shares between its connections.
pub(crate) type Rustls = ClientConfig;

/// TLS settings for every connection of a client.
///
/// ```no_run
/// use redis_cluster_uring::tls::TlsConfig;
/// let ca_pem = std::fs::read("ca.pem")?;
/// let tls = TlsConfig::new()
///     .add_root_pem(&ca_pem)?          // the CA that signed the nodes' certificates
///     .server_name("cache.internal"); // nodes announce IPs; verify this name instead
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct TlsConfig {
    roots: Vec<CertificateDer<'static>>,
    client_auth: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    server_name: Option<String>,
    accept_invalid_certs: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("roots", &self.roots.len())
            .field("client_certificate", &self.client_auth.is_some())
            .field("server_name", &self.server_name)
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .finish()
    }
}

fn config_error(what: impl fmt::Display) -> Error {
    Error::new(ErrorKind::Config, format!("TLS: {what}"))
}

impl TlsConfig {
    /// No trusted roots yet: add the CA that signed the nodes' certificates.
    pub fn new() -> TlsConfig {
        TlsConfig::default()
    }

    /// Trusts every certificate in `pem` as a root.
    pub fn add_root_pem(mut self, pem: &[u8]) -> Result<TlsConfig> {
        let before = self.roots.len();
        for cert in CertificateDer::pem_slice_iter(pem) {
            self.roots
                .push(cert.map_err(|e| config_error(format!("bad root certificate: {e}")))?);
        }
        if self.roots.len() == before {
            return Err(config_error("no certificate in the root PEM"));
        }
        Ok(self)
    }

    /// Presents this certificate chain and key (PEM) to the nodes: mutual TLS.
    pub fn client_cert_pem(mut self, chain: &[u8], key: &[u8]) -> Result<TlsConfig> {
        let chain = CertificateDer::pem_slice_iter(chain)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| config_error(format!("bad client certificate: {e}")))?;
        if chain.is_empty() {
            return Err(config_error("no certificate in the client chain PEM"));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| config_error(format!("bad client key: {e}")))?;
        self.client_auth = Some((chain, Arc::new(key)));
        Ok(self)
    }

    /// The name to verify (and send as SNI) for every node, for clusters whose nodes
    /// announce IP addresses while their certificates name a host. Without it the node's
    /// announced host name, or its IP address, is verified.
    pub fn server_name(mut self, name: impl Into<String>) -> TlsConfig {
        self.server_name = Some(name.into());
        self
    }

    /// Accepts any certificate without verification. **For tests only**: it gives up
    /// all protection against an active attacker.
    pub fn danger_accept_invalid_certs(mut self) -> TlsConfig {
        self.accept_invalid_certs = true;
        self
    }

    /// The rustls configuration shared by every connection of a client.
    pub(crate) fn build(&self) -> Result<Arc<ClientConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let builder = if self.accept_invalid_certs {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
        } else {
            if self.roots.is_empty() {
                return Err(config_error(
                    "no trusted root: add the cluster's CA with TlsConfig::add_root_pem",
                ));
            }
            let mut roots = RootCertStore::empty();
            for root in &self.roots {
                roots
                    .add(root.clone())
                    .map_err(|e| config_error(format!("unusable root certificate: {e}")))?;
            }
            builder.with_root_certificates(roots)
        };
        let config = match &self.client_auth {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| config_error(format!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }

    /// The name verified for a node announced as `host`.
    pub(crate) fn name_for(&self, host: &str) -> Result<ServerName<'static>> {
        let name = self.server_name.as_deref().unwrap_or(host);
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(ServerName::IpAddress(ip.into()));
        }
        ServerName::try_from(name.to_string())
            .map_err(|_| config_error(format!("{name:?} is not a valid server name")))
    }
}

/// The verifier behind [`TlsConfig::danger_accept_invalid_certs`]: signatures are still
/// checked (so the handshake is a real one), certificates are not.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_error(e: rustls::Error) -> Error {
    Error::new(ErrorKind::Tls, e.to_string())
}

/// One connection's TLS state: buffers in, buffers out.
pub(crate) struct TlsLayer {
    conn: ClientConnection,
}

impl fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsLayer")
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

impl TlsLayer {
    /// A client session for `name`.
    pub(crate) fn new(config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<TlsLayer> {
        Ok(TlsLayer {
            conn: ClientConnection::new(config, name).map_err(tls_error)?,
        })
    }

    /// True until the handshake is complete.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True when records are waiting to be sent (handshake messages, alerts).
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Appends every record waiting to be sent to `out`.
    pub(crate) fn take_output(&mut self, out: &mut BytesMut) -> Result<()> {
        let mut writer = out.writer();
        while self.conn.wants_write() {
            self.conn
                .write_tls(&mut writer)
                .map_err(|e| Error::io("TLS output", e))?;
        }
        Ok(())
    }

    /// Encrypts `plain` and appends the records to `out`. rustls takes only so much
    /// plaintext before its records are drained (64 KiB by default), so a large write is
    /// sealed piece by piece.
    pub(crate) fn seal(&mut self, mut plain: &[u8], out: &mut BytesMut) -> Result<()> {
        while !plain.is_empty() {
            let n = self
                .conn
                .writer()
                .write(plain)
                .map_err(|e| Error::io("TLS seal", e))?;
            self.take_output(out)?;
            if n == 0 {
                return Err(Error::new(
                    ErrorKind::Tls,
                    "the TLS session takes no more data (closed for sending)",
                ));
            }
            plain = &plain[n..];
        }
        self.take_output(out)
    }

    /// Feeds received ciphertext; appends the plaintext it completes to `plain`. Returns
    /// true when the peer closed the TLS session (`close_notify`).
    pub(crate) fn open(&mut self, mut cipher: &[u8], plain: &mut BytesMut) -> Result<bool> {
        let mut closed = false;
        while !cipher.is_empty() {
            let n = self
                .conn
                .read_tls(&mut cipher)
                .map_err(|e| Error::io("TLS input", e))?;
            let state = self.conn.process_new_packets().map_err(tls_error)?;
            let available = state.plaintext_bytes_to_read();
            if available > 0 {
                plain.reserve(available);
                let mut reader = self.conn.reader();
                let mut chunk = vec![0u8; available];
                reader
                    .read_exact(&mut chunk)
                    .map_err(|e| Error::io("TLS plaintext", e))?;
                plain.extend_from_slice(&chunk);
            }
            closed |= state.peer_has_closed();
            if n == 0 {
                break;
            }
        }
        Ok(closed)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rustls::{ServerConfig, ServerConnection};

    /// A CA, a server certificate for 127.0.0.1 and `node.test`, and a client
    /// certificate, all signed by the CA.
    pub(crate) struct Pki {
        pub(crate) ca_pem: String,
        server: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
        client_pem: (String, String),
    }

    pub(crate) fn pki() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issue = |names: Vec<String>| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &ca, &ca_key)
                .unwrap();
            (cert, key)
        };
        let (server_cert, server_key) = issue(vec!["127.0.0.1".into(), "node.test".into()]);
        let (client_cert, client_key) = issue(vec!["client.test".into()]);
        Pki {
            ca_pem: ca.pem(),
            server: (
                vec![server_cert.der().clone()],
                PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
            ),
            client_pem: (client_cert.pem(), client_key.serialize_pem()),
        }
    }

    pub(crate) fn server(pki: &Pki) -> ServerConnection {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.server.0.clone(), pki.server.1.clone_key())
            .unwrap();
        ServerConnection::new(Arc::new(config)).unwrap()
    }

    /// Runs the handshake between the layer and an in-memory server, moving bytes both
    /// ways as a transport would.
    fn handshake(client: &mut TlsLayer, server: &mut ServerConnection) -> Result<()> {
        for _ in 0..20 {
            let mut out = BytesMut::new();
            client.take_output(&mut out)?;
            let mut slice = &out[..];
            while !slice.is_empty() {
                server.read_tls(&mut slice).unwrap();
            }
            if let Err(e) = server.process_new_packets() {
                // Let the alert reach the client, which reports it.
                let mut alert = Vec::new();
                let _ = server.write_tls(&mut alert);
                client.open(&alert, &mut BytesMut::new())?;
                return Err(tls_error(e));
            }
            let mut back = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut back).unwrap();
            }
            client.open(&back, &mut BytesMut::new())?;
            if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() {
                return Ok(());
            }
        }
        panic!("handshake did not finish")
    }

    #[test]
    fn records_round_trip_over_buffers_split_anywhere() {
        let pki = pki();
        let config = TlsConfig::new()
            .add_root_pem(pki.ca_pem.as_bytes())
            .unwrap();
        let mut client = TlsLayer::new(
            config.build().unwrap(),
            config.name_for("127.0.0.1").unwrap(),
        )
        .unwrap();
        let mut server = server(&pki);
        handshake(&mut client, &mut server).unwrap();

        // Client to server: a sealed command arrives intact.
        let mut records = BytesMut::new();
        client.seal(b"*1\r\n$4\r\nPING\r\n", &mut records).unwrap();
        let mut slice = &records[..];
        while !slice.is_empty() {
            server.read_tls(&mut slice).unwrap();
        }
        server.process_new_packets().unwrap();
        let mut got = Vec::new();
        let _ = server.reader().read_to_end(&mut got);
        assert_eq!(got, b"*1\r\n$4\r\nPING\r\n");

        // A write larger than rustls's plaintext buffer is sealed whole.
        let large = vec![b'y'; 1 << 20];
        let mut records = BytesMut::new();
        client.seal(&large, &mut records).unwrap();
        let mut slice = &records[..];
        let mut got = Vec::new();
        while !slice.is_empty() {
            server.read_tls(&mut slice).unwrap();
            server.process_new_packets().unwrap();
            let _ = server.reader().read_to_end(&mut got);
        }
        assert_eq!(got.len(), large.len());

        // Server to client, fed one byte at a time: the plaintext comes out whole.
        let reply = vec![b'x'; 40_000];
        server.writer().write_all(&reply).unwrap();
        let mut wire = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut wire).unwrap();
        }
        let mut plain = BytesMut::new();
        for byte in wire.chunks(1) {
            assert!(!client.open(byte, &mut plain).unwrap());
        }
        assert_eq!(&plain[..], &reply[..]);

        // close_notify is reported.
        server.send_close_notify();
        let mut wire = Vec::new();
        server.write_tls(&mut wire).unwrap();
        assert!(client.open(&wire, &mut plain).unwrap());
    }

    #[test]
    fn a_wrong_ca_or_name_is_a_typed_tls_error() {
        let pki = pki();
        let other = pki_other_ca();
        let wrong_ca = TlsConfig::new().add_root_pem(other.as_bytes()).unwrap();
        let mut client = TlsLayer::new(
            wrong_ca.build().unwrap(),
            wrong_ca.name_for("127.0.0.1").unwrap(),
        )
        .unwrap();
        let e = handshake(&mut client, &mut server(&pki)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Tls, "{e}");

        let right_ca = TlsConfig::new()
            .add_root_pem(pki.ca_pem.as_bytes())
            .unwrap();
        let mut client = TlsLayer::new(
            right_ca.build().unwrap(),
            right_ca.name_for("other.test").unwrap(),
        )
        .unwrap();
        let e = handshake(&mut client, &mut server(&pki)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Tls, "{e}");

        // A configured name replaces the announced IP; the insecure option skips checks.
        let named = right_ca.clone().server_name("node.test");
        let mut client =
            TlsLayer::new(named.build().unwrap(), named.name_for("10.9.9.9").unwrap()).unwrap();
        handshake(&mut client, &mut server(&pki)).unwrap();
        let insecure = TlsConfig::new().danger_accept_invalid_certs();
        let mut client = TlsLayer::new(
            insecure.build().unwrap(),
            insecure.name_for("x.test").unwrap(),
        )
        .unwrap();
        handshake(&mut client, &mut server(&pki)).unwrap();
    }

    #[test]
    fn configuration_errors_are_typed() {
        assert_eq!(
            TlsConfig::new().build().unwrap_err().kind(),
            ErrorKind::Config
        );
        assert_eq!(
            TlsConfig::new()
                .add_root_pem(b"not pem")
                .unwrap_err()
                .kind(),
            ErrorKind::Config
        );
        assert_eq!(
            TlsConfig::new()
                .client_cert_pem(b"", b"")
                .unwrap_err()
                .kind(),
            ErrorKind::Config
        );
        let pki = pki();
        let mtls = TlsConfig::new()
            .add_root_pem(pki.ca_pem.as_bytes())
            .unwrap()
            .client_cert_pem(pki.client_pem.0.as_bytes(), pki.client_pem.1.as_bytes())
            .unwrap();
        assert!(mtls.build().is_ok());
        assert!(!format!("{mtls:?}").contains("PRIVATE"));
        assert_eq!(
            TlsConfig::new().name_for("bad name!").unwrap_err().kind(),
            ErrorKind::Config
        );
    }

    fn pki_other_ca() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }
}
