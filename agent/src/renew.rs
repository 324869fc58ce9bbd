//! Certificate renewal over the existing channel.
//!
//! At the policy point ([`crate::identity::renewal`]) the agent makes a new
//! key and CSR on the device, asks the carrier to sign it over the current
//! mutual-TLS channel, installs the result through the same validation and
//! durable store as a manual import, then proves the new identity with a
//! handshake to the carrier. If that proof fails the previous identity is
//! restored, so a bad certificate can never cut the device off.

use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::channel::{CarrierClient, ChannelError};
use crate::config::AgentConfig;
use crate::identity::csr::{self, CsrSubject};
use crate::identity::store::{key_pem, IdentityStore, StoreError};
use crate::identity::validate::Policy;
use crate::identity::{self, ImportError, ImportInput};
use cpe_common::durable::Storage;

/// What a renewal attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome {
    /// Not due yet.
    NotDue,
    /// Renewed and proven; the new generation's name.
    Renewed(String),
}

/// Why a renewal failed. The previous identity is current in every case.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// No identity to renew.
    #[error("no identity is installed; import the institution certificate first")]
    NoIdentity,
    /// The configuration lacks what renewal needs.
    #[error("{0}")]
    Config(String),
    /// Making the key or CSR failed.
    #[error(transparent)]
    Csr(#[from] csr::CsrError),
    /// The carrier did not sign.
    #[error("the carrier did not sign the renewal: {0}")]
    Channel(#[from] ChannelError),
    /// The signed certificate was refused by the device's own checks.
    #[error("the renewed certificate was refused: {0}")]
    Import(#[from] ImportError),
    /// The new identity did not work against the carrier; rolled back.
    #[error("the renewed identity failed its handshake with the carrier ({0}); the previous identity was restored")]
    ProofFailed(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What renewal needs from the daemon.
#[derive(Debug)]
pub struct RenewContext<'a, S: Storage> {
    /// The identity store.
    pub store: &'a IdentityStore<S>,
    /// The agent configuration.
    pub config: &'a AgentConfig,
    /// Certification body anchors (the renewed certificate is validated like an import).
    pub trust_anchors: &'a [CertificateDer<'static>],
    /// The carrier server's CA.
    pub carrier_roots: &'a [CertificateDer<'static>],
    /// The current channel.
    pub client: &'a CarrierClient,
}

/// Renews the identity if the policy says it is due at `now` (or `force`).
pub async fn renew_if_due<S: Storage>(
    ctx: &RenewContext<'_, S>,
    now: OffsetDateTime,
    force: bool,
) -> Result<RenewOutcome, RenewError> {
    let current = ctx.store.load_current()?.ok_or(RenewError::NoIdentity)?;
    let leaf = current.chain.first().ok_or(RenewError::NoIdentity)?;
    let info = identity::validate::cert_info(leaf, ctx.config.institution_code_field)
        .map_err(|e| RenewError::Config(format!("current certificate unreadable: {e}")))?;
    if !force && !ctx.config.renewal.assess(info.not_before, info.not_after, now).renewal_due {
        return Ok(RenewOutcome::NotDue);
    }
    let code = ctx
        .config
        .institution_code
        .as_ref()
        .ok_or_else(|| RenewError::Config("institution_code is not configured".into()))?;
    // Keep the device unit (OU) of the current certificate: it is part of
    // the device id the carrier knows this unit by.
    let unit = x509_parser::parse_x509_certificate(leaf.as_ref()).ok().and_then(|(_, cert)| {
        cert.subject().iter_organizational_unit().find_map(|ou| ou.as_str().ok().map(str::to_owned))
    });
    let subject = CsrSubject {
        institution_code: code,
        common_name: ctx.config.csr.common_name.as_deref(),
        organization: ctx.config.csr.organization.as_deref(),
        unit: unit.as_deref().or(ctx.config.csr.unit.as_deref()),
    };
    let request = csr::generate(&subject, ctx.config.csr.key_type)?;
    let signed = ctx.client.enrol(request.csr_pem).await?;
    let key_text = key_pem(&request.key);
    let policy = Policy {
        trust_anchors: ctx.trust_anchors,
        institution_code: code,
        code_field: ctx.config.institution_code_field,
        build_time: crate::clock::build_time(),
    };
    let input = ImportInput {
        file: signed.chain_pem.as_bytes(),
        key_file: Some(key_text.as_bytes()),
        password: None,
    };
    let imported = identity::import(ctx.store, input, &policy, now)?;
    // Prove the new identity end to end before keeping it.
    let proof = match ctx.store.load_current()? {
        Some(new) => match CarrierClient::new(
            &new,
            ctx.carrier_roots,
            ctx.client.base_url(),
            ctx.client.device().to_owned(),
            std::time::Duration::from_secs(ctx.config.carrier.timeout_s),
        ) {
            Ok(client) => client.ping().await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        None => Err("the new identity is not current".into()),
    };
    if let Err(reason) = proof {
        ctx.store.rollback()?;
        return Err(RenewError::ProofFailed(reason));
    }
    tracing::info!(generation = %imported.generation, not_after = %identity::validate::rfc3339(imported.info.not_after), "certificate renewed");
    Ok(RenewOutcome::Renewed(imported.generation))
}
