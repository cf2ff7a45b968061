//! The accept loop: HTTP/1.1 connections served by hyper, bounded before they are upgraded.
//!
//! A connection must send its complete request head within `header_read_timeout` (hyper's timer;
//! also for each further request on a keep-alive connection), else it is closed. And at most
//! `max_pending_heads` connections may be waiting for their first complete head at once: the
//! connection beyond that closes the one that has waited longest. A slow-head attack (slowloris:
//! many connections trickling a header line every few seconds) therefore holds neither file
//! descriptors nor tasks beyond a bound, and a client that sends its head promptly is served
//! while the attack goes on. Once a head is complete the connection leaves the count: a WebSocket
//! upgrade is then bounded by the protocol's own limits (connections per user, idle timeout).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tower_service::Service as _;

use crate::state::AppState;

/// Connections waiting for their first complete request head, oldest first.
pub(crate) struct PendingHeads {
    cap: usize,
    inner: Mutex<Pending>,
}

struct Pending {
    next: u64,
    /// By admission order; sending on a sender cuts that connection.
    open: BTreeMap<u64, oneshot::Sender<()>>,
}

impl PendingHeads {
    pub(crate) fn new(cap: usize) -> Arc<PendingHeads> {
        Arc::new(PendingHeads {
            cap: cap.max(1),
            inner: Mutex::new(Pending {
                next: 0,
                open: BTreeMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new connection in; beyond the cap the longest-waiting one is told to close.
    /// Returns the connection's slot and the receiver that fires (`Ok`) when it is cut.
    pub(crate) fn admit(self: &Arc<Self>) -> (HeadSlot, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut p = self.lock();
        let id = p.next;
        p.next += 1;
        p.open.insert(id, tx);
        while p.open.len() > self.cap {
            if let Some((old, cut)) = p.open.pop_first() {
                tracing::debug!(
                    connection = old,
                    "too many unfinished request heads: closing the oldest"
                );
                let _ = cut.send(());
            }
        }
        drop(p);
        (
            HeadSlot {
                id,
                heads: self.clone(),
            },
            rx,
        )
    }
}

/// One connection's place in [`PendingHeads`]; it leaves when the head is complete or the
/// connection ends. Leaving drops the sender, which its receiver sees as `Err` (not a cut).
pub(crate) struct HeadSlot {
    id: u64,
    heads: Arc<PendingHeads>,
}

impl HeadSlot {
    fn complete(&self) {
        self.heads.lock().open.remove(&self.id);
    }
}

impl Drop for HeadSlot {
    fn drop(&mut self) {
        self.complete();
    }
}

/// Accepts until shutdown, then waits for the HTTP connections still being served (upgraded
/// sockets are not among them: the socket tasks close them themselves).
pub(crate) async fn serve(listener: TcpListener, app: Router, state: Arc<AppState>, reset: bool) {
    let conns = Conns {
        pending: PendingHeads::new(state.config.max_pending_heads),
        header_read_timeout: state.config.header_read_timeout,
        app,
        state: state.clone(),
        reset,
    };
    let shutdown = stopped(state.shutdown.subscribe());
    tokio::pin!(shutdown);
    // Every connection task holds a receiver; `closed()` resolves when the last one is gone.
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let tcp = tokio::select! {
            // A connection that is ready is taken before the shutdown is noticed.
            biased;
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: the condition passes on its own, and
                    // retrying at once would spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        conns.spawn(tcp, close_rx.clone());
    }
    // Connections that reached the server before the shutdown began (queued in the kernel, not
    // yet seen by the runtime) are still served: an upgrade among them gets 503 `SHUTTING_DOWN`
    // rather than a reset. The listener is non-blocking, so this ends at the first empty accept.
    if let Ok(std_listener) = listener.into_std() {
        while let Ok((tcp, _)) = std_listener.accept() {
            let tcp = tcp
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(tcp));
            if let Ok(tcp) = tcp {
                conns.spawn(tcp, close_rx.clone());
            }
        }
    }
    drop(close_rx);
    close_tx.closed().await;
}

/// What every connection task needs.
struct Conns {
    pending: Arc<PendingHeads>,
    header_read_timeout: Duration,
    app: Router,
    state: Arc<AppState>,
    reset: bool,
}

impl Conns {
    /// Serves one accepted connection on its own task; `close_rx` is dropped when it ends.
    fn spawn(&self, tcp: tokio::net::TcpStream, close_rx: watch::Receiver<()>) {
        // Without TCP_NODELAY, Nagle holds each small event frame until the client's delayed ACK
        // (~40 ms on Linux): a zero-pace turn took ~45 ms to its first token instead of ~0.1 ms.
        let _ = tcp.set_nodelay(true);
        if self.reset {
            // `tcp-reset`: dropping the socket sends RST instead of FIN.
            let _ = tcp.set_zero_linger();
        }
        let (slot, mut cut) = self.pending.admit();
        let router = self.app.clone();
        let conn_shutdown = stopped(self.state.shutdown.subscribe());
        let header_read_timeout = self.header_read_timeout;
        tokio::spawn(async move {
            let slot = Arc::new(slot);
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                // hyper calls the service once the head is parsed: the connection is no longer
                // waiting for one.
                slot.complete();
                let mut router = router.clone();
                async move { router.call(req.map(axum::body::Body::new)).await }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let conn = builder
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::pin!(conn_shutdown);
            let mut head_done = false;
            let mut draining = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!("connection ended: {e}");
                        }
                        break;
                    }
                    r = &mut cut, if !head_done => match r {
                        // Cut to make room: dropping the connection closes the socket.
                        Ok(()) => break,
                        // The head is complete (the slot left the count).
                        Err(_) => head_done = true,
                    },
                    // Only once the head is in: hyper closes a connection at once if it has not
                    // read anything yet, and a request already on its way (an upgrade sent just
                    // before the shutdown) must get its answer, 503 `SHUTTING_DOWN`. A head that
                    // never completes is still cut by the header-read timeout.
                    _ = &mut conn_shutdown, if !draining && head_done => {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(close_rx);
        });
    }
}

/// Resolves once the server is shutting down.
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
