//! One HTTPS request over a given rustls configuration, and its outcome as the scenario reports
//! it: the response, or the TLS failure that prevented one.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST, HeaderValue};
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

/// Bound on one call, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The result of a call.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The server sent a response.
    Response {
        /// HTTP status code.
        status: u16,
        /// Response body, such as the policy's reason for a denial.
        body: String,
    },
    /// The TLS connection failed: the handshake, or the server's alert right after it.
    TlsFailure {
        /// The TLS error.
        error: String,
    },
}

/// One request to send.
#[derive(Debug)]
pub struct Call<'a> {
    /// Address to connect to.
    pub address: SocketAddr,
    /// TLS server name to send; verifiers built on SPIFFE IDs ignore it.
    pub server_name: &'a str,
    /// HTTP method.
    pub method: Method,
    /// Request path.
    pub path: &'a str,
    /// JWT-SVID to send as `authorization: Bearer ...`.
    pub token: Option<&'a BearerToken>,
}

/// A JWT-SVID to send. It is a bearer credential, so its Debug output hides it and its memory
/// is wiped on drop.
pub struct BearerToken(Zeroizing<String>);

// === impl BearerToken ===

impl BearerToken {
    /// Wraps `token`, without surrounding blanks.
    #[must_use]
    pub fn new(token: &str) -> Self {
        Self(Zeroizing::new(token.trim().to_owned()))
    }

    /// Returns the token.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns `Bearer <token>`, marked sensitive so that HTTP libraries do not log it.
    fn header_value(&self) -> anyhow::Result<HeaderValue> {
        let text = Zeroizing::new(format!("Bearer {}", self.as_str()));
        let mut value =
            HeaderValue::try_from(text.as_str()).context("the JWT-SVID is not a header value")?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(…)")
    }
}

/// Sends `call` over a TLS connection made with `config` and returns the outcome.
///
/// # Errors
///
/// When the TCP connection fails, the call times out, or the request fails for a reason other
/// than TLS.
pub async fn send(config: Arc<ClientConfig>, call: &Call<'_>) -> anyhow::Result<Outcome> {
    tokio::time::timeout(CALL_TIMEOUT, send_unbounded(config, call))
        .await
        .with_context(|| format!("no answer from {} within {CALL_TIMEOUT:?}", call.address))?
}

/// Connects to `address` with `config` and returns the DER of the certificate the server
/// presents, without sending a request.
///
/// # Errors
///
/// When the connection or the handshake fails, or the server presents no certificate.
pub async fn server_certificate(
    config: Arc<ClientConfig>,
    address: SocketAddr,
) -> anyhow::Result<Vec<u8>> {
    let connect = async {
        let tcp = TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to {address} failed"))?;
        let tls = TlsConnector::from(config)
            .connect(ServerName::try_from("localhost")?, tcp)
            .await
            .with_context(|| format!("the TLS handshake with {address} failed"))?;
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(<[_]>::first)
            .with_context(|| format!("{address} presented no certificate"))?;
        Ok(leaf.to_vec())
    };
    tokio::time::timeout(CALL_TIMEOUT, connect)
        .await
        .with_context(|| format!("no handshake with {address} within {CALL_TIMEOUT:?}"))?
}

async fn send_unbounded(config: Arc<ClientConfig>, call: &Call<'_>) -> anyhow::Result<Outcome> {
    let tcp = TcpStream::connect(call.address)
        .await
        .with_context(|| format!("connecting to {} failed", call.address))?;
    let server_name = ServerName::try_from(call.server_name.to_owned())
        .with_context(|| format!("invalid TLS server name {:?}", call.server_name))?;
    let tls = match TlsConnector::from(config).connect(server_name, tcp).await {
        Ok(tls) => tls,
        Err(error) => return tls_failure(anyhow::Error::new(error)),
    };
    match request(tls, call).await {
        Ok(outcome) => Ok(outcome),
        Err(error) => tls_failure(error),
    }
}

async fn request<S>(stream: S, call: &Call<'_>) -> anyhow::Result<Outcome>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("the HTTP/1.1 handshake failed")?;
    let connection = tokio::spawn(connection);

    let mut request = Request::builder()
        .method(call.method.clone())
        .uri(call.path)
        .header(HOST, call.server_name);
    if let Some(token) = call.token {
        request = request.header(AUTHORIZATION, token.header_value()?);
    }
    let request = request.body(Empty::<Bytes>::new())?;
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        // With TLS 1.3 a server that rejects the client's certificate sends an alert after the
        // handshake. The connection task has ended by then and returns that error.
        Err(error) => match connection.await {
            Ok(Err(closed)) => return Err(closed).context("the connection failed"),
            _ => return Err(error).context("the request failed"),
        },
    };
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading the response body failed")?
        .to_bytes();
    Ok(Outcome::Response {
        status,
        body: String::from_utf8_lossy(&body).trim().to_owned(),
    })
}

/// Returns [`Outcome::TlsFailure`] when a rustls error caused `error`, and `error` otherwise.
fn tls_failure(error: anyhow::Error) -> anyhow::Result<Outcome> {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error.as_ref());
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Ok(Outcome::TlsFailure {
                error: tls.to_string(),
            });
        }
        let inner = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let Some(tls) = inner {
            return Ok(Outcome::TlsFailure {
                error: tls.to_string(),
            });
        }
        cause = current.source();
    }
    Err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_rustls_error_is_tls_failure() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, alert);
        let error = anyhow::Error::new(io).context("the connection failed");
        let Outcome::TlsFailure { error } = tls_failure(error).unwrap() else {
            panic!("not classified as a TLS failure");
        };
        assert!(error.contains("CertificateRequired"), "{error}");
    }

    #[test]
    fn other_errors_stay_errors() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(tls_failure(anyhow::Error::new(io)).is_err());
    }

    #[test]
    fn bearer_token_stays_hidden() {
        let token = BearerToken::new(" eyJ.secret.sig\n");
        assert_eq!(token.as_str(), "eyJ.secret.sig");
        assert!(!format!("{token:?}").contains("secret"));
        let value = token.header_value().unwrap();
        assert_eq!(value, "Bearer eyJ.secret.sig");
        assert!(value.is_sensitive());
    }
}
