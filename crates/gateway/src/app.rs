//! Serving the gateway (`crate::gateway`) on a listener (`listener`: connection limits, clocks and
//! graceful shutdown), with the HTTP surface of `crate::http`. Tests start it exactly as
//! `switchyard serve` does, on port 0.

pub(crate) mod listener;

pub use crate::gateway::{FirstKey, Gateway, Live, ReloadError, Reloaded, StartError};

use std::sync::Arc;

impl Gateway {
    /// Serves on `listener` under the `[server]` limits until `shutdown` resolves, then shuts
    /// down gracefully: open requests may finish for `server.shutdown_grace`, after which the
    /// streams still open end with an error event and are settled.
    /// This generation can only be replaced through the reload endpoint if it was built from a
    /// file: use [`Live::serve`] for that.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        Live::new(self, None, None).serve(listener, shutdown).await
    }
}

impl Live {
    /// Serves on `listener` under the `[server]` limits until `shutdown` resolves, then shuts
    /// down gracefully (see [`Gateway::serve`]). Every request is served by the generation current
    /// when it arrived.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let gw = self.current();
        let limits = gw.config.server.clone();
        let end_streams = gw.end_streams.clone();
        drop(gw);
        let service = hyper_util::service::TowerToHyperService::new(crate::http::service(self));
        listener::serve(listener, service, limits, shutdown, end_streams).await
    }
}
