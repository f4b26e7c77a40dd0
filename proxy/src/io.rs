//! A client connection's IO with a write-progress deadline: when a client stops reading and a
//! write stays blocked longer than the deadline, the write fails and hyper closes the connection
//! (nginx's `send_timeout`). The timer is armed only while a write is blocked. That close is an
//! abortive one (`SO_LINGER` 0: a reset): a peer that stopped reading would otherwise keep the
//! socket in FIN-WAIT-1 with the unsent response queued in the kernel. And a connection to
//! main's IO ([`MainIo`]), which keeps main's early answer readable when main resets the
//! connection under a request body.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A connection that can be closed with a reset instead of an orderly FIN.
pub trait Abort {
    /// Makes the coming close a reset, dropping whatever is queued unsent.
    fn abort_on_close(&self);
}

impl Abort for tokio::net::TcpStream {
    fn abort_on_close(&self) {
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
    }
}

impl Abort for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn abort_on_close(&self) {
        self.get_ref().0.abort_on_close();
    }
}

/// A connection that can tell when it has something to read without being read (so that an idle
/// connection waits for its next request without a buffer).
pub trait ReadReady {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

/// TLS may hold decrypted bytes that the socket no longer shows: always worth a read.
impl ReadReady for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl<T: ReadReady> ReadReady for ProgressIo<T> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_read_ready(cx)
    }
}

#[derive(Debug)]
pub struct ProgressIo<T> {
    inner: T,
    timeout: Duration,
    blocked: Option<Pin<Box<Sleep>>>,
}

impl<T: Abort> ProgressIo<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        Self { inner, timeout, blocked: None }
    }

    /// Progress clears the deadline; a blocked write starts (or checks) it.
    fn track<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match poll {
            Poll::Ready(r) => {
                self.blocked = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self.blocked.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.inner.abort_on_close();
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading the response")))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProgressIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin + Abort> AsyncWrite for ProgressIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.track(cx, poll)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.track(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.track(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A connection to main that keeps an early answer readable. When main answers before it has
/// read the whole request body and closes (a 413, a 501), its kernel resets the connection, and
/// the next write of the body fails while the answer is still unread in this socket; hyper
/// would report the failed write (a 502) instead of main's answer. Here such a write, once some
/// of the request has gone out since main last sent anything, is taken as written and the rest
/// of the body discarded, so that hyper reads main's answer; the connection is marked `broken`
/// and never pooled again. A write that fails before anything went out (a pooled connection
/// main closed while idle) fails as it is, so hyper hands the request back to be sent again.
#[derive(Debug)]
pub struct MainIo {
    inner: tokio::net::TcpStream,
    broken: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Bytes went out since main last sent any.
    wrote: bool,
}

impl MainIo {
    pub fn new(inner: tokio::net::TcpStream, broken: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        Self { inner, broken, wrote: false }
    }

    /// The socket, for a look without reading through.
    pub fn tcp(&self) -> &tokio::net::TcpStream {
        &self.inner
    }

    fn is_broken(&self) -> bool {
        self.broken.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn written(&mut self, poll: Poll<io::Result<usize>>, len: usize) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(Ok(n)) => {
                self.wrote |= n > 0;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) if self.wrote && matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                self.broken.store(true, std::sync::atomic::Ordering::Relaxed);
                Poll::Ready(Ok(len))
            }
            other => other,
        }
    }
}

impl AsyncRead for MainIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.wrote = false;
        }
        poll
    }
}

impl AsyncWrite for MainIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.is_broken() {
            return Poll::Ready(Ok(buf.len()));
        }
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.written(poll, buf.len())
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = bufs.iter().map(|b| b.len()).sum();
        if this.is_broken() {
            return Poll::Ready(Ok(len));
        }
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.written(poll, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.is_broken() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.is_broken() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// A connection whose first bytes were read already: they are read again first.
#[derive(Debug)]
pub struct Rewind<T> {
    read: bytes::Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub fn new(read: bytes::Bytes, inner: T) -> Self {
        Self { read, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
