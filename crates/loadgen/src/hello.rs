//! The ceiling: a bare hyper HTTP/1.1 server answering every request with a small JSON body.
//! No routing, no middleware, no logging, so it shows what the machine, the kernel's loopback
//! and hyper can do; a service cannot be expected to beat it.

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The answer to every request.
pub const BODY: &[u8] = br#"{"message":"hello","service":"hello-server"}"#;

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Serves `listener` until `shutdown` resolves; then stops accepting, lets every open
/// connection finish its request in flight, and returns.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let mut connections = JoinSet::new();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // A failed accept (e.g. too many open files) affects one client; keep serving.
                let Ok((stream, _peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let connection = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(hello));
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    // A client that disappears mid-request is not the server's problem.
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
        // Reap finished connection tasks so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    graceful.shutdown().await;
    connections.shutdown().await;
}
