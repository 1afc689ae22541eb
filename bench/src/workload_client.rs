//! A Workload API client on the generated gRPC types. The measurements use it where the
//! `spiffe` crate's client would add its own work or limits. It accepts messages of any size
//! and counts the SVIDs without parsing them.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use signet_proto::workload::{JwtsvidRequest, X509svidRequest, X509svidResponse};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Streaming};

/// Largest message accepted: the X509-SVIDs of 10,000 entries take about 15 MiB.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// Metadata the Workload API requires on every call.
const SECURITY_HEADER: &str = "workload.spiffe.io";

/// One workload connection to the agent's Workload API socket.
#[derive(Clone, Debug)]
pub struct WorkloadClient {
    inner: SpiffeWorkloadApiClient<Channel>,
}

impl WorkloadClient {
    /// Connects to the Workload API at `socket`.
    ///
    /// # Errors
    ///
    /// Fails when nothing accepts connections on `socket`.
    pub async fn connect(socket: &Path) -> anyhow::Result<Self> {
        let path = socket.to_owned();
        // Every connection goes to the socket, so the URI only satisfies the builder.
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_| connect_socket(path.clone())))
            .await
            .with_context(|| {
                format!(
                    "failed to connect to the Workload API at {}",
                    socket.display()
                )
            })?;
        let inner =
            SpiffeWorkloadApiClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self { inner })
    }

    /// Opens a FetchX509SVID stream and returns the number of X509-SVIDs in its first message.
    ///
    /// # Errors
    ///
    /// Fails when the call fails or the stream ends without a message.
    pub async fn first_x509_svids(&mut self) -> anyhow::Result<usize> {
        let (svids, _stream) = self.open_x509_stream().await?;
        Ok(svids)
    }

    /// Opens a FetchX509SVID stream and returns the number of X509-SVIDs in its first message,
    /// with the stream for the messages after it.
    ///
    /// # Errors
    ///
    /// Fails when the call fails or the stream ends without a message.
    pub async fn open_x509_stream(
        &mut self,
    ) -> anyhow::Result<(usize, Streaming<X509svidResponse>)> {
        let mut stream = self
            .inner
            .fetch_x509svid(with_header(X509svidRequest {}))
            .await
            .context("FetchX509SVID failed")?
            .into_inner();
        match stream
            .message()
            .await
            .context("FetchX509SVID stream failed")?
        {
            Some(response) => Ok((response.svids.len(), stream)),
            None => bail!("the agent closed the FetchX509SVID stream without a message"),
        }
    }

    /// Calls FetchJWTSVID for `audience` and returns the number of JWT-SVIDs returned.
    ///
    /// # Errors
    ///
    /// Fails when the call fails or returns no JWT-SVID.
    pub async fn fetch_jwt_svids(&mut self, audience: &str) -> anyhow::Result<usize> {
        let request = JwtsvidRequest {
            audience: vec![audience.to_owned()],
            spiffe_id: String::new(),
        };
        let response = self
            .inner
            .fetch_jwtsvid(with_header(request))
            .await
            .context("FetchJWTSVID failed")?
            .into_inner();
        if response.svids.is_empty() {
            bail!("FetchJWTSVID returned no JWT-SVID for audience {audience}");
        }
        Ok(response.svids.len())
    }
}

fn with_header<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        SECURITY_HEADER,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    request
}

async fn connect_socket(path: PathBuf) -> std::io::Result<TokioIo<UnixStream>> {
    Ok(TokioIo::new(UnixStream::connect(path).await?))
}
