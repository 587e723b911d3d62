//! Accepting connections without letting idle or silent peers hold them: every accepted socket
//! must start speaking (the HTTP/2 client preface in plaintext, a TLS record under TLS) within
//! the handshake timeout, at most `max_pending_handshakes` sockets wait for that at once, and a
//! failed `accept` (no file descriptor left) backs off instead of spinning.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

/// What every HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// The first pause after a failed accept (doubling up to 1 s).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long to wait before peeking again at a preface that has arrived only in part.
const PARTIAL_PREFACE_WAIT: Duration = Duration::from_millis(5);

/// How a connection must start, and where failed accepts are counted.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    pub(crate) tls: bool,
    pub(crate) timeout: Duration,
    pub(crate) max_pending: usize,
    pub(crate) accept_failures: Arc<AtomicU64>,
}

/// The connections that started speaking, for tonic's `serve_with_incoming`.
pub(crate) fn incoming(listener: TcpListener, gate: Gate) -> ReceiverStream<std::io::Result<TcpStream>> {
    // Bounded: while the server is busy, accepting waits (the kernel's backlog holds the rest).
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, gate, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(listener: TcpListener, gate: Gate, tx: mpsc::Sender<std::io::Result<TcpStream>>) {
    let pending = Arc::new(Semaphore::new(gate.max_pending.max(1)));
    let mut backoff = ACCEPT_BACKOFF;
    loop {
        let stream = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    gate.accept_failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!("kasmina-server: accept failed ({e}); retrying in {} ms", backoff.as_millis());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        backoff = ACCEPT_BACKOFF;
        // Too many silent sockets already: this one is closed at once (dropped).
        let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else { continue };
        let (tx, gate) = (tx.clone(), gate.clone());
        tokio::spawn(async move {
            let started = tokio::time::timeout(gate.timeout, starts_speaking(&stream, gate.tls)).await;
            drop(permit);
            if matches!(started, Ok(Ok(true))) {
                let _ = tx.send(Ok(stream)).await;
            }
            // Otherwise the socket is dropped: closed.
        });
    }
}

/// Whether the peer's first bytes are what the transport expects (peeked, not consumed).
async fn starts_speaking(stream: &TcpStream, tls: bool) -> std::io::Result<bool> {
    let expected: &[u8] = if tls { std::slice::from_ref(&TLS_HANDSHAKE) } else { PREFACE };
    let mut buf = [0_u8; PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf[..expected.len()]).await?;
        if n == 0 {
            return Ok(false);
        }
        if buf[..n] != expected[..n] {
            return Ok(false);
        }
        if n == expected.len() {
            return Ok(true);
        }
        tokio::time::sleep(PARTIAL_PREFACE_WAIT).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    async fn listener() -> (TcpListener, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        (listener, addr)
    }

    fn gate(tls: bool) -> Gate {
        Gate { tls, timeout: Duration::from_millis(200), max_pending: 4, accept_failures: Arc::default() }
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_timeout() {
        let (l, addr) = listener().await;
        let mut rx = incoming(l, gate(false));
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let mut byte = [0_u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the server closes a silent socket: {read:?}");
        assert!(tokio::time::timeout(Duration::from_millis(50), rx.next()).await.is_err(), "nothing handed on");
    }

    #[tokio::test]
    async fn a_preface_in_two_parts_is_handed_on_and_garbage_is_not() {
        let (l, addr) = listener().await;
        let mut rx = incoming(l, gate(false));
        let mut good = TcpStream::connect(addr).await.expect("connect");
        good.write_all(&PREFACE[..10]).await.expect("write");
        tokio::time::sleep(Duration::from_millis(20)).await;
        good.write_all(&PREFACE[10..]).await.expect("write");
        let handed = tokio::time::timeout(Duration::from_secs(5), rx.next()).await.expect("in time");
        assert!(matches!(handed, Some(Ok(_))));

        let mut bad = TcpStream::connect(addr).await.expect("connect");
        bad.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
        let mut byte = [0_u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), bad.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "an HTTP/1 request is closed: {read:?}");
    }

    #[tokio::test]
    async fn tls_connections_must_start_with_a_handshake_record() {
        let (l, addr) = listener().await;
        let mut rx = incoming(l, gate(true));
        let mut good = TcpStream::connect(addr).await.expect("connect");
        good.write_all(&[TLS_HANDSHAKE, 3, 1]).await.expect("write");
        let handed = tokio::time::timeout(Duration::from_secs(5), rx.next()).await.expect("in time");
        assert!(matches!(handed, Some(Ok(_))));
        let mut plain = TcpStream::connect(addr).await.expect("connect");
        plain.write_all(PREFACE).await.expect("write");
        let mut byte = [0_u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), plain.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "plaintext HTTP/2 on a TLS port is closed: {read:?}");
    }

    #[tokio::test]
    async fn silent_sockets_beyond_the_bound_are_closed_at_once() {
        let (l, addr) = listener().await;
        let gate = Gate { max_pending: 2, timeout: Duration::from_secs(60), ..gate(false) };
        let _rx = incoming(l, gate);
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(TcpStream::connect(addr).await.expect("connect"));
        }
        // Let the two take the pending slots.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(addr).await.expect("connect");
        let mut byte = [0_u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the third silent socket is closed at once: {read:?}");
        // The first two are still open (the timeout is a minute).
        let still = tokio::time::timeout(Duration::from_millis(100), held[0].read(&mut byte)).await;
        assert!(still.is_err(), "held sockets stay open until their timeout");
    }

    use tokio_stream::StreamExt as _;
}
