//! The whole flow on the PostgreSQL datastore, including a server restart.

use signet_e2e::postgres::TestDatabase;
use signet_e2e::wait::PROPAGATION_TIMEOUT;
use signet_e2e::workload;
use signet_e2e::{Deployment, ServerOptions, TRUST_DOMAIN};

#[tokio::test]
async fn postgres_datastore_serves_svids_across_restart() {
    let database = TestDatabase::create().await.unwrap();
    let options = ServerOptions {
        database: Some(database.url()),
        ..ServerOptions::default()
    };
    let mut deployment = Deployment::start_with(options, Some(600)).await.unwrap();
    let endpoint = deployment.agent.endpoint();

    let context =
        workload::fetch_x509_context_with(&endpoint, &deployment.workload_id, PROPAGATION_TIMEOUT)
            .await
            .unwrap();
    workload::check_served_svid(&context, &deployment.workload_id, TRUST_DOMAIN).unwrap();

    deployment.server.restart().await.unwrap();
    assert_eq!(deployment.server.entry_count().await.unwrap(), 1);
    let token = deployment.server.create_token().await.unwrap();
    assert!(!token.is_empty());

    deployment.agent.stop().await.unwrap();
    deployment.server.stop().await.unwrap();
    database.remove().await.unwrap();
}
