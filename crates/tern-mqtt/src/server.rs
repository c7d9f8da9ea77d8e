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
}

/// Accepts on `listener` until `shutdown` resolves, running `handle` in a
/// task per connection. Connections beyond `connections_max` are closed
/// at once and counted.
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
        active.fetch_add(1, Ordering::Relaxed);
        let conn = handle(
            Accepted {
                stream,
                peer,
                loopback_listener,
                accepted_at: Instant::now(),
            },
            ctx.clone(),
        );
        let active = active.clone();
        tokio::spawn(async move {
            conn.await;
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Accepts MQTT connections on `listener` until `shutdown` resolves.
pub async fn run(listener: TcpListener, ctx: Arc<MqttContext>, shutdown: impl Future<Output = ()>) {
    accept_loop(listener, ctx, shutdown, |a, ctx| async move {
        let mut transport = Transport::tcp(a.peer, a.loopback_listener);
        transport.accepted_at = a.accepted_at;
        connection::serve(a.stream, transport, ctx).await;
    })
    .await
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
