//! The Bundle service: the trust bundle of the server's trust domain, with its X.509 and JWT
//! authorities.

use signet_proto::spire::api::server::bundle::v1::{
    GetBundleRequest, bundle_server::Bundle as BundleApi,
};
use signet_proto::spire::api::types;
use tonic::{Request, Response, Status};

use super::{ApiError, Services};

#[tonic::async_trait]
impl BundleApi for Services {
    async fn get_bundle(
        &self,
        request: Request<GetBundleRequest>,
    ) -> Result<Response<types::Bundle>, Status> {
        let bundle = self
            .state
            .datastore
            .bundle()
            .await
            .map_err(ApiError::from)?;
        let mut response = types::Bundle {
            trust_domain: self.state.trust_domain.to_string(),
            x509_authorities: bundle
                .authorities
                .into_iter()
                .map(|asn1| types::X509Certificate {
                    tainted: bundle.tainted_authorities.contains(&asn1),
                    asn1,
                })
                .collect(),
            jwt_authorities: bundle
                .jwt_authorities
                .into_iter()
                .map(|authority| types::JwtKey {
                    tainted: bundle.tainted_jwt_key_ids.contains(&authority.key_id),
                    public_key: authority.public_key_der,
                    key_id: authority.key_id,
                    expires_at: authority.expires_at,
                })
                .collect(),
            refresh_hint: 0,
            sequence_number: bundle.sequence_number,
        };

        if let Some(mask) = request.into_inner().output_mask {
            if !mask.x509_authorities {
                response.x509_authorities.clear();
            }
            if !mask.jwt_authorities {
                response.jwt_authorities.clear();
            }
            if !mask.sequence_number {
                response.sequence_number = 0;
            }
        }
        Ok(Response::new(response))
    }
}
