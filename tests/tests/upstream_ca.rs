//! A server whose CA is signed by an upstream CA: SVID chains carry the intermediate, and the
//! bundle contains the upstream root.

use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use signet_e2e::svid;
use signet_e2e::workload;
use signet_e2e::{Deployment, ServerOptions, TRUST_DOMAIN};

#[tokio::test]
async fn upstream_ca_chain_served_to_workloads() {
    let dir = tempfile::tempdir().unwrap();
    let (root_der, cert_path, key_path) = {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, "Signet e2e upstream root");
        let root = params.self_signed(&key).unwrap();
        let cert_path = dir.path().join("upstream.crt");
        let key_path = dir.path().join("upstream.key");
        fs::write(&cert_path, root.pem()).unwrap();
        fs::write(&key_path, key.serialize_pem()).unwrap();
        fs::set_permissions(&key_path, Permissions::from_mode(0o600)).unwrap();
        (root.der().to_vec(), cert_path, key_path)
    };
    let options = ServerOptions {
        extra_args: vec![
            "--upstream-ca-cert".to_owned(),
            cert_path.display().to_string(),
            "--upstream-ca-key".to_owned(),
            key_path.display().to_string(),
        ],
        ..ServerOptions::default()
    };

    let deployment = Deployment::start_with(options, None).await.unwrap();
    let context = deployment.fetch_x509_context().await.unwrap();

    let bundle = workload::bundle_der(&context, TRUST_DOMAIN).unwrap();
    assert_eq!(
        bundle,
        vec![root_der.clone()],
        "the bundle is not the upstream root"
    );
    let served = workload::find_svid(&context, &deployment.workload_id).unwrap();
    let chain = workload::chain_der(served);
    assert_eq!(
        chain.len(),
        2,
        "expected the leaf and the server's intermediate CA"
    );
    svid::check_authority(&chain[1], TRUST_DOMAIN).unwrap();
    workload::check_served_svid(&context, &deployment.workload_id, TRUST_DOMAIN).unwrap();

    let server_bundle = svid::pem_certificates(&deployment.server.bundle_pem().await.unwrap());
    assert_eq!(server_bundle.unwrap(), vec![root_der]);
}
