//! TLS over any engine's stream: the sans-IO [`TlsLayer`] fed by the engine's reads and
//! writes. Plaintext in and out, so the connection above it is the same code with or
//! without TLS.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use bytes::BytesMut;
use tokio::sync::Notify;

use super::ByteStream;
use crate::core::error::{Error, ErrorKind};
use crate::core::tls::TlsLayer;

/// Room reserved for each read of ciphertext.
const CIPHER_READ: usize = 16 * 1024 + 256;

/// A TLS session over the stream `T`.
pub(crate) struct TlsStream<T> {
    inner: T,
    layer: RefCell<TlsLayer>,
    /// Plaintext decrypted but not yet handed to the reader.
    plain: RefCell<BytesMut>,
    /// The ciphertext buffer, lent to the engine during a read (the kernel may write
    /// into it after the call, so it is owned, not borrowed).
    cipher: Cell<Option<BytesMut>>,
    /// Records produced while reading (alerts, key updates), for the writer to send:
    /// only the writer task writes to the socket, so nothing interleaves.
    pending: RefCell<BytesMut>,
    wake_writer: Rc<Notify>,
}

impl<T> std::fmt::Debug for TlsStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsStream")
    }
}

fn other(e: Error) -> io::Error {
    io::Error::other(e.to_string())
}

impl<T: ByteStream> TlsStream<T> {
    /// Runs the TLS handshake over `inner` (nothing else uses it yet).
    pub(crate) async fn establish(
        inner: T,
        mut layer: TlsLayer,
        wake_writer: Rc<Notify>,
    ) -> Result<TlsStream<T>, Error> {
        let mut cipher = BytesMut::with_capacity(CIPHER_READ);
        let mut plain = BytesMut::new();
        loop {
            let mut out = BytesMut::new();
            layer.take_output(&mut out)?;
            if !out.is_empty() {
                let (res, _) = inner.write_all(out).await;
                res.map_err(|e| Error::io("TLS handshake write", e))?;
            }
            if !layer.is_handshaking() {
                break;
            }
            cipher.clear();
            cipher.reserve(CIPHER_READ);
            let (res, returned) = inner.read(cipher).await;
            cipher = returned;
            match res {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::Tls,
                        "the server closed the connection during the TLS handshake",
                    ))
                }
                Ok(_) => {
                    layer.open(&cipher, &mut plain)?;
                }
                Err(e) => return Err(Error::io("TLS handshake read", e)),
            }
        }
        cipher.clear();
        Ok(TlsStream {
            inner,
            layer: RefCell::new(layer),
            plain: RefCell::new(plain),
            cipher: Cell::new(Some(cipher)),
            pending: RefCell::new(BytesMut::new()),
            wake_writer,
        })
    }
}

impl<T: ByteStream> ByteStream for TlsStream<T> {
    async fn write_all(&self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let mut out = std::mem::take(&mut *self.pending.borrow_mut());
        if let Err(e) = self.layer.borrow_mut().seal(&buf, &mut out) {
            return (Err(other(e)), buf);
        }
        let (res, _) = self.inner.write_all(out).await;
        (res, buf)
    }

    async fn read(&self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        loop {
            {
                let mut plain = self.plain.borrow_mut();
                if !plain.is_empty() {
                    let n = plain.len();
                    buf.extend_from_slice(&plain);
                    plain.clear();
                    return (Ok(n), buf);
                }
            }
            let mut cipher = self.cipher.take().unwrap_or_default();
            cipher.clear();
            cipher.reserve(CIPHER_READ);
            let (res, cipher) = self.inner.read(cipher).await;
            let opened = match res {
                Ok(0) => {
                    self.cipher.set(Some(cipher));
                    return (Ok(0), buf);
                }
                Ok(_) => {
                    let mut layer = self.layer.borrow_mut();
                    let opened = layer.open(&cipher, &mut self.plain.borrow_mut());
                    if layer.wants_write() {
                        if let Err(e) = layer.take_output(&mut self.pending.borrow_mut()) {
                            return (Err(other(e)), buf);
                        }
                        self.wake_writer.notify_one();
                    }
                    opened
                }
                Err(e) => {
                    self.cipher.set(Some(cipher));
                    return (Err(e), buf);
                }
            };
            self.cipher.set(Some(cipher));
            match opened {
                Err(e) => return (Err(other(e)), buf),
                // The peer ended the session: end of stream once its plaintext is out.
                Ok(true) if self.plain.borrow().is_empty() => return (Ok(0), buf),
                Ok(_) => {}
            }
        }
    }

    fn shutdown(&self) {
        self.inner.shutdown()
    }

    fn has_pending_output(&self) -> bool {
        !self.pending.borrow().is_empty()
    }
}
