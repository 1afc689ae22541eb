//! `signet-server bundle show`: the trust bundle as PEM or as a SPIFFE bundle (JWKS).

use std::io::{self, Write};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use signet_core::jwk::{jwks, public_key_members};
use signet_proto::spire::api::types;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{CommonArgs, OutputFormat, client};

/// Trust bundle commands.
#[derive(Debug, clap::Subcommand)]
pub enum BundleCommand {
    /// Prints the trust bundle of the server's trust domain: X.509 authorities, and JWT keys in
    /// the spiffe format.
    Show(ShowArgs),
}

/// Flags of `bundle show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// pem: the CA certificates; spiffe: a SPIFFE bundle (JWK Set) [default: pem, or spiffe with
    /// --output json].
    #[arg(long, value_enum)]
    format: Option<BundleFormat>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Encodings of the bundle.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(super) enum BundleFormat {
    /// PEM certificates, one after another.
    Pem,
    /// A SPIFFE bundle: a JWK Set with one `x509-svid` key per X.509 authority and one `jwt-svid`
    /// key per JWT authority.
    Spiffe,
}

pub(super) async fn execute(command: BundleCommand) -> anyhow::Result<()> {
    let BundleCommand::Show(args) = command;
    let channel = client::connect(&args.common.admin_socket).await?;
    let bundle = client::fetch_bundle(channel).await?;
    let format = args.format.unwrap_or(match args.common.output {
        OutputFormat::Human => BundleFormat::Pem,
        OutputFormat::Json => BundleFormat::Spiffe,
    });
    match format {
        BundleFormat::Pem => write!(io::stdout().lock(), "{}", pem_bundle(&bundle))?,
        BundleFormat::Spiffe => writeln!(
            io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&spiffe_bundle(&bundle)?)?
        )?,
    }
    Ok(())
}

fn pem_bundle(bundle: &types::Bundle) -> String {
    bundle
        .x509_authorities
        .iter()
        .map(|authority| pem_certificate(&authority.asn1))
        .collect()
}

pub(super) fn pem_certificate(der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Builds the SPIFFE bundle: a JWK Set whose X.509 keys carry the authority in `x5c`, followed
/// by the JWT keys.
fn spiffe_bundle(bundle: &types::Bundle) -> anyhow::Result<Value> {
    let mut keys = bundle
        .x509_authorities
        .iter()
        .map(|authority| x509_svid_jwk(&authority.asn1))
        .collect::<anyhow::Result<Vec<_>>>()?;
    keys.extend(jwt_svid_jwks(bundle));
    let mut set = json!({ "keys": keys, "spiffe_sequence": bundle.sequence_number });
    if bundle.refresh_hint > 0 {
        set["spiffe_refresh_hint"] = json!(bundle.refresh_hint);
    }
    Ok(set)
}

fn x509_svid_jwk(der: &[u8]) -> anyhow::Result<Value> {
    let (_, cert) =
        X509Certificate::from_der(der).context("the server sent an invalid bundle certificate")?;
    let mut jwk = public_key_members(cert.public_key().raw, "of a bundle certificate")?;
    jwk.insert("use".to_owned(), json!("x509-svid"));
    jwk.insert("x5c".to_owned(), json!([STANDARD.encode(der)]));
    Ok(Value::Object(jwk))
}

/// Returns the JWT authorities as JWKs with `"use":"jwt-svid"`.
fn jwt_svid_jwks(bundle: &types::Bundle) -> Vec<Value> {
    let authorities: Vec<(String, Vec<u8>)> = bundle
        .jwt_authorities
        .iter()
        .map(|authority| (authority.key_id.clone(), authority.public_key.clone()))
        .collect();
    let mut set = jwks(&authorities, Some(JWT_SVID_USE));
    match set.get_mut("keys").map(Value::take) {
        Some(Value::Array(keys)) => keys,
        _ => Vec::new(),
    }
}

/// `use` of JWT-SVID keys in a SPIFFE bundle.
const JWT_SVID_USE: &str = "jwt-svid";

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn bundle_with(key_pair: &rcgen::KeyPair) -> (types::Bundle, Vec<u8>) {
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let der = params.self_signed(key_pair).unwrap().der().to_vec();
        let bundle = types::Bundle {
            trust_domain: "example.org".to_owned(),
            x509_authorities: vec![types::X509Certificate {
                asn1: der.clone(),
                tainted: false,
            }],
            sequence_number: 7,
            ..types::Bundle::default()
        };
        (bundle, der)
    }

    #[test]
    fn spiffe_bundle_has_ec_key_with_x5c() {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let (bundle, der) = bundle_with(&key_pair);

        let set = spiffe_bundle(&bundle).unwrap();

        assert_eq!(set["spiffe_sequence"], 7);
        let key = &set["keys"][0];
        assert_eq!(key["use"], "x509-svid");
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(key["x5c"][0], STANDARD.encode(&der));
        let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
        assert_eq!(x.len(), 32);
    }

    #[test]
    fn spiffe_bundle_has_jwt_keys_after_x509_keys() {
        use rcgen::PublicKeyData;

        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let (mut bundle, _) = bundle_with(&key_pair);
        let jwt_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        bundle.jwt_authorities.push(types::JwtKey {
            public_key: jwt_key.subject_public_key_info(),
            key_id: "kid-1".to_owned(),
            expires_at: 1,
            tainted: false,
        });

        let set = spiffe_bundle(&bundle).unwrap();

        let keys = set["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0]["use"], "x509-svid");
        assert_eq!(keys[1]["use"], "jwt-svid");
        assert_eq!(keys[1]["kid"], "kid-1");
        assert_eq!(keys[1]["kty"], "EC");
        assert!(keys[1].get("x5c").is_none(), "{}", keys[1]);
    }

    #[test]
    fn pem_bundle_wraps_each_certificate() {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let (bundle, _) = bundle_with(&key_pair);

        let pem = pem_bundle(&bundle);

        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(pem.lines().all(|line| line.len() <= 64));
    }
}
