//! The two listeners of the server: the agent API on a TLS port and the admin API on a Unix socket.

mod agent;
mod tls;

pub use agent::serve_agent_api;
pub use signet_core::admin_socket::{bind as bind_admin_socket, serve as serve_admin_api};
pub use tls::{SERVER_IDENTITY_TTL, TlsSettings, rotate_server_identity, server_ca};

/// Error that keeps an endpoint from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The TLS settings of the agent endpoint could not be built.
    #[error("invalid TLS settings for the agent endpoint")]
    Tls(#[source] rustls::Error),
    /// The bundle has no usable root for verifying agent certificates.
    #[error("invalid trust bundle for verifying agents")]
    ClientVerifier(#[source] rustls::server::VerifierBuilderError),
}
