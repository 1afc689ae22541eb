//! The Registration service: `ApplyEntries`, which makes the entries of one owner equal to a
//! requested list in one transaction (admin socket only).

use signet_proto::signet::server::registration::v1::{
    ApplyEntriesRequest, ApplyEntriesResponse, registration_server::Registration as RegistrationApi,
};
use signet_proto::spire::api::types;
use tonic::{Request, Response, Status};

use super::{ApiError, Services};
use crate::datastore::{ApplyEntriesError, ApplyMode, EntryPlan, EntryPlanError};
use crate::model::{EntryOwner, RegistrationEntry};

#[tonic::async_trait]
impl RegistrationApi for Services {
    async fn apply_entries(
        &self,
        request: Request<ApplyEntriesRequest>,
    ) -> Result<Response<ApplyEntriesResponse>, Status> {
        self.require_admin()?;
        let request = request.into_inner();
        let owner = EntryOwner::new(&request.owner)
            .map_err(|error| ApiError::InvalidArgument(error.to_string()))?;
        let entries = request
            .entries
            .into_iter()
            .map(|entry| RegistrationEntry::from_proto(entry, &self.state.trust_domain))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::from)?;
        let mode = if request.dry_run {
            ApplyMode::DryRun
        } else {
            ApplyMode::Write
        };

        let plan = self
            .state
            .datastore
            .apply_entries(&owner, entries, request.prune, mode)
            .await
            .map_err(api_error)?;
        if mode == ApplyMode::Write && plan.has_changes() {
            log_plan(&owner, &plan);
            self.state.changes.notify();
        }
        Ok(Response::new(response(&plan)))
    }
}

fn api_error(error: ApplyEntriesError) -> ApiError {
    match error {
        ApplyEntriesError::Plan(error @ EntryPlanError::DuplicateEntry { .. }) => {
            ApiError::InvalidArgument(error.to_string())
        }
        ApplyEntriesError::Plan(error) => ApiError::AlreadyExists(error.to_string()),
        error @ ApplyEntriesError::ChangedConcurrently { .. } => {
            ApiError::Aborted(error.to_string())
        }
        ApplyEntriesError::Datastore(error) => ApiError::Datastore(error),
    }
}

fn log_plan(owner: &EntryOwner, plan: &EntryPlan) {
    tracing::info!(
        owner = %owner,
        created = plan.created.len(),
        updated = plan.updated.len(),
        deleted = plan.deleted.len(),
        unchanged = plan.unchanged.len(),
        "Entries applied"
    );
}

fn response(plan: &EntryPlan) -> ApplyEntriesResponse {
    let to_proto = |entries: &[RegistrationEntry]| -> Vec<types::Entry> {
        entries.iter().map(RegistrationEntry::to_proto).collect()
    };
    ApplyEntriesResponse {
        created: to_proto(&plan.created),
        updated: to_proto(&plan.updated),
        deleted: to_proto(&plan.deleted),
        unchanged: to_proto(&plan.unchanged),
    }
}
