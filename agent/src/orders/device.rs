//! The device's side around the pipeline: who this device is for orders,
//! which trusted times raise the floor, the receipt signer, the real
//! firewall and audit log, and `apply-state`. Shared by the CLI
//! (`cpe-agent apply-state`, `orders status`, `orders apply`) and the daemon.

use cpe_common::durable::OsStorage;
use cpe_common::institution::DEFAULT_DEVICE;
use cpe_protocol::order::OrderTarget;

use super::apply::{apply_order, load_or_initial, reconcile_audit, Applied, ApplyEnv, ApplyError, AuditSink};
use super::firewall::{enforce, BlockPlan, Firewall, FirewallError};
use super::receipt::ReceiptSigner;
use super::state::{OrderState, StateError, StateStore};
use super::timesync::{clock_reading, synced_flag, CarrierTime};
use super::verify::{ClockReading, FloorSource};
use crate::audit::{AuditKind, AuditLog};
use crate::config::AgentConfig;
use crate::identity::store::{IdentityStore, StoredIdentity};
use crate::identity::validate;

/// What the device knows about itself for orders, read from the
/// configuration and the installed identity.
#[derive(Debug, Clone)]
pub struct DeviceOrders {
    /// This device as orders name it.
    pub target: OrderTarget,
    /// Build time, certificate `not_before` and, if confirmed, the carrier's time.
    pub floor_candidates: Vec<(FloorSource, i64)>,
    /// Signs receipts, if an identity is installed.
    pub signer: Option<ReceiptSigner>,
    /// Why there is no signer, if there is none.
    pub signer_problem: Option<String>,
    /// The provisioned order keys.
    pub initial_keys: Vec<[u8; 32]>,
    /// The interfaces a suspension blocks.
    pub plan: BlockPlan,
}

/// Why the device context could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Neither the certificate nor the configuration names the institution.
    #[error("this device has no institution code: import the institution certificate or set institution_code in the configuration")]
    NoInstitution,
}

fn target_from_leaf(identity: &StoredIdentity, config: &AgentConfig) -> Option<OrderTarget> {
    let leaf = identity.chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let code = validate::institution_code_of(&cert, config.institution_code_field)?;
    let unit = cert.subject().iter_organizational_unit().find_map(|ou| ou.as_str().ok());
    Some(OrderTarget { institution_code: code.as_str().to_owned(), device: device_unit(unit) })
}

fn device_unit(unit: Option<&str>) -> String {
    unit.map(str::trim).filter(|u| !u.is_empty()).unwrap_or(DEFAULT_DEVICE).to_owned()
}

impl DeviceOrders {
    /// Reads the identity (if any) and the configuration. The target is the
    /// certificate's institution code and unit (OU); without a certificate,
    /// the configured `institution_code` and `[csr] unit`, so a device whose
    /// identity was wiped can still be resumed out of band.
    pub fn load(config: &AgentConfig, carrier_time: Option<CarrierTime>) -> Result<Self, DeviceError> {
        let identity = IdentityStore::new(OsStorage, &config.state_dir).load_current();
        let identity = match identity {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "identity unreadable; orders are judged without it");
                None
            }
        };
        let target = identity
            .as_ref()
            .and_then(|id| target_from_leaf(id, config))
            .or_else(|| {
                config.institution_code.as_ref().map(|code| OrderTarget {
                    institution_code: code.as_str().to_owned(),
                    device: device_unit(config.csr.unit.as_deref()),
                })
            })
            .ok_or(DeviceError::NoInstitution)?;
        let mut floor_candidates =
            vec![(FloorSource::BuildTime, crate::clock::build_time().unix_timestamp())];
        if let Some(info) = identity
            .as_ref()
            .and_then(|id| id.chain.first())
            .and_then(|leaf| validate::cert_info(leaf, config.institution_code_field).ok())
        {
            floor_candidates.push((FloorSource::CertificateNotBefore, info.not_before.unix_timestamp()));
        }
        if let Some(carrier) = carrier_time {
            floor_candidates.push((FloorSource::CarrierSigned, carrier.server_now()));
        }
        let (signer, signer_problem) = match identity.as_ref().map(|id| ReceiptSigner::new(&id.key)) {
            Some(Ok(signer)) => (Some(signer), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, Some("no institution certificate is installed to sign receipts".to_owned())),
        };
        Ok(Self {
            target,
            floor_candidates,
            signer,
            signer_problem,
            initial_keys: config.orders.public_keys(),
            plan: block_plan(config),
        })
    }

    /// Verifies and applies `signed` (see [`apply_order`]).
    pub fn apply(
        &self,
        config: &AgentConfig,
        signed: &[u8],
        clock: ClockReading,
        firewall: &dyn Firewall,
    ) -> Result<Applied, ApplyError> {
        let store = StateStore::new(OsStorage, &config.state_dir);
        let env = ApplyEnv {
            device: &self.target,
            clock,
            floor_candidates: &self.floor_candidates,
            initial_keys: &self.initial_keys,
            plan: &self.plan,
            firewall,
            signer: self.signer.as_ref(),
            audit: &AuditLog::with_config(&config.state_dir, config.audit),
        };
        let mut applied = apply_order(&store, signed, &env)?;
        if applied.receipt.is_none() {
            if let Some(problem) = &self.signer_problem {
                applied.receipt_problem = Some(problem.clone());
            }
        }
        Ok(applied)
    }
}

/// The clock reading now: the system clock, trusted by the sync flag or a
/// confirming carrier time.
pub fn current_clock(config: &AgentConfig, carrier_time: Option<CarrierTime>) -> ClockReading {
    clock_reading(
        crate::clock::now().unix_timestamp(),
        synced_flag(config.orders.time_synced_flag.as_deref()),
        carrier_time,
    )
}

/// The persisted state, or the initial one of a device without orders.
pub fn current_state(config: &AgentConfig) -> Result<OrderState, StateError> {
    let store = StateStore::new(OsStorage, &config.state_dir);
    let candidates = [(FloorSource::BuildTime, crate::clock::build_time().unix_timestamp())];
    load_or_initial(&store, &config.orders.public_keys(), &candidates)
}

/// The interfaces a suspension is expressed with: `[network] lan` and the
/// uplinks (`[system] primary_uplink`, `backup_uplink`), and where LAN HTTP
/// is redirected to (`[notice] listen`).
pub fn block_plan(config: &AgentConfig) -> BlockPlan {
    let wan = [&config.system.primary_uplink, &config.system.backup_uplink]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    BlockPlan { lan: config.network.lan.clone(), wan, notice: config.notice.listen.clone() }
}

/// The suspension in force, for the diagnosis verdict ("suspended by order
/// N", N the carrier's order id, as `cpe-provision order show N` takes it); `None` when the service is not
/// suspended, or when the state cannot be read (logged: the diagnosis then
/// judges the network as it finds it).
pub fn suspension(config: &AgentConfig) -> Option<crate::diagnose::Suspension> {
    let store = StateStore::new(OsStorage, &config.state_dir);
    let state = match store.load() {
        Ok(loaded) => loaded.state?,
        Err(e) => {
            tracing::error!(error = %e, "order state unreadable; diagnosing without it");
            return None;
        }
    };
    state.service.blocks_forwarding().then(|| crate::diagnose::Suspension {
        order: state.service.order_id.unwrap_or(state.last_sequence),
        reason_ja: state.service.reason_ja.clone(),
        reason_en: state.service.reason_en.clone(),
    })
}

/// Why `apply-state` could not make the firewall match the state.
#[derive(Debug, thiserror::Error)]
pub enum ApplyStateError {
    /// The state is unreadable (see [`StateError`]); the firewall was left as it is.
    #[error(transparent)]
    State(#[from] StateError),
    /// The firewall could not be changed.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
}

/// Makes the firewall match the persisted state (early boot, start of `run`,
/// and the daemon's reconciliation). Idempotent. Returns the state enforced,
/// or `None` when no order was ever applied (then the firewall is not
/// touched at all). `at_start` (boot, the daemon's start) records a block in
/// the audit log and gives an order applied just before a crash its missing
/// audit record ([`reconcile_audit`]); a failure is always recorded; a
/// periodic reconciliation passes `false` so it does not fill the log.
pub fn apply_state(
    config: &AgentConfig,
    firewall: &dyn Firewall,
    audit: &dyn AuditSink,
    at_start: bool,
) -> Result<Option<OrderState>, ApplyStateError> {
    let store = StateStore::new(OsStorage, &config.state_dir);
    if !store.path().exists() && !store.previous_path().exists() {
        return Ok(None);
    }
    let _lock = store.lock()?;
    let loaded = store.load()?;
    if let Some(problem) = &loaded.recovered_from_previous {
        tracing::error!(path = %store.path().display(), %problem, "order state damaged; enforcing the previous good version");
    }
    let Some(state) = loaded.state else { return Ok(None) };
    if at_start {
        reconcile_audit(&state, audit, crate::clock::now().unix_timestamp());
    }
    let blocked = state.service.blocks_forwarding();
    let result = enforce(firewall, &block_plan(config), blocked);
    if (blocked && at_start) || result.is_err() {
        let detail = serde_json::json!({
            "source": "apply-state",
            "sequence": state.last_sequence,
            "blocked": blocked,
            "ok": result.is_ok(),
            "error": result.as_ref().err().map(ToString::to_string),
        });
        if let Err(e) = audit.append(AuditKind::Enforcement, crate::clock::now().unix_timestamp(), detail) {
            tracing::error!(error = %e, "could not write the audit log");
        }
    }
    result?;
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::state::ServiceRecord;
    use crate::orders::verify::TimeFloor;
    use cpe_protocol::receipt::ServiceState;

    fn config(dir: &std::path::Path) -> AgentConfig {
        let path = dir.join("agent.toml");
        std::fs::write(&path, "state_dir = \"state\"\n").unwrap();
        AgentConfig::load(&path).unwrap()
    }

    #[test]
    fn suspension_for_the_diagnosis_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        assert_eq!(suspension(&config), None, "a fresh device is not suspended");
        let store = StateStore::new(OsStorage, &config.state_dir);
        let mut state = OrderState::initial(&[], TimeFloor::from_build_time(0));
        state.last_sequence = 7;
        state.service = ServiceRecord {
            state: ServiceState::Suspended,
            order_id: Some(70),
            sequence: Some(6),
            reason_ja: "停止".into(),
            reason_en: "stopped".into(),
            since: Some(1),
            deadline: None,
            drill: false,
        };
        store.save(&state).unwrap();
        let found = suspension(&config).unwrap();
        assert_eq!(
            (found.order, found.reason_ja.as_str(), found.reason_en.as_str()),
            (70, "停止", "stopped")
        );
        state.service.state = ServiceState::Drill;
        store.save(&state).unwrap();
        assert_eq!(suspension(&config), None, "a drill blocks nothing");
        std::fs::write(store.path(), b"x").unwrap();
        std::fs::write(store.previous_path(), b"x").unwrap();
        assert_eq!(suspension(&config), None);
    }

    #[test]
    fn apply_state_at_start_records_an_applied_order_the_log_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let mut state = OrderState::initial(&[], TimeFloor::from_build_time(0));
        state.last_sequence = 3;
        StateStore::new(OsStorage, &config.state_dir).save(&state).unwrap();
        let audit = AuditLog::new(&config.state_dir);
        let firewall = crate::orders::firewall::fake::FakeFirewall::default();
        apply_state(&config, &firewall, &audit, false).unwrap();
        assert_eq!(audit.last_of_kind(AuditKind::Order).unwrap(), None, "a periodic check does not");
        apply_state(&config, &firewall, &audit, true).unwrap();
        let recovered = audit.last_of_kind(AuditKind::Order).unwrap().unwrap();
        assert_eq!((recovered["recovered"].clone(), recovered["sequence"].clone()), (true.into(), 3.into()));
        apply_state(&config, &firewall, &audit, true).unwrap();
        let export = dir.path().join("export");
        audit.export(&OsStorage, &export, 0).unwrap();
        let text = std::fs::read_to_string(export).unwrap();
        assert_eq!(text.matches("\"recovered\":true").count(), 1, "recorded once: {text}");
    }
}
