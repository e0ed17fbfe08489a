//! TLS's place in a build without the `tls` feature: `TlsConfig` exists (so a
//! `Config` is the same type in every build), but nothing can be made of it. Adding a
//! certificate, and connecting with `Config::tls` or to a `rediss://` seed, is an error
//! of kind [`ErrorKind::Config`] that names the feature. `Rustls` and `TlsLayer` are
//! uninhabited: no value of them can exist, so the code that carries TLS records has
//! nothing to do.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::BytesMut;

use crate::core::error::{Error, ErrorKind, Result};

fn not_built() -> Error {
    Error::new(
        ErrorKind::Config,
        "TLS is not in this build (the `tls` feature)",
    )
}

/// TLS settings for every connection of a client: in this build, none can be used.
///
/// ```
/// use redis_cluster_uring::{tls::TlsConfig, ErrorKind};
/// # if cfg!(not(feature = "tls")) {
/// let e = TlsConfig::new().add_root_pem(b"...").unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::Config);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    _private: (),
}

impl TlsConfig {
    /// A configuration that cannot connect in this build.
    pub fn new() -> TlsConfig {
        TlsConfig::default()
    }

    /// Refused: TLS is not in this build.
    pub fn add_root_pem(self, _pem: &[u8]) -> Result<TlsConfig> {
        Err(not_built())
    }

    /// Refused: TLS is not in this build.
    pub fn client_cert_pem(self, _chain: &[u8], _key: &[u8]) -> Result<TlsConfig> {
        Err(not_built())
    }

    /// Kept, and unused: TLS is not in this build.
    pub fn server_name(self, _name: impl Into<String>) -> TlsConfig {
        self
    }

    /// Kept, and unused: TLS is not in this build.
    pub fn danger_accept_invalid_certs(self) -> TlsConfig {
        self
    }

    /// Refused: what a client's connect says when asked for TLS.
    pub(crate) fn build(&self) -> Result<Arc<Rustls>> {
        Err(not_built())
    }

    /// Refused (never reached: [`TlsConfig::build`] refuses first).
    pub(crate) fn name_for(&self, _host: &str) -> Result<Infallible> {
        Err(not_built())
    }
}

/// No rustls configuration exists in this build.
#[derive(Debug)]
pub(crate) enum Rustls {}

/// No TLS connection exists in this build.
#[derive(Debug)]
pub(crate) enum TlsLayer {}

impl TlsLayer {
    pub(crate) fn new(config: Arc<Rustls>, _name: Infallible) -> Result<TlsLayer> {
        match *config {}
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        match *self {}
    }

    pub(crate) fn wants_write(&self) -> bool {
        match *self {}
    }

    pub(crate) fn take_output(&mut self, _out: &mut BytesMut) -> Result<()> {
        match *self {}
    }

    pub(crate) fn seal(&mut self, _plain: &[u8], _out: &mut BytesMut) -> Result<()> {
        match *self {}
    }

    pub(crate) fn open(&mut self, _cipher: &[u8], _plain: &mut BytesMut) -> Result<bool> {
        match *self {}
    }
}
