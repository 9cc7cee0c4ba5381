//! Listening sockets, the same for every server of ours (the proxy, the
//! tunnel, the metrics listener, the CA API): one bind with our backlog,
//! one accept step.
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// The listen backlog asked for; the kernel caps it at
/// `net.core.somaxconn` (4096 by default since Linux 5.4). std's 128 let a
/// burst of silent connections from one client fill the accept queue
/// between two accept rounds, and the kernel then dropped honest clients'
/// SYNs, which retry only after 1 s (21,091 drops in 15 s under
/// bench/starvation.sh's one-address flood).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listening socket with [`LISTEN_BACKLOG`] (and SO_REUSEADDR, as std does).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The next connection on `listener`, or `None` once `shutdown` resolves.
/// A failed accept (EMFILE and friends) is logged and retried after 20 ms,
/// instead of spinning.
pub async fn accept<F: Future>(listener: &TcpListener, mut shutdown: Pin<&mut F>) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => return Some(pair),
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = shutdown.as_mut() => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_with_our_backlog_accepts_and_stops_at_shutdown() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let never = std::future::pending::<()>();
        tokio::pin!(never);
        let (_, peer) = accept(&listener, never.as_mut()).await.expect("a connection");
        assert_eq!(peer, client.await.unwrap().local_addr().unwrap());
        let now = std::future::ready(());
        tokio::pin!(now);
        assert!(accept(&listener, now.as_mut()).await.is_none(), "shutdown wins over an empty queue");
        // The same address again while the first is listening: refused, not shared.
        assert!(bind(addr).is_err());
    }
}
