//! The TCP accept loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;

use crate::auth::Transport;
use crate::{MqttContext, connection};

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
