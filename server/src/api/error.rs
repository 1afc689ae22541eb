//! Errors of the API services and their one mapping to gRPC status codes.

use signet_core::ids::IdError;
use signet_proto::spire::api::types;
use tonic::{Code, Status};

use crate::authority::RotationError;
use crate::ca::CaError;
use crate::datastore::DatastoreError;
use crate::jwt::JwtError;
use crate::model::EntryError;

/// Error of an RPC, or of one item of a batch RPC.
///
/// Messages go to the caller, so they name IDs and values but never keys, tokens or file paths:
/// internal failures reach the caller as a generic message and are logged in full.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The datastore rejected or failed the operation.
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
    /// The CA could not sign.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The JWT signing key could not sign.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// A change of the server's authorities was refused or failed.
    #[error(transparent)]
    Rotation(#[from] RotationError),
    /// A registration entry in the request is invalid.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// A SPIFFE ID in the request is invalid.
    #[error(transparent)]
    Id(#[from] IdError),
    /// The record to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// A concurrent change interfered, so the request changed nothing and may be sent again.
    #[error("{0}")]
    Aborted(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The requested record does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request cannot be served in the record's current state, for example a JWT-SVID for
    /// an entry whose SPIFFE ID is a template.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller presented no usable agent X509-SVID.
    #[error("{0}")]
    Unauthenticated(String),
}

impl ApiError {
    /// Returns the gRPC code that reports this error.
    pub fn code(&self) -> Code {
        match self {
            Self::Datastore(error) if error.is_not_found() => Code::NotFound,
            Self::Datastore(error) if error.is_already_exists() => Code::AlreadyExists,
            Self::Datastore(error) if error.is_expired() => Code::PermissionDenied,
            Self::Datastore(DatastoreError::InvalidArgument { .. }) => Code::InvalidArgument,
            Self::Datastore(_) => Code::Internal,
            Self::Ca(
                CaError::InvalidCsr { .. } | CaError::CsrSignature | CaError::InvalidTtl { .. },
            ) => Code::InvalidArgument,
            Self::Ca(CaError::CaExpired { .. }) => Code::Unavailable,
            Self::Ca(_) => Code::Internal,
            Self::Jwt(error) if error.is_invalid_argument() => Code::InvalidArgument,
            Self::Jwt(JwtError::KeyExpired { .. }) => Code::Unavailable,
            Self::Jwt(_) => Code::Internal,
            Self::Rotation(RotationError::NotFound(_)) => Code::NotFound,
            Self::Rotation(RotationError::FailedPrecondition(_)) => Code::FailedPrecondition,
            Self::Rotation(RotationError::Internal(_)) => Code::Internal,
            Self::Entry(_) | Self::Id(_) | Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::Aborted(_) => Code::Aborted,
            Self::NotFound(_) => Code::NotFound,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Unauthenticated(_) => Code::Unauthenticated,
        }
    }

    /// Returns the message for the caller: the error itself, or a generic text for internal
    /// failures whose details (SQL, file paths) stay in the server log.
    pub fn public_message(&self) -> String {
        match self.code() {
            Code::Internal => {
                tracing::error!(error = %error_chain(self), "Request failed");
                "internal server error; see the server log".to_owned()
            }
            _ => self.to_string(),
        }
    }

    /// Returns the per-item status of a batch RPC.
    pub fn to_proto_status(&self) -> types::Status {
        types::Status {
            code: self.code() as i32,
            message: self.public_message(),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        Self::new(error.code(), error.public_message())
    }
}

/// Returns the per-item status of a batch item that succeeded.
pub(crate) fn ok_status() -> types::Status {
    types::Status {
        code: Code::Ok as i32,
        message: "OK".to_owned(),
    }
}

/// Joins an error and its sources into one line for the log.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use signet_core::audience::AudienceError;

    use super::*;

    #[test]
    fn codes_follow_the_error_kind() {
        let cases = [
            (
                ApiError::Entry(EntryError::MissingSelectors),
                Code::InvalidArgument,
            ),
            (ApiError::Ca(CaError::CsrSignature), Code::InvalidArgument),
            (
                ApiError::Jwt(JwtError::InvalidAudience(AudienceError::Missing)),
                Code::InvalidArgument,
            ),
            (
                ApiError::Jwt(JwtError::KeyExpired {
                    key_id: "kid".to_owned(),
                    expired_at: "2020-01-01T00:00:00Z".to_owned(),
                }),
                Code::Unavailable,
            ),
            (
                ApiError::Ca(CaError::CaExpired {
                    expired_at: "2020-01-01T00:00:00Z".to_owned(),
                }),
                Code::Unavailable,
            ),
            (
                ApiError::NotFound("entry \"x\" not found".to_owned()),
                Code::NotFound,
            ),
            (
                ApiError::PermissionDenied("banned".to_owned()),
                Code::PermissionDenied,
            ),
            (ApiError::Aborted("entry changed".to_owned()), Code::Aborted),
            (
                ApiError::Unauthenticated("no certificate".to_owned()),
                Code::Unauthenticated,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
            assert_eq!(Status::from(error).code(), code);
        }
    }

    #[test]
    fn internal_errors_hide_their_details() {
        let error = ApiError::Ca(CaError::Io {
            action: "read",
            path: "/secret/ca/key.pem".into(),
            source: std::io::Error::other("denied"),
        });

        let status = Status::from(error);

        assert_eq!(status.code(), Code::Internal);
        assert!(
            !status.message().contains("/secret"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn batch_status_carries_code_and_message() {
        let status = ApiError::Entry(EntryError::MissingSelectors).to_proto_status();

        assert_eq!(status.code, Code::InvalidArgument as i32);
        assert_eq!(status.message, EntryError::MissingSelectors.to_string());
        assert_eq!(ok_status().code, 0);
    }
}
