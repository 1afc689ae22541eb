//! The zero-trust gateway example: nginx as an API gateway that gets its identity from Signet,
//! an `orders` service that authorizes every request by the hop that connects and by the client
//! behind the gateway, and the programs that call it.
//!
//! The binaries in `src/bin/` are the example's workloads (`orders`, `inventory`,
//! `billing-batch`) and its runner (`zero-trust-gateway`), which starts everything and prints
//! the table of attempted calls. See the README next to this crate.
#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod scenario;

/// Trust domain of the example.
pub const TRUST_DOMAIN: &str = "example.org";

/// DNS name in the orders service's X509-SVID, which nginx checks when it connects.
pub const ORDERS_DNS_NAME: &str = "orders.example.org";

/// Audience of the JWT-SVIDs that the orders service accepts.
pub const ORDERS_AUDIENCE: &str = "orders";

/// Returns the SPIFFE ID of the example workload `name`, such as `spiffe://example.org/orders`.
#[must_use]
pub fn spiffe_id(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/{name}")
}
