//! `cpe-agent apply-state` and `cpe-agent orders status|apply`: the
//! command-line shell around [`cpe_agent::orders`]. Exit codes: 0 done or
//! applied, 1 the order was refused (nothing changed), 2 could not run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Subcommand;
use cpe_agent::audit::{AuditKind, AuditLog};
use cpe_agent::config::AgentConfig;
use cpe_agent::identity::validate::rfc3339;
use cpe_agent::lang::Lang;
use cpe_agent::orders::apply::ApplyError;
use cpe_agent::orders::device::{self, DeviceOrders};
use cpe_agent::orders::firewall::NftFirewall;
use cpe_agent::orders::state::{OrderState, StateStore};
use cpe_agent::orders::ClockState;
use cpe_common::durable::{write_atomic, OsStorage, MODE_PUBLIC};
use cpe_protocol::order::MAX_SIGNED_ORDER_BYTES;

use super::{Failure, EXIT_REFUSED};

#[derive(Debug, Subcommand)]
pub(super) enum OrdersCommand {
    /// Show the service state, the last applied sequence number, the
    /// trusted-time floor, the clock state and the trusted order keys.
    Status {
        /// Print JSON (keys: state, drill, order_id, sequence, reason_ja,
        /// reason_en, since, deadline, last_sequence, time_floor {at, source},
        /// clock {now, state, last_decision}, keys [{id, public_key, retired}],
        /// recovered_from_previous, last_receipt_scheme).
        #[arg(long)]
        json: bool,
    },
    /// Apply a signed order delivered out of band (the encoded signed order
    /// as the carrier's tooling writes it). Verified exactly like an order
    /// from the command channel. Exit 0 applied, 1 refused, 2 could not run.
    Apply {
        /// The signed order file.
        file: PathBuf,
        /// Write the signed enforcement receipt here, for the carrier.
        #[arg(long)]
        receipt_out: Option<PathBuf>,
    },
}

pub(super) fn run(config: &AgentConfig, command: &OrdersCommand, lang: Lang) -> Result<(), Failure> {
    match command {
        OrdersCommand::Status { json } => status(config, *json, lang),
        OrdersCommand::Apply { file, receipt_out } => apply(config, file, receipt_out.as_deref(), lang),
    }
}

/// Unix seconds as RFC 3339 (UTC), or the number if out of range.
fn when(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix).map_or_else(|_| unix.to_string(), rfc3339)
}

fn clock_name(state: ClockState) -> &'static str {
    match state {
        ClockState::Trusted => "trusted",
        ClockState::Untrusted => "untrusted",
    }
}

fn blocked_text(state: &OrderState, lang: Lang) -> String {
    let service = &state.service;
    let order = match (service.order_id, service.sequence) {
        (Some(id), Some(seq)) => format!(" (order {id}, sequence {seq})"),
        _ => String::new(),
    };
    match (service.blocks_forwarding(), lang) {
        (true, Lang::Ja) => format!(
            "サービス状態: {}{order}。LAN から WAN への転送を遮断しています。",
            service.state.as_str()
        ),
        (true, Lang::En) => {
            format!("service state: {}{order}; LAN→WAN forwarding blocked", service.state.as_str())
        }
        (false, Lang::Ja) => format!("サービス状態: {}{order}。遮断はありません。", service.state.as_str()),
        (false, Lang::En) => format!("service state: {}{order}; nothing blocked", service.state.as_str()),
    }
}

/// `cpe-agent apply-state`.
pub(super) fn apply_state(config: &AgentConfig, lang: Lang) -> Result<(), Failure> {
    let audit = AuditLog::with_config(&config.state_dir, config.audit);
    match device::apply_state(config, &NftFirewall::default(), &audit, true) {
        Ok(None) => {
            println!(
                "{}",
                match lang {
                    Lang::Ja => "命令は適用されたことがありません。遮断はありません。",
                    Lang::En => "no order was ever applied; nothing to enforce",
                }
            );
            Ok(())
        }
        Ok(Some(state)) => {
            println!("{}", blocked_text(&state, lang));
            Ok(())
        }
        Err(e) => Err(Failure::cannot_run(
            format!("cannot enforce the order state: {e}"),
            format!("命令の状態を適用できません: {e}"),
        )),
    }
}

fn status(config: &AgentConfig, json: bool, lang: Lang) -> Result<(), Failure> {
    let store = StateStore::new(OsStorage, &config.state_dir);
    let loaded = store
        .load()
        .map_err(|e| Failure::cannot_run(e.to_string(), format!("命令の状態を読めません: {e}")))?;
    let initialised = loaded.state.is_some();
    let state = match loaded.state {
        Some(state) => state,
        None => device::current_state(config)
            .map_err(|e| Failure::cannot_run(e.to_string(), format!("命令の状態を読めません: {e}")))?,
    };
    let clock = device::current_clock(config, None);
    let service = &state.service;
    let keys: Vec<serde_json::Value> = state
        .trusted_keys()
        .iter()
        .map(|k| {
            serde_json::json!({
                "id": cpe_common::hex::encode(&k.id),
                "public_key": cpe_common::hex::encode(&k.public_key),
                "retired": k.retired,
            })
        })
        .collect();
    if json {
        let doc = serde_json::json!({
            "initialised": initialised,
            "state": service.state.as_str(),
            "drill": service.drill,
            "order_id": service.order_id,
            "sequence": service.sequence,
            "reason_ja": service.reason_ja,
            "reason_en": service.reason_en,
            "since": service.since,
            "deadline": service.deadline,
            "last_sequence": state.last_sequence,
            "time_floor": state.time_floor,
            "clock": {
                "now": clock.now,
                "state": clock_name(clock.state),
                "last_decision": state.last_clock.map(clock_name),
            },
            "keys": keys,
            "recovered_from_previous": loaded.recovered_from_previous,
            "last_receipt_scheme": state.last_receipt.as_ref().map(|r| r.scheme),
        });
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Failure::cannot_run(e.to_string(), e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    let floor =
        serde_json::to_value(state.time_floor.source).ok().and_then(|v| v.as_str().map(str::to_owned));
    let floor = format!("{} ({})", when(state.time_floor.at), floor.unwrap_or_default());
    let active = keys.iter().filter(|k| k["retired"] == false).count();
    let last_decision = state.last_clock.map_or("-", clock_name);
    let reason = match lang {
        Lang::Ja => &service.reason_ja,
        Lang::En => &service.reason_en,
    };
    match lang {
        Lang::Ja => {
            println!("{}", blocked_text(&state, lang));
            if !reason.is_empty() {
                println!("理由: {reason}");
            }
            if let Some(deadline) = service.deadline {
                println!("是正期限: {}", when(deadline));
            }
            println!("最後に適用した番号: {}", state.last_sequence);
            println!("信頼できる時刻の下限: {floor}");
            println!("時計: {}（最後の判断: {last_decision}）", clock_name(clock.state));
            println!("命令鍵: 有効 {active} 個、廃止 {} 個", keys.len() - active);
        }
        Lang::En => {
            println!("{}", blocked_text(&state, lang));
            if !reason.is_empty() {
                println!("reason: {reason}");
            }
            if let Some(deadline) = service.deadline {
                println!("deadline: {}", when(deadline));
            }
            println!("last applied sequence: {}", state.last_sequence);
            println!("trusted-time floor: {floor}");
            println!("clock: {} (last decision: {last_decision})", clock_name(clock.state));
            println!("order keys: {active} active, {} retired", keys.len() - active);
        }
    }
    if let Some(problem) = &loaded.recovered_from_previous {
        eprintln!(
            "warning: {} was damaged ({problem}); the previous good version is in use",
            store.path().display()
        );
    }
    Ok(())
}

fn apply(config: &AgentConfig, file: &Path, receipt_out: Option<&Path>, lang: Lang) -> Result<(), Failure> {
    let bytes = match cpe_common::bounded::read_file(file, MAX_SIGNED_ORDER_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if cpe_common::bounded::is_too_large(&e) => {
            let detail = serde_json::json!({
                "class": "too_large",
                "reason": format!("order file {} {e}", file.display()),
            });
            let audit = AuditLog::with_config(&config.state_dir, config.audit);
            if let Err(e) =
                audit.append(AuditKind::OrderRefused, cpe_agent::clock::now().unix_timestamp(), detail)
            {
                eprintln!("warning: could not write the audit log: {e}");
            }
            return Err(Failure {
                code: EXIT_REFUSED,
                en: format!(
                    "order refused [too_large]: {} is larger than the limit of {MAX_SIGNED_ORDER_BYTES} bytes \
                     (nothing changed; not an order file?)",
                    file.display()
                ),
                ja: format!(
                    "命令を拒否しました [too_large]: {} は上限 {MAX_SIGNED_ORDER_BYTES} バイトを超えています\
                     （何も変更していません。命令ファイルか確認してください）",
                    file.display()
                ),
            });
        }
        Err(e) => {
            return Err(Failure::cannot_run(
                format!("cannot read {}: {e}", file.display()),
                format!("{} を読めません: {e}", file.display()),
            ))
        }
    };
    let started = Instant::now();
    let device = DeviceOrders::load(config, None)
        .map_err(|e| Failure::cannot_run(e.to_string(), format!("装置を特定できません: {e}")))?;
    let clock = device::current_clock(config, None);
    let applied = device.apply(config, &bytes, clock, &NftFirewall::default()).map_err(|e| match &e {
        ApplyError::Refused(_) | ApplyError::AlreadyApplied { .. } => Failure {
            code: EXIT_REFUSED,
            en: format!("{e} (nothing changed)"),
            ja: format!("命令を拒否しました [{}]: {}（何も変更していません）", e.class(), e),
        },
        ApplyError::State(_) | ApplyError::Enforce { .. } => {
            Failure::cannot_run(e.to_string(), format!("命令を適用できません [{}]: {e}", e.class()))
        }
    })?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let (Some(out), Some(receipt)) = (receipt_out, &applied.receipt) {
        let encoded =
            postcard::to_stdvec(receipt).map_err(|e| Failure::cannot_run(e.to_string(), e.to_string()))?;
        write_atomic(&OsStorage, out, &encoded, MODE_PUBLIC).map_err(|e| {
            Failure::cannot_run(
                format!("applied, but cannot write the receipt to {}: {e}", out.display()),
                format!("適用しましたが、受領証を {} に書けません: {e}", out.display()),
            )
        })?;
    }
    let order = &applied.verified.order;
    let clock = clock_name(applied.verified.time.state);
    println!(
        "{}",
        match lang {
            Lang::Ja => format!(
                "命令 {}（番号 {}）を適用しました（時計: {clock}、{elapsed_ms:.1} ms）。{}",
                order.id,
                order.sequence,
                blocked_text(&applied.state, lang)
            ),
            Lang::En => format!(
                "applied order {} (sequence {}, clock {clock}) in {elapsed_ms:.1} ms; {}",
                order.id,
                order.sequence,
                blocked_text(&applied.state, lang)
            ),
        }
    );
    if let Some(problem) = &applied.receipt_problem {
        eprintln!("warning: no signed receipt: {problem}");
    }
    Ok(())
}
