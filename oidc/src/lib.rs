//! Signet's OIDC discovery provider: publishes the server's JWT-SVID signing keys as an OpenID
//! Connect discovery document and JWKS, so standard OIDC relying parties can verify JWT-SVIDs.
#![forbid(unsafe_code)]

pub mod config;
pub mod discovery;
pub mod domain;
pub mod jwks;
pub mod routes;
pub mod run;
pub mod serve;
pub mod source;
pub mod tls;
