//! `signet-server localauthority x509|jwt show|prepare|activate|taint|revoke`: shows and drives
//! the rotation of the server's own X.509 CA and JWT signing key.

use std::io::{self, Write};

use signet_proto::spire::api::server::localauthority::v1::local_authority_client::LocalAuthorityClient;
use signet_proto::spire::api::server::localauthority::v1::{
    ActivateJwtAuthorityRequest, ActivateX509AuthorityRequest, AuthorityState,
    GetJwtAuthorityStateRequest, GetX509AuthorityStateRequest, PrepareJwtAuthorityRequest,
    PrepareX509AuthorityRequest, RevokeJwtAuthorityRequest, RevokeX509AuthorityRequest,
    TaintJwtAuthorityRequest, TaintX509AuthorityRequest,
};
use tonic::Status;
use tonic::transport::Channel;

use super::output::print_json;
use super::{CommonArgs, OutputFormat, client, rpc_error};
use crate::model::unix_time_text;

/// Commands for the server's own signing authorities.
#[derive(Debug, clap::Subcommand)]
pub enum LocalAuthorityCommand {
    /// The X.509 CA that signs X509-SVIDs.
    #[command(subcommand)]
    X509(AuthorityCommand),
    /// The key that signs JWT-SVIDs.
    #[command(subcommand)]
    Jwt(AuthorityCommand),
}

/// Commands for the authorities of one kind.
#[derive(Debug, clap::Subcommand)]
pub enum AuthorityCommand {
    /// Shows the active, prepared and old authorities.
    Show(CommonArgs),
    /// Creates the next authority and publishes it in the bundle without signing with it yet.
    Prepare(CommonArgs),
    /// Makes the prepared authority sign; the active one becomes old.
    Activate(IdArgs),
    /// Marks the old authority as tainted: agents replace everything it signed at once.
    Taint(IdArgs),
    /// Removes the tainted old authority from the bundle.
    Revoke(IdArgs),
}

/// Flags of the commands that name an authority.
#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// The authority's ID, as `show` prints it.
    #[arg(long)]
    authority_id: String,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    X509,
    Jwt,
}

/// A change of one authority, named in output and errors.
#[derive(Clone, Copy, Debug)]
enum Change {
    Prepare,
    Activate,
    Taint,
    Revoke,
}

pub(super) async fn execute(command: LocalAuthorityCommand) -> anyhow::Result<()> {
    let (kind, command) = match command {
        LocalAuthorityCommand::X509(command) => (Kind::X509, command),
        LocalAuthorityCommand::Jwt(command) => (Kind::Jwt, command),
    };
    let (change, authority_id, common) = match command {
        AuthorityCommand::Show(common) => return show(kind, &common).await,
        AuthorityCommand::Prepare(common) => (Change::Prepare, String::new(), common),
        AuthorityCommand::Activate(args) => (Change::Activate, args.authority_id, args.common),
        AuthorityCommand::Taint(args) => (Change::Taint, args.authority_id, args.common),
        AuthorityCommand::Revoke(args) => (Change::Revoke, args.authority_id, args.common),
    };
    let client = connect(&common).await?;
    let state = request(kind, change, client, authority_id).await;
    print_state(kind, change, state, &common)
}

type Client = LocalAuthorityClient<Channel>;

async fn connect(common: &CommonArgs) -> anyhow::Result<Client> {
    Ok(LocalAuthorityClient::new(
        client::connect(&common.admin_socket).await?,
    ))
}

async fn show(kind: Kind, common: &CommonArgs) -> anyhow::Result<()> {
    let mut client = connect(common).await?;
    let slots = match kind {
        Kind::X509 => client
            .get_x509_authority_state(GetX509AuthorityStateRequest {})
            .await
            .map(|response| {
                let r = response.into_inner();
                [r.active, r.prepared, r.old]
            }),
        Kind::Jwt => client
            .get_jwt_authority_state(GetJwtAuthorityStateRequest {})
            .await
            .map(|response| {
                let r = response.into_inner();
                [r.active, r.prepared, r.old]
            }),
    }
    .map_err(|status| rpc_error(&format!("read the {} authorities", kind.name()), &status))?;

    match common.output {
        OutputFormat::Human => {
            let mut stdout = io::stdout().lock();
            for (slot, state) in ["Active", "Prepared", "Old"].iter().zip(&slots) {
                match state {
                    Some(state) => writeln!(stdout, "{slot} {}:\n{}", kind.name(), text(state))?,
                    None => writeln!(stdout, "{slot} {}: none\n", kind.name())?,
                }
            }
        }
        OutputFormat::Json => {
            let [active, prepared, old] = slots.each_ref().map(|state| state.as_ref().map(json));
            print_json(&serde_json::json!({
                "active": active,
                "prepared": prepared,
                "old": old,
            }))?;
        }
    }
    Ok(())
}

/// Sends one change to the server and returns the authority it applied to. `authority_id` is
/// ignored by `prepare`.
async fn request(
    kind: Kind,
    change: Change,
    mut client: Client,
    authority_id: String,
) -> Result<Option<AuthorityState>, Status> {
    Ok(match (kind, change) {
        (Kind::X509, Change::Prepare) => {
            let request = PrepareX509AuthorityRequest {};
            client
                .prepare_x509_authority(request)
                .await?
                .into_inner()
                .prepared_authority
        }
        (Kind::X509, Change::Activate) => {
            let request = ActivateX509AuthorityRequest { authority_id };
            client
                .activate_x509_authority(request)
                .await?
                .into_inner()
                .activated_authority
        }
        (Kind::X509, Change::Taint) => {
            let request = TaintX509AuthorityRequest { authority_id };
            client
                .taint_x509_authority(request)
                .await?
                .into_inner()
                .tainted_authority
        }
        (Kind::X509, Change::Revoke) => {
            let request = RevokeX509AuthorityRequest { authority_id };
            client
                .revoke_x509_authority(request)
                .await?
                .into_inner()
                .revoked_authority
        }
        (Kind::Jwt, Change::Prepare) => {
            let request = PrepareJwtAuthorityRequest {};
            client
                .prepare_jwt_authority(request)
                .await?
                .into_inner()
                .prepared_authority
        }
        (Kind::Jwt, Change::Activate) => {
            let request = ActivateJwtAuthorityRequest { authority_id };
            client
                .activate_jwt_authority(request)
                .await?
                .into_inner()
                .activated_authority
        }
        (Kind::Jwt, Change::Taint) => {
            let request = TaintJwtAuthorityRequest { authority_id };
            client
                .taint_jwt_authority(request)
                .await?
                .into_inner()
                .tainted_authority
        }
        (Kind::Jwt, Change::Revoke) => {
            let request = RevokeJwtAuthorityRequest { authority_id };
            client
                .revoke_jwt_authority(request)
                .await?
                .into_inner()
                .revoked_authority
        }
    })
}

/// Prints the authority a change applied to, or fails with the server's reason.
fn print_state(
    kind: Kind,
    change: Change,
    state: Result<Option<AuthorityState>, Status>,
    common: &CommonArgs,
) -> anyhow::Result<()> {
    let (verb, done) = change.words();
    let action = format!("{verb} the {} authority", kind.name());
    let state = state
        .map_err(|status| rpc_error(&action, &status))?
        .unwrap_or_default();
    match common.output {
        OutputFormat::Human => writeln!(
            io::stdout().lock(),
            "{done} {} authority:\n{}",
            kind.name(),
            text(&state)
        )?,
        OutputFormat::Json => {
            print_json(&serde_json::json!({ change.json_field(): json(&state) }))?
        }
    }
    Ok(())
}

impl Change {
    /// Returns the response field SPIRE's API names the changed authority by.
    fn json_field(self) -> &'static str {
        match self {
            Self::Prepare => "prepared_authority",
            Self::Activate => "activated_authority",
            Self::Taint => "tainted_authority",
            Self::Revoke => "revoked_authority",
        }
    }

    /// Returns the verb for errors and the past participle for output.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Self::Prepare => ("prepare", "Prepared"),
            Self::Activate => ("activate", "Activated"),
            Self::Taint => ("taint", "Tainted"),
            Self::Revoke => ("revoke", "Revoked"),
        }
    }
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::X509 => "X.509",
            Self::Jwt => "JWT",
        }
    }
}

fn text(state: &AuthorityState) -> String {
    format!(
        "  Authority ID : {}\n  Expires at   : {}\n",
        state.authority_id,
        unix_time_text(state.expires_at)
    )
}

fn json(state: &AuthorityState) -> serde_json::Value {
    serde_json::json!({
        "authority_id": state.authority_id,
        "expires_at": state.expires_at,
    })
}
