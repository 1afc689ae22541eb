//! Compiles SPIRE's own server API .proto files (shipped inside the `spire-api` package) into a
//! gRPC client, so the compatibility tests talk to Signet exactly as a SPIRE tool would.

use std::env;
use std::error::Error as StdError;
use std::path::PathBuf;
use std::process::Command;

const SPIRE_API_PACKAGE: &str = "spire-api";

const SERVICE_PROTOS: &[&str] = &[
    "spire/api/server/agent/v1/agent.proto",
    "spire/api/server/bundle/v1/bundle.proto",
    "spire/api/server/entry/v1/entry.proto",
    "spire/api/server/svid/v1/svid.proto",
];

fn main() -> Result<(), Box<dyn StdError>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../Cargo.lock");

    let include_dir = spire_proto_dir()?;
    let descriptors = protox::compile(SERVICE_PROTOS, [&include_dir])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .include_file("spire_api.rs")
        .compile_fds(descriptors)?;
    Ok(())
}

/// Finds `spire-api-sdk/proto` inside the `spire-api` package that Cargo resolved for this crate.
fn spire_proto_dir() -> Result<PathBuf, Box<dyn StdError>> {
    let cargo = env::var("CARGO")?;
    let manifest_dir = env::var("CARGO_MANIFEST_DIR")?;
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(manifest_dir)
        .output()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("cargo metadata failed: {stderr}").into());
    }

    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let manifest_path = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == SPIRE_API_PACKAGE)
        .and_then(|package| package["manifest_path"].as_str())
        .ok_or("package spire-api not found in `cargo metadata`: add it to [dev-dependencies]")?;

    let package_dir = PathBuf::from(manifest_path)
        .parent()
        .ok_or("spire-api manifest path has no parent directory")?
        .to_path_buf();
    let proto_dir = package_dir.join("spire-api-sdk").join("proto");
    if !proto_dir.is_dir() {
        return Err(format!("{} has no SPIRE .proto files", proto_dir.display()).into());
    }
    Ok(proto_dir)
}
