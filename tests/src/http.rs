//! A plain HTTP/1.1 client for the metrics and health endpoints of the daemons.

use std::net::TcpListener;

use anyhow::Context;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A response: its status and its body as text.
#[derive(Clone, Debug)]
pub struct HttpReply {
    /// The status code.
    pub status: StatusCode,
    /// The body, empty for a `HEAD` request.
    pub body: String,
}

/// Sends `GET <path>` to `address` (`IP:PORT`).
///
/// # Errors
///
/// Fails when the connection or the exchange fails.
pub async fn get(address: &str, path: &str) -> anyhow::Result<HttpReply> {
    request(Method::GET, address, path).await
}

/// Sends a request without a body to `address` (`IP:PORT`) on a new connection.
///
/// # Errors
///
/// Fails when the connection or the exchange fails.
pub async fn request(method: Method, address: &str, path: &str) -> anyhow::Result<HttpReply> {
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    let connection = tokio::spawn(connection);

    let request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(hyper::header::HOST, address)
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("{method} http://{address}{path}"))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    connection.abort();
    Ok(HttpReply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Returns a loopback address (`127.0.0.1:PORT`) whose port was free a moment ago.
///
/// # Errors
///
/// Fails when no port can be bound.
pub fn free_loopback_address() -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok(listener.local_addr()?.to_string())
}
