//! Generated gRPC types and services: the SPIFFE Workload API, the subset of
//! SPIRE's server APIs that Signet implements, and Signet's own APIs (change stream,
//! JWT-SVIDs for template entries, declarative registration, diagnostics and the agent's
//! debug API).
#![allow(
    missing_docs,
    unreachable_pub,
    unused_qualifications,
    clippy::all,
    clippy::allow_attributes_without_reason,
    reason = "generated code"
)]

/// The SPIFFE Workload API. Its proto file has no package, so the gRPC paths
/// are `/SpiffeWorkloadAPI/<Method>`.
pub mod workload {
    tonic::include_proto!("_");
}

/// SPIRE's API packages, with SPIRE's names and field numbers.
pub mod spire {
    pub mod api {
        pub mod types {
            tonic::include_proto!("spire.api.types");
        }
        pub mod server {
            pub mod agent {
                pub mod v1 {
                    tonic::include_proto!("spire.api.server.agent.v1");
                }
            }
            pub mod entry {
                pub mod v1 {
                    tonic::include_proto!("spire.api.server.entry.v1");
                }
            }
            pub mod bundle {
                pub mod v1 {
                    tonic::include_proto!("spire.api.server.bundle.v1");
                }
            }
            pub mod svid {
                pub mod v1 {
                    tonic::include_proto!("spire.api.server.svid.v1");
                }
            }
            pub mod localauthority {
                pub mod v1 {
                    tonic::include_proto!("spire.api.server.localauthority.v1");
                }
            }
        }
    }
}

/// Signet's own APIs.
pub mod signet {
    pub mod server {
        pub mod sync {
            pub mod v1 {
                tonic::include_proto!("signet.server.sync.v1");
            }
        }
        pub mod svid {
            pub mod v1 {
                tonic::include_proto!("signet.server.svid.v1");
            }
        }
        pub mod registration {
            pub mod v1 {
                tonic::include_proto!("signet.server.registration.v1");
            }
        }
        pub mod diagnostics {
            pub mod v1 {
                tonic::include_proto!("signet.server.diagnostics.v1");
            }
        }
    }
    pub mod agent {
        pub mod debug {
            pub mod v1 {
                tonic::include_proto!("signet.agent.debug.v1");
            }
        }
    }
}
