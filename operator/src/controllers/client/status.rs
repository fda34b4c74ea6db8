//! Status (pure): the next status of an AuthClient.

use k8s_openapi::jiff::Timestamp;
use portcullis_crds::AuthClient;
use portcullis_crds::client::AuthClientStatus;
use portcullis_crds::conditions::{ConditionUpdate, api_time, set_condition, types};

use super::admission::Verdict;

/// Where the credentials Secret stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretState {
    /// Written and current.
    Written,
    /// The realm has not generated the client secret yet.
    WaitingForRealm,
    /// A Secret of that name exists and is not this client's: nothing was written.
    NameTaken,
    /// Not admitted: no Secret (one written before was removed).
    NotWritten,
}

/// The next status.
pub fn next_status(
    client: &AuthClient,
    verdict: &Verdict,
    secret: &SecretState,
    realm_endpoint: Option<&str>,
    now: Timestamp,
) -> AuthClientStatus {
    let previous = client.status.clone().unwrap_or_default();
    let generation = client.metadata.generation;
    let now = api_time(now);
    let mut conditions = previous.conditions;
    let admitted = *verdict == Verdict::Admitted;
    set_condition(
        &mut conditions,
        ConditionUpdate {
            type_: types::ACCEPTED,
            status: admitted,
            reason: verdict.reason(),
            message: verdict.message(client),
        },
        generation,
        &now,
    );
    let secret_name = client.secret_name();
    let (ready, reason, message) = match (secret, admitted) {
        (SecretState::Written, _) => (
            true,
            "SecretWritten",
            format!("credentials in Secret {secret_name}"),
        ),
        (SecretState::WaitingForRealm, _) => (
            false,
            "WaitingForRealm",
            "the realm has not generated the client secret yet".to_owned(),
        ),
        (SecretState::NameTaken, _) => (
            false,
            "SecretNameTaken",
            format!(
                "Secret {secret_name} exists and was not created for this AuthClient: it is neither adopted nor overwritten; choose another spec.secretName"
            ),
        ),
        (SecretState::NotWritten, _) => (false, verdict.reason(), verdict.message(client)),
    };
    set_condition(
        &mut conditions,
        ConditionUpdate {
            type_: types::READY,
            status: ready,
            reason,
            message,
        },
        generation,
        &now,
    );
    AuthClientStatus {
        observed_generation: generation,
        conditions,
        client_id: admitted.then(|| client.client_id()),
        secret_name: (*secret == SecretState::Written).then_some(secret_name),
        realm_endpoint: realm_endpoint.filter(|_| admitted).map(str::to_owned),
    }
}
