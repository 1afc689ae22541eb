//! A client that calls a service over mutual TLS, optionally with a JWT-SVID for the service's
//! audience in `authorization: Bearer`.
//!
//! ```sh
//! SPIFFE_ENDPOINT_SOCKET=unix:/tmp/signet-agent/public/api.sock \
//!     cargo run -p signet-sdk --example client -- 127.0.0.1:8443 \
//!     spiffe://example.org/my-service DELETE /orders/42 spiffe://example.org/my-service
//! ```
//!
//! Arguments: the server address, the server's SPIFFE ID, the method, the path, and optionally
//! the audience of a JWT-SVID to send.

use std::sync::Arc;

use anyhow::Context;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use signet_sdk::{AllowedPeers, WorkloadIdentity};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address, server_id, method, path, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: client <address> <server SPIFFE ID> <method> <path> [audience]");
    };

    let identity = WorkloadIdentity::builder().build().await?;
    let config = identity.client_config(AllowedPeers::parse([server_id])?)?;
    let tcp = TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    // The server is authorized by its SPIFFE ID; the name only fills the SNI field.
    let name = ServerName::try_from("localhost")?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);

    let mut request = Request::builder()
        .method(method.as_str())
        .uri(path.as_str())
        .header("host", address.as_str());
    if let Some(audience) = rest.first() {
        // The token's subject is the SPIFFE ID of the client's X509-SVID.
        let svid = identity.fetch_jwt_svid([audience]).await?;
        request = request.header("authorization", format!("Bearer {}", svid.token()));
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new())?)
        .await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    print!("{status}\n{}", String::from_utf8_lossy(&body));
    Ok(())
}
