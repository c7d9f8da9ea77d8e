//! The accept loops: MQTT over TCP and over TLS share one loop that bounds
//! connections and backs off on accept errors; they differ only in what a
//! connection's task does first.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};

use crate::auth::Transport;
use crate::{MqttContext, connection};

/// What the accept loop knows about a new connection.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    loopback_listener: bool,
    accepted_at: Instant,
    /// Counts the connection as active until the task ends (or is dropped).
    _active: ActiveGuard,
}

/// One active connection in the accept loop's count; released on drop, so
/// the connection's own future carries it and no wrapper future is needed.
struct ActiveGuard(Arc<AtomicUsize>);

impl ActiveGuard {
    fn new(active: &Arc<AtomicUsize>) -> ActiveGuard {
        active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(active.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts on `listener` until `shutdown` resolves, running `handle` in a
/// task per connection. Connections beyond `connections_max` are closed
/// at once and counted.
///
/// The future `handle` returns is spawned as it is: wrapping it in another
/// `async` block that awaits it would store it twice in the task (once as
/// the captured value, once as the awaited one), which cost 2.8 KiB per
/// idle connection.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    ctx: Arc<MqttContext>,
    shutdown: impl Future<Output = ()>,
    handle: F,
) where
    F: Fn(Accepted, Arc<MqttContext>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let loopback_listener = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let active = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = &mut shutdown => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if active.load(Ordering::Relaxed) >= ctx.cfg.connections_max {
            tern_hub::Stats::add(&ctx.hub.stats.connects_refused, 1);
            tracing::warn!(%peer, max = ctx.cfg.connections_max, "connection limit reached; closing");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let accepted = Accepted {
            stream,
            peer,
            loopback_listener,
            accepted_at: Instant::now(),
            _active: ActiveGuard::new(&active),
        };
        tokio::spawn(handle(accepted, ctx.clone()));
    }
}

/// The task of one MQTT-over-TCP connection.
fn tcp_connection(a: Accepted, ctx: Arc<MqttContext>) -> impl Future<Output = ()> + Send + 'static {
    let Accepted {
        stream,
        peer,
        loopback_listener,
        accepted_at,
        _active,
    } = a;
    let mut transport = Transport::tcp(peer, loopback_listener);
    transport.accepted_at = accepted_at;
    connection::serve_holding(stream, transport, ctx, _active)
}

/// Accepts MQTT connections on `listener` until `shutdown` resolves.
pub async fn run(listener: TcpListener, ctx: Arc<MqttContext>, shutdown: impl Future<Output = ()>) {
    accept_loop(listener, ctx, shutdown, tcp_connection).await
}

/// Accepts MQTT-over-TLS connections on `listener` until `shutdown`
/// resolves. The TLS handshake runs in the connection's task, bounded by
/// the CONNECT timeout (which counts from the accept), so a slow handshake
/// never holds up the accept loop.
pub async fn run_tls(
    listener: TcpListener,
    ctx: Arc<MqttContext>,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    accept_loop(listener, ctx, shutdown, move |a, ctx| {
        let acceptor = acceptor.clone();
        async move {
            let _active = a._active;
            let deadline = a.accepted_at + ctx.cfg.connect_timeout;
            match tokio::time::timeout_at(deadline.into(), acceptor.accept(a.stream)).await {
                Ok(Ok(tls)) => {
                    let transport = Transport {
                        kind: crate::TransportKind::Tls,
                        peer: a.peer,
                        cert_key: crate::tls::client_cert_key(tls.get_ref().1),
                        loopback_listener: a.loopback_listener,
                        accepted_at: a.accepted_at,
                    };
                    connection::serve(tls, transport, ctx).await;
                }
                Ok(Err(e)) => {
                    tern_hub::Stats::add(&ctx.hub.stats.tls_handshakes_failed, 1);
                    tracing::info!(peer = %a.peer, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    tern_hub::Stats::add(&ctx.hub.stats.tls_handshakes_failed, 1);
                    tracing::info!(peer = %a.peer, "TLS handshake timed out");
                }
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spawned task is the connection's future, not a wrapper holding
    /// it twice (a 2.8 KiB per connection regression once), and that
    /// future stays small.
    #[tokio::test]
    async fn the_connection_task_holds_the_connection_future_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (stream, peer) = listener.accept().await.expect("accept");
        let ctx = Arc::new(MqttContext {
            hub: tern_hub::Hub::new(Default::default()),
            cfg: Arc::new(crate::MqttConfig::default()),
            auth: crate::AuthPolicy::open(),
        });
        let serve_size = std::mem::size_of_val(&connection::serve(
            stream,
            Transport::tcp(peer, true),
            ctx.clone(),
        ));
        let (stream, peer) = {
            let _client2 = TcpStream::connect(addr).await.expect("connect");
            listener.accept().await.expect("accept")
        };
        let active = Arc::new(AtomicUsize::new(0));
        let task = tcp_connection(
            Accepted {
                stream,
                peer,
                loopback_listener: true,
                accepted_at: Instant::now(),
                _active: ActiveGuard::new(&active),
            },
            ctx,
        );
        let task_size = std::mem::size_of_val(&task);
        // Every idle connection keeps this much in its task: see
        // `connection::serve_holding` before raising the bound.
        assert!(serve_size <= 1024, "connection future {serve_size} B");
        assert!(
            task_size < serve_size + 64,
            "task future {task_size} B for a connection future of {serve_size} B"
        );
        assert_eq!(active.load(Ordering::Relaxed), 1);
        drop(task);
        assert_eq!(active.load(Ordering::Relaxed), 0);
    }
}
