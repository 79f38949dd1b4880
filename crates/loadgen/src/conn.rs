//! One HTTP/1.1 keep-alive connection per load worker.
//!
//! Each worker owns its connection instead of sharing a pool, so "N connections" means exactly
//! N TCP connections, none is opened during the measurement unless the server closed one, and
//! no worker waits for another's connection.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where requests go: the resolved address and the `Host` header value.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    /// The path and query of the URL it was parsed from (`/` when none).
    pub path: String,
}

impl Endpoint {
    /// Parses and resolves an `http://host:port/path` URL (plain HTTP only: the platform
    /// speaks TLS only at an ingress, which is not what these benchmarks measure).
    pub async fn parse(url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("{url:?}: only http:// URLs are supported");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("{url:?} has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((authority.host(), port))
            .await
            .with_context(|| format!("resolving {}", authority.host()))?
            .next()
            .with_context(|| format!("{} has no address", authority.host()))?;
        let host = HeaderValue::from_str(authority.as_str())
            .with_context(|| format!("{url:?}: host is not a valid header value"))?;
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Self { addr, host, path })
    }
}

/// A request to send: method, path, extra headers and body.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl RequestSpec {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    fn build(&self, host: &HeaderValue) -> Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .header(HOST, host.clone());
        if !self.body.is_empty() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(self.body.clone()))
            .with_context(|| format!("building {} {}", self.method, self.path))
    }
}

/// An open keep-alive connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

impl Connection {
    pub async fn open(endpoint: &Endpoint) -> Result<Self> {
        let stream = TcpStream::connect(endpoint.addr)
            .await
            .with_context(|| format!("connecting to {}", endpoint.addr))?;
        // Small requests must leave at once; Nagle's delay would be measured as latency.
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        // The connection task ends when the server closes or the sender is dropped.
        tokio::spawn(async move {
            let _closed = connection.await;
        });
        Ok(Self {
            sender,
            host: endpoint.host.clone(),
        })
    }

    /// True once the server has closed the connection (e.g. after `Connection: close`).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends one request and reads the whole answer body.
    pub async fn send(&mut self, spec: &RequestSpec) -> Result<(StatusCode, Bytes)> {
        let request = spec.build(&self.host)?;
        self.sender
            .ready()
            .await
            .context("connection closed by the server")?;
        let response = self
            .sender
            .send_request(request)
            .await
            .context("sending the request")?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        Ok((status, body))
    }
}
