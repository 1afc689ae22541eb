//! The Entry service: registration entry management (admin) and entry sync (agents).

use std::sync::Arc;

use signet_proto::spire::api::server::entry::v1::{
    BatchCreateEntryRequest, BatchCreateEntryResponse, BatchDeleteEntryRequest,
    BatchDeleteEntryResponse, BatchUpdateEntryRequest, BatchUpdateEntryResponse,
    CountEntriesRequest, CountEntriesResponse, GetAuthorizedEntriesRequest,
    GetAuthorizedEntriesResponse, GetEntryRequest, ListEntriesRequest, ListEntriesResponse,
    batch_create_entry_response, batch_delete_entry_response, batch_update_entry_response,
    entry_server::Entry as EntryApi,
};
use signet_proto::spire::api::types::{self, EntryMask};
use tonic::{Request, Response, Status};

use super::error::ok_status;
use super::filter::EntryFilter;
use super::paging::paginate;
use super::{ApiError, Services, mask};
use crate::authorization::cache::{AuthorizedEntries, EntrySnapshot};
use crate::model::{AttestedAgent, RegistrationEntry};
use signet_core::ids::redacted_agent_id;

#[tonic::async_trait]
impl EntryApi for Services {
    async fn count_entries(
        &self,
        request: Request<CountEntriesRequest>,
    ) -> Result<Response<CountEntriesResponse>, Status> {
        self.require_admin()?;
        let filter = EntryFilter::from_count(request.into_inner().filter)?;
        let entries = self
            .state
            .datastore
            .list_entries()
            .await
            .map_err(ApiError::from)?;
        let count = entries.iter().filter(|entry| filter.matches(entry)).count();
        Ok(Response::new(CountEntriesResponse {
            count: i32::try_from(count).unwrap_or(i32::MAX),
        }))
    }

    async fn list_entries(
        &self,
        request: Request<ListEntriesRequest>,
    ) -> Result<Response<ListEntriesResponse>, Status> {
        self.require_admin()?;
        let request = request.into_inner();
        let filter = EntryFilter::from_list(request.filter)?;

        let mut entries = self
            .state
            .datastore
            .list_entries()
            .await
            .map_err(ApiError::from)?;
        entries.retain(|entry| filter.matches(entry));
        let page = paginate(
            entries,
            entry_sort_key,
            is_entry_sort_key,
            request.page_size,
            &request.page_token,
        )?;

        let entries = page
            .items
            .iter()
            .map(|entry| mask::filter_entry(entry.to_proto(), request.output_mask.as_ref()))
            .collect();
        Ok(Response::new(ListEntriesResponse {
            entries,
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_entry(
        &self,
        request: Request<GetEntryRequest>,
    ) -> Result<Response<types::Entry>, Status> {
        self.require_admin()?;
        let request = request.into_inner();
        let entry = self.fetch_entry(&request.id).await?;
        Ok(Response::new(mask::filter_entry(
            entry.to_proto(),
            request.output_mask.as_ref(),
        )))
    }

    async fn batch_create_entry(
        &self,
        request: Request<BatchCreateEntryRequest>,
    ) -> Result<Response<BatchCreateEntryResponse>, Status> {
        self.require_admin()?;
        let request = request.into_inner();
        let mut results = Vec::with_capacity(request.entries.len());
        for entry in request.entries {
            let result = match self.create_entry(entry).await {
                Ok(entry) => batch_create_entry_response::Result {
                    status: Some(ok_status()),
                    entry: Some(mask::filter_entry(
                        entry.to_proto(),
                        request.output_mask.as_ref(),
                    )),
                },
                Err(error) => batch_create_entry_response::Result {
                    status: Some(error.to_proto_status()),
                    entry: None,
                },
            };
            results.push(result);
        }
        Ok(Response::new(BatchCreateEntryResponse { results }))
    }

    async fn batch_update_entry(
        &self,
        request: Request<BatchUpdateEntryRequest>,
    ) -> Result<Response<BatchUpdateEntryResponse>, Status> {
        self.require_admin()?;
        let request = request.into_inner();
        let input_mask = request.input_mask.unwrap_or_else(mask::all_entry_fields);
        let mut results = Vec::with_capacity(request.entries.len());
        for entry in request.entries {
            let result = match self.update_entry(entry, &input_mask).await {
                Ok(entry) => batch_update_entry_response::Result {
                    status: Some(ok_status()),
                    entry: Some(mask::filter_entry(
                        entry.to_proto(),
                        request.output_mask.as_ref(),
                    )),
                },
                Err(error) => batch_update_entry_response::Result {
                    status: Some(error.to_proto_status()),
                    entry: None,
                },
            };
            results.push(result);
        }
        Ok(Response::new(BatchUpdateEntryResponse { results }))
    }

    async fn batch_delete_entry(
        &self,
        request: Request<BatchDeleteEntryRequest>,
    ) -> Result<Response<BatchDeleteEntryResponse>, Status> {
        self.require_admin()?;
        let mut results = Vec::new();
        for id in request.into_inner().ids {
            let status = match self.state.datastore.delete_entry(&id).await {
                Ok(entry) => {
                    tracing::info!(entry_id = %entry.id, spiffe_id = %entry.spiffe_id, "Entry deleted");
                    self.state.changes.notify();
                    ok_status()
                }
                Err(error) => ApiError::from(error).to_proto_status(),
            };
            results.push(batch_delete_entry_response::Result {
                status: Some(status),
                id,
            });
        }
        Ok(Response::new(BatchDeleteEntryResponse { results }))
    }

    async fn get_authorized_entries(
        &self,
        request: Request<GetAuthorizedEntriesRequest>,
    ) -> Result<Response<GetAuthorizedEntriesResponse>, Status> {
        let agent = self.authenticate_agent(&request).await?;
        let output_mask = request.into_inner().output_mask;
        let entries = self
            .authorized_entries(&agent)
            .await?
            .iter()
            .map(|entry| mask::filter_entry(entry.to_proto(), output_mask.as_ref()))
            .collect();
        self.state
            .authenticator
            .record_sync(&agent.spiffe_id, super::unix_now());
        Ok(Response::new(GetAuthorizedEntriesResponse { entries }))
    }
}

impl Services {
    /// Returns the entries the agent may obtain SVIDs for, as of the latest write of entries
    /// committed by any server sharing the datastore.
    pub(super) async fn authorized_entries(
        &self,
        agent: &AttestedAgent,
    ) -> Result<AuthorizedEntries, ApiError> {
        let snapshot = self.entry_snapshot().await?;
        Ok(snapshot.authorized(&agent.spiffe_id, &agent.selectors, super::unix_now()))
    }

    /// Returns the snapshot of the stored entries at the current entries generation, reading the
    /// entries only when the cached snapshot is of another generation.
    async fn entry_snapshot(&self) -> Result<Arc<EntrySnapshot>, ApiError> {
        let datastore = &self.state.datastore;
        let generation = datastore.entries_generation().await?;
        if let Some(snapshot) = self.state.entry_cache.snapshot(generation) {
            return Ok(snapshot);
        }
        // Read after the generation, the entries contain every write that it counts.
        let entries = datastore.list_entries().await?;
        Ok(self.state.entry_cache.insert(generation, entries))
    }

    async fn fetch_entry(&self, id: &str) -> Result<RegistrationEntry, ApiError> {
        self.state
            .datastore
            .fetch_entry(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("entry {id:?} not found")))
    }

    async fn create_entry(&self, entry: types::Entry) -> Result<RegistrationEntry, ApiError> {
        let entry = RegistrationEntry::from_proto(entry, &self.state.trust_domain)?;
        let entry = self.state.datastore.create_entry(entry).await?;
        tracing::info!(
            entry_id = %entry.id,
            spiffe_id = %entry.spiffe_id,
            parent_id = %redacted_agent_id(&entry.parent_id),
            "Entry created"
        );
        self.state.changes.notify();
        Ok(entry)
    }

    async fn update_entry(
        &self,
        update: types::Entry,
        input_mask: &EntryMask,
    ) -> Result<RegistrationEntry, ApiError> {
        let mut merged = self.fetch_entry(&update.id).await?.to_proto();
        mask::merge_entry(&mut merged, update, input_mask);

        let entry = RegistrationEntry::from_proto(merged, &self.state.trust_domain)?;
        let entry = self.state.datastore.update_entry(entry).await?;
        tracing::info!(entry_id = %entry.id, spiffe_id = %entry.spiffe_id, revision = entry.revision_number, "Entry updated");
        self.state.changes.notify();
        Ok(entry)
    }
}

/// Orders entries by creation time, then ID, as `list_entries` does.
fn entry_sort_key(entry: &RegistrationEntry) -> String {
    format!("{:020}:{}", entry.created_at.max(0), entry.id)
}

/// Returns whether `text` has the form of [`entry_sort_key`]: 20 digits, `:` and an entry ID.
fn is_entry_sort_key(text: &str) -> bool {
    let Some((created_at, id)) = text.split_once(':') else {
        return false;
    };
    created_at.len() == 20
        && created_at.bytes().all(|byte| byte.is_ascii_digit())
        && !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
