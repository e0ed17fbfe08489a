//! The fallback engine: plain tokio sockets (epoll readiness), for kernels or sandboxes that
//! refuse io_uring. Same connections, same batching; only the system calls differ.

use std::io;
use std::net::{Shutdown, SocketAddr};

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::{ByteStream, SocketOptions, Transport};

/// A tokio TCP stream used through `&self` (readiness + `try_*`), so the writer and the
/// reader can share it like the io_uring stream.
#[derive(Debug)]
pub(crate) struct EpollStream(TcpStream);

impl Transport for EpollStream {
    async fn connect(addr: SocketAddr, options: &SocketOptions) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        super::configure(&stream, options)?;
        Ok(EpollStream(stream))
    }
}

impl ByteStream for EpollStream {
    async fn write_all(&self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let mut written = 0;
        while written < buf.len() {
            match self.0.try_write(&buf[written..]) {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.0.writable().await {
                        return (Err(e), buf);
                    }
                }
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    async fn read(&self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        loop {
            // `try_read_buf` appends into the spare capacity, like the io_uring read.
            match self.0.try_read_buf(&mut buf) {
                Ok(n) => return (Ok(n), buf),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.0.readable().await {
                        return (Err(e), buf);
                    }
                }
                Err(e) => return (Err(e), buf),
            }
        }
    }

    fn shutdown(&self) {
        let _ = socket2::SockRef::from(&self.0).shutdown(Shutdown::Both);
    }
}
