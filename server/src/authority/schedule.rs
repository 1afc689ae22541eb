//! When authorities rotate, and the task that rotates them and prunes the bundle.

use std::time::{Duration, SystemTime};

use super::{AuthorityKind, Rotation};
use crate::api::ChangeFeed;
use crate::datastore::Datastore;

/// Returns when the next authority is prepared: at half of the active one's lifetime.
pub(super) fn preparation_time((not_before, not_after): (SystemTime, SystemTime)) -> SystemTime {
    not_before + lifetime(not_before, not_after) / 2
}

/// Returns when the prepared authority becomes active: at five sixths of the active one's
/// lifetime, so it has been in the bundle for a third of a lifetime.
pub(super) fn activation_time((not_before, not_after): (SystemTime, SystemTime)) -> SystemTime {
    not_before + lifetime(not_before, not_after) * 5 / 6
}

/// Returns the earliest time an authority published at `published` may become active: after
/// the usual third of a lifetime in the bundle, or after half of the active authority's remaining
/// life when less is left. The second case is a server that was down through the preparation
/// time. Either way agents have time to fetch the new root before anything it signed appears.
pub(super) fn earliest_activation(
    (not_before, not_after): (SystemTime, SystemTime),
    published: SystemTime,
) -> SystemTime {
    let usual = activation_time((not_before, not_after))
        .duration_since(preparation_time((not_before, not_after)))
        .unwrap_or_default();
    let remaining = not_after.duration_since(published).unwrap_or_default();
    published + usual.min(remaining / 2)
}

/// Rotates the X.509 and JWT authorities on schedule and removes expired authorities from the
/// bundle, until the task is dropped.
pub async fn run_schedule<X: AuthorityKind, J: AuthorityKind>(
    x509: &Rotation<X>,
    jwt: &Rotation<J>,
    datastore: &Datastore,
    changes: &ChangeFeed,
) {
    loop {
        let now = SystemTime::now();
        let next = [advance(x509, now).await, advance(jwt, now).await]
            .into_iter()
            .min()
            .unwrap_or(now + MAX_WAIT);
        prune(datastore, changes, now).await;
        let wait = next
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .clamp(MIN_WAIT, MAX_WAIT);
        tokio::time::sleep(wait).await;
    }
}

/// Takes the due steps of one kind; after a failure, tries again after [`RETRY_WAIT`].
async fn advance<K: AuthorityKind>(rotation: &Rotation<K>, now: SystemTime) -> SystemTime {
    rotation.advance(now).await.unwrap_or_else(|error| {
        tracing::error!(kind = K::NAME, error = %error, "Authority rotation failed, retrying");
        now + RETRY_WAIT
    })
}

async fn prune(datastore: &Datastore, changes: &ChangeFeed, now: SystemTime) {
    match datastore.prune_bundle(now).await {
        Ok(false) => {}
        Ok(true) => match datastore.bundle().await {
            Ok(bundle) => {
                tracing::info!(
                    sequence_number = bundle.sequence_number,
                    "Removed expired authorities from the bundle"
                );
                changes.bundle_changed(bundle.sequence_number);
            }
            Err(error) => tracing::warn!(error = %error, "Failed to read the pruned bundle"),
        },
        Err(error) => tracing::warn!(error = %error, "Failed to remove expired authorities"),
    }
}

fn lifetime(not_before: SystemTime, not_after: SystemTime) -> Duration {
    not_after.duration_since(not_before).unwrap_or_default()
}

/// Shortest wait between two rounds, so a clock step cannot make the task spin.
const MIN_WAIT: Duration = Duration::from_millis(100);
/// Maximum wait between two rounds. It bounds the delay of bundle pruning.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Wait after a failed rotation step.
const RETRY_WAIT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_rotate_at_half_and_five_sixths() {
        let not_before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let validity = (not_before, not_before + Duration::from_secs(600));

        assert_eq!(
            preparation_time(validity),
            not_before + Duration::from_secs(300)
        );
        assert_eq!(
            activation_time(validity),
            not_before + Duration::from_secs(500)
        );
    }

    #[test]
    fn late_preparation_delays_activation() {
        let not_before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let validity = (not_before, not_before + Duration::from_secs(600));
        let on_time = not_before + Duration::from_secs(300);
        let after_outage = not_before + Duration::from_secs(580);

        assert!(earliest_activation(validity, on_time) <= activation_time(validity));
        assert_eq!(
            earliest_activation(validity, after_outage),
            after_outage + Duration::from_secs(10)
        );
    }

    #[test]
    fn reversed_validity_counts_as_no_lifetime() {
        let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let validity = (not_after + Duration::from_secs(5), not_after);

        assert_eq!(preparation_time(validity), validity.0);
        assert_eq!(activation_time(validity), validity.0);
    }
}
