//! `signet-server bundle show`: the trust bundle as PEM or as a SPIFFE bundle (JWKS).

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};
use signet_proto::spire::api::types;
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::{CommonArgs, OutputFormat, client};

/// Trust bundle commands.
#[derive(Debug, clap::Subcommand)]
pub enum BundleCommand {
    /// Prints the X.509 authorities of the server's trust domain.
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
    /// A SPIFFE bundle: a JWK Set with one `x509-svid` key per authority.
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
        BundleFormat::Pem => print!("{}", pem_bundle(&bundle)),
        BundleFormat::Spiffe => println!(
            "{}",
            serde_json::to_string_pretty(&spiffe_bundle(&bundle)?)?
        ),
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

fn pem_certificate(der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Builds the SPIFFE bundle: a JWK Set whose keys carry the authority in `x5c`.
fn spiffe_bundle(bundle: &types::Bundle) -> anyhow::Result<Value> {
    let keys = bundle
        .x509_authorities
        .iter()
        .map(|authority| x509_svid_jwk(&authority.asn1))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut set = json!({ "keys": keys, "spiffe_sequence": bundle.sequence_number });
    if bundle.refresh_hint > 0 {
        set["spiffe_refresh_hint"] = json!(bundle.refresh_hint);
    }
    Ok(set)
}

fn x509_svid_jwk(der: &[u8]) -> anyhow::Result<Value> {
    let (_, cert) =
        X509Certificate::from_der(der).context("the server sent an invalid bundle certificate")?;
    let public_key = cert.public_key();
    let mut jwk = Map::new();
    jwk.insert("use".to_owned(), json!("x509-svid"));

    match public_key
        .parsed()
        .context("unreadable public key in a bundle certificate")?
    {
        PublicKey::EC(point) => {
            let curve = public_key
                .algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.as_oid().ok());
            let (crv, coordinate_len) = match curve {
                Some(oid) if oid == OID_EC_P256 => ("P-256", 32),
                Some(oid) if oid == OID_NIST_EC_P384 => ("P-384", 48),
                _ => bail!("unsupported elliptic curve in a bundle certificate"),
            };
            // An uncompressed point is 0x04 followed by the X and Y coordinates.
            let point = point.data();
            if point.len() != 1 + 2 * coordinate_len || point.first() != Some(&4) {
                bail!("unsupported elliptic curve point encoding in a bundle certificate");
            }
            let (x, y) = point[1..].split_at(coordinate_len);
            jwk.insert("kty".to_owned(), json!("EC"));
            jwk.insert("crv".to_owned(), json!(crv));
            jwk.insert("x".to_owned(), json!(URL_SAFE_NO_PAD.encode(x)));
            jwk.insert("y".to_owned(), json!(URL_SAFE_NO_PAD.encode(y)));
        }
        PublicKey::RSA(rsa) => {
            jwk.insert("kty".to_owned(), json!("RSA"));
            jwk.insert(
                "n".to_owned(),
                json!(URL_SAFE_NO_PAD.encode(unsigned(rsa.modulus))),
            );
            jwk.insert(
                "e".to_owned(),
                json!(URL_SAFE_NO_PAD.encode(unsigned(rsa.exponent))),
            );
        }
        _ => bail!("unsupported key type in a bundle certificate"),
    }
    jwk.insert("x5c".to_owned(), json!([STANDARD.encode(der)]));
    Ok(Value::Object(jwk))
}

/// Strips the sign byte DER puts before integers whose top bit is set, as JWK wants the unsigned
/// big-endian value.
fn unsigned(integer: &[u8]) -> &[u8] {
    let leading_zeros = integer.iter().take_while(|byte| **byte == 0).count();
    &integer[leading_zeros.min(integer.len().saturating_sub(1))..]
}

#[cfg(test)]
mod tests {
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
    fn pem_bundle_wraps_each_certificate() {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let (bundle, _) = bundle_with(&key_pair);

        let pem = pem_bundle(&bundle);

        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(pem.lines().all(|line| line.len() <= 64));
    }
}
