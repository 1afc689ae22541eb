//! The Sync service: a stream that notifies agents when entries, agents or the bundle change.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use signet_proto::signet::server::sync::v1::{
    ChangeNotice, WatchChangesRequest, sync_server::Sync as SyncApi,
};
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use super::{Endpoint, Services};

/// The response stream of `WatchChanges`.
type WatchChangesStream = Pin<Box<dyn Stream<Item = Result<ChangeNotice, Status>> + Send>>;

#[tonic::async_trait]
impl SyncApi for Services {
    type WatchChangesStream = WatchChangesStream;

    async fn watch_changes(
        &self,
        request: Request<WatchChangesRequest>,
    ) -> Result<Response<WatchChangesStream>, Status> {
        // Operators on the admin socket may watch too; on the TLS port only agents may.
        if self.endpoint == Endpoint::Agent {
            self.authenticate_agent(&request).await?;
        }
        // WatchStream yields the current notice first, then each newer one. Notices that arrive
        // faster than the client reads are merged, which loses nothing because each notice
        // carries the latest revision.
        let notices = WatchStream::new(self.state.changes.subscribe())
            .take_until(self.state.changes.closed())
            .map(Ok);
        Ok(Response::new(Box::pin(notices)))
    }
}
