//! The two listeners of the server: the agent API on a TLS port and the admin API on a Unix socket.

mod admin;
mod agent;
mod tls;

use std::io;
use std::path::PathBuf;

pub use admin::{bind_admin_socket, serve_admin_api};
pub use agent::serve_agent_api;
pub use tls::{SERVER_IDENTITY_TTL, TlsSettings, rotate_server_identity, server_ca};

/// Error that keeps an endpoint from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The admin socket or its directory could not be created.
    #[error("failed to {action} admin socket {path}")]
    AdminSocket {
        /// The operation that failed.
        action: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Another process serves the admin socket already.
    #[error(
        "admin socket {0} is in use by another server: stop it or choose another --admin-socket"
    )]
    AdminSocketInUse(PathBuf),
    /// The admin socket path is taken by something that is not a socket, or its directory belongs
    /// to another user.
    #[error("unsafe admin socket path {path}: {reason}")]
    UnsafeAdminSocket {
        /// The socket path.
        path: PathBuf,
        /// The problem found.
        reason: &'static str,
    },
    /// The TLS settings of the agent endpoint could not be built.
    #[error("invalid TLS settings for the agent endpoint")]
    Tls(#[source] rustls::Error),
    /// The bundle has no usable root for verifying agent certificates.
    #[error("invalid trust bundle for verifying agents")]
    ClientVerifier(#[source] rustls::server::VerifierBuilderError),
}
