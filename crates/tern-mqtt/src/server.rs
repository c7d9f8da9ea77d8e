//! The TCP accept loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;

use crate::auth::Transport;
use crate::{MqttContext, connection};

/// Accepts MQTT-over-TLS connections on `listener` until `shutdown`
/// resolves. The TLS handshake runs in the connection's task, bounded by
/// the CONNECT timeout, so a slow handshake never holds up the accept loop.
pub async fn run_tls(
    listener: TcpListener,
    ctx: Arc<MqttContext>,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
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
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if active.load(Ordering::Relaxed) >= ctx.cfg.connections_max {
            tern_hub::Stats::add(&ctx.hub.stats.connects_refused, 1);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        active.fetch_add(1, Ordering::Relaxed);
        let (ctx, active, acceptor) = (ctx.clone(), active.clone(), acceptor.clone());
        let accepted_at = std::time::Instant::now();
        tokio::spawn(async move {
            match tokio::time::timeout(ctx.cfg.connect_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let cert_key = crate::tls::client_cert_key(tls.get_ref().1);
                    let transport = Transport {
                        kind: crate::TransportKind::Tls,
                        peer,
                        cert_key,
                        loopback_listener: loopback,
                        accepted_at,
                    };
                    connection::serve(tls, transport, ctx).await;
                }
                Ok(Err(e)) => {
                    tern_hub::Stats::add(&ctx.hub.stats.tls_handshakes_failed, 1);
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    tern_hub::Stats::add(&ctx.hub.stats.tls_handshakes_failed, 1);
                    tracing::info!(%peer, "TLS handshake timed out");
                }
            }
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Accepts MQTT connections on `listener` until `shutdown` resolves.
/// Connections beyond `connections_max` are closed at once.
pub async fn run(
    listener: TcpListener,
    ctx: Arc<MqttContext>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let hub = ctx.hub.clone();
    let cfg = ctx.cfg.clone();
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
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
        if active.load(Ordering::Relaxed) >= cfg.connections_max {
            tern_hub::Stats::add(&hub.stats.connects_refused, 1);
            tracing::warn!(%peer, max = cfg.connections_max, "connection limit reached; closing");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        active.fetch_add(1, Ordering::Relaxed);
        let (ctx, active) = (ctx.clone(), active.clone());
        tokio::spawn(async move {
            connection::serve(stream, Transport::tcp(peer, loopback), ctx).await;
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
