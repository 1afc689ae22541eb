//! Compiles the .proto files with protox, so no system protoc is needed.

use std::error::Error as StdError;

const PROTOS: &[&str] = &[
    "proto/workload.proto",
    "proto/spire/api/types/types.proto",
    "proto/spire/api/server/agent/v1/agent.proto",
    "proto/spire/api/server/entry/v1/entry.proto",
    "proto/spire/api/server/bundle/v1/bundle.proto",
    "proto/spire/api/server/svid/v1/svid.proto",
    "proto/spire/api/server/localauthority/v1/localauthority.proto",
    "proto/signet/server/sync/v1/sync.proto",
    "proto/signet/server/svid/v1/svid.proto",
    "proto/signet/server/registration/v1/registration.proto",
    "proto/signet/server/diagnostics/v1/diagnostics.proto",
    "proto/signet/agent/debug/v1/debug.proto",
];

fn main() -> Result<(), Box<dyn StdError>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
