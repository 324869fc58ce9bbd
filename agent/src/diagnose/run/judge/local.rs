//! Judgements of the checks on the clinic's side of the uplink: the
//! terminals, the LAN interfaces and the device itself.

use std::net::IpAddr;
use std::time::Duration;

use super::{ok, skipped, Judged};
use crate::config::DiagnoseConfig;
use crate::diagnose::observe::{in_subnet, InterfaceState, Lease, Neighbour};
use crate::diagnose::probes::{DiskSpace, Probes};
use crate::diagnose::run::plan::TerminalTarget;
use crate::diagnose::{CheckStatus, Evidence};
use crate::identity::renewal::CertState;
use crate::identity::status::CertStatus;
use crate::metrics::{to_f64, CpuTimes, MemInfo};

pub fn judge_subnet(ip: IpAddr, subnets: &[(IpAddr, u32, String)]) -> Judged {
    if subnets.is_empty() {
        return skipped(
            "LAN のサブネットが分かりません（設定の [network] lan が未設定か、LAN にアドレスがありません）",
            "no LAN subnet is known ([network] lan unset, or no address on it)",
        );
    }
    let list = subnets.iter().map(|(n, l, i)| format!("{n}/{l} ({i})")).collect::<Vec<_>>().join(", ");
    match subnets.iter().find(|(net, len, _)| in_subnet(ip, *net, *len)) {
        Some((net, len, iface)) => (
            CheckStatus::Ok,
            ok(
                format!("{ip} は {iface} の {net}/{len} の範囲内です"),
                format!("{ip} is in {net}/{len} on {iface}"),
            )
            .with("ip", ip.to_string())
            .with("subnet", format!("{net}/{len}")),
        ),
        None => (
            CheckStatus::Failed,
            Evidence::new(
                format!("{ip} は LAN のサブネット {list} の範囲外です"),
                format!("{ip} is outside the LAN subnets {list}"),
            )
            .with("ip", ip.to_string())
            .with("lan_subnets", list),
        ),
    }
}

pub fn judge_lease(t: &TerminalTarget, leases: Option<Result<Vec<Lease>, String>>, now_unix: i64) -> Judged {
    let leases = match leases {
        None => {
            return skipped(
                "このルーターは DHCP を提供していません（設定の [network] dhcp_leases が未設定）",
                "this device serves no DHCP ([network] dhcp_leases unset)",
            )
        }
        Some(Err(e)) => return skipped(format!("DHCP の払い出し記録を読めません: {e}"), e),
        Some(Ok(leases)) => leases,
    };
    let found = leases
        .iter()
        .filter(|l| t.mac.as_deref().map_or(l.ip == t.ip, |mac| l.mac == mac))
        .max_by_key(|l| if l.expiry_unix == 0 { i64::MAX } else { l.expiry_unix });
    let (by_ja, by) = t.mac.clone().map_or_else(
        || (format!("アドレス {}", t.ip), format!("address {}", t.ip)),
        |mac| (format!("MAC {mac}"), format!("MAC {mac}")),
    );
    match found {
        Some(lease) if lease.is_active(now_unix) => {
            let mut e = Evidence::new(
                format!("{by_ja} に {} が払い出されています", lease.ip),
                format!("lease of {} for {by}", lease.ip),
            )
            .with("leased_ip", lease.ip.to_string())
            .with("mac", lease.mac.clone())
            .with("expiry_unix", lease.expiry_unix.to_string());
            if lease.ip != t.ip {
                let e = e.saying(
                    format!(
                        "{by_ja} に払い出されているのは {} で、登録された {} ではありません",
                        lease.ip, t.ip
                    ),
                    format!("{by} holds a lease of {}, not the registered {}", lease.ip, t.ip),
                );
                return (CheckStatus::Warning, e);
            }
            e = e.with("ip", t.ip.to_string());
            (CheckStatus::Ok, e)
        }
        Some(lease) => (
            CheckStatus::Failed,
            Evidence::new(
                format!("{by_ja} への {} の払い出しは期限切れです", lease.ip),
                format!("the lease of {} for {by} expired", lease.ip),
            )
            .with("leased_ip", lease.ip.to_string())
            .with("expiry_unix", lease.expiry_unix.to_string()),
        ),
        None => (
            CheckStatus::Failed,
            Evidence::new(
                format!("{by_ja} への DHCP の払い出しがありません"),
                format!("no DHCP lease for {by}"),
            )
            .with("ip", t.ip.to_string()),
        ),
    }
}

/// `terminal.duplicate_ip` of a terminal registered at one of this
/// router's own addresses: the terminal's address conflicts with the
/// router's (`conflict_with=router`).
pub fn judge_router_address(ip: IpAddr, iface: &str) -> Judged {
    (
        CheckStatus::Failed,
        Evidence::new(
            format!("{ip} はこのルーター自身の {iface} のアドレスです。端末のアドレスがルーターと重複しています"),
            format!("{ip} is this router's own address on {iface}: the terminal's address conflicts with the router's"),
        )
        .with("ip", ip.to_string())
        .with("iface", iface)
        .with("conflict_with", "router"),
    )
}

pub fn judge_duplicate(t: &TerminalTarget, scan: Result<Vec<String>, String>) -> Judged {
    match scan {
        Err(e) => skipped(format!("ARP で重複を調べられません: {e}"), e),
        Ok(macs) if macs.is_empty() => skipped(
            format!("{} について ARP に応答した機器がありません", t.ip),
            format!("no host answered ARP for {}", t.ip),
        ),
        Ok(macs) if macs.len() > 1 => (
            CheckStatus::Failed,
            Evidence::new(
                format!("{} に {} 台の機器（{}）が応答しています", t.ip, macs.len(), macs.join(", ")),
                format!("{} MACs answer for {}: {}", macs.len(), t.ip, macs.join(", ")),
            )
            .with("ip", t.ip.to_string())
            .with("macs", macs.join(",")),
        ),
        Ok(macs) => {
            let mac = macs.join(",");
            match &t.mac {
                Some(registered) if *registered != mac => (
                    CheckStatus::Warning,
                    Evidence::new(
                        format!("{} に応答したのは {mac} で、登録された {registered} ではありません", t.ip),
                        format!("{} is answered by {mac}, not the registered {registered}", t.ip),
                    )
                    .with("ip", t.ip.to_string())
                    .with("macs", mac)
                    .with("registered_mac", registered.clone()),
                ),
                _ => (
                    CheckStatus::Ok,
                    ok(
                        format!("{} に応答するのは {mac} だけです", t.ip),
                        format!("only {mac} answers for {}", t.ip),
                    )
                    .with("ip", t.ip.to_string())
                    .with("macs", mac),
                ),
            }
        }
    }
}

pub fn judge_neighbour(t: &TerminalTarget, entry: Option<&Neighbour>) -> Judged {
    match entry {
        Some(n) if n.is_complete() => {
            let e = Evidence::new(
                format!("{} は {} 上の {} です", n.ip, n.device, n.mac),
                format!("{} is at {} on {}", n.ip, n.mac, n.device),
            )
            .with("ip", n.ip.to_string())
            .with("mac", n.mac.clone())
            .with("device", n.device.clone());
            match &t.mac {
                Some(registered) if *registered != n.mac => {
                    let e = e.saying(
                        format!("{} の MAC は {} で、登録された {registered} ではありません", n.ip, n.mac),
                        format!("{} is at {}, not the registered {registered}", n.ip, n.mac),
                    );
                    (CheckStatus::Warning, e.with("registered_mac", registered.clone()))
                }
                _ => (CheckStatus::Ok, e),
            }
        }
        Some(n) => (
            CheckStatus::Failed,
            Evidence::new(
                format!("{} から ARP の応答がありません（{} の近隣表の登録が未完了）", n.ip, n.device),
                format!("no ARP answer from {} (entry incomplete on {})", n.ip, n.device),
            )
            .with("ip", n.ip.to_string())
            .with("state", "incomplete"),
        ),
        None => (
            CheckStatus::Failed,
            Evidence::new(
                format!("{} は近隣表（ARP）に載っていません", t.ip),
                format!("no neighbour entry for {}", t.ip),
            )
            .with("ip", t.ip.to_string())
            .with("state", "none"),
        ),
    }
}

pub fn judge_link(s: &InterfaceState) -> Judged {
    let e = Evidence::default()
        .with("iface", s.name.clone())
        .with("operstate", s.operstate.clone())
        .with("admin_up", s.admin_up.to_string())
        .with("carrier", s.carrier.to_string());
    let e = match s.mtu {
        Some(mtu) => e.with("mtu", mtu.to_string()),
        None => e,
    };
    if !s.admin_up {
        let ja = format!("{} は設定で停止（無効）されています", s.name);
        (CheckStatus::Failed, e.saying(ja, format!("{} is administratively down", s.name)))
    } else if !s.carrier || !s.oper_up {
        (
            CheckStatus::Failed,
            e.saying(
                format!("{} はリンクしていません（状態 {}、信号なし）", s.name, s.operstate),
                format!("{} has no link (operstate {}, no carrier)", s.name, s.operstate),
            ),
        )
    } else {
        let ja = format!("{} はリンクしています", s.name);
        (CheckStatus::Ok, e.saying(ja, format!("{} is up with carrier", s.name)))
    }
}

pub fn judge_bridge<P: Probes>(probes: &P, s: &InterfaceState) -> Judged {
    if let Some(ports) = &s.bridge_ports {
        let up: Vec<&String> =
            ports.iter().filter(|p| probes.interface(p).is_some_and(|i| i.carrier && i.oper_up)).collect();
        let e = Evidence::default()
            .with("bridge", s.name.clone())
            .with("ports", ports.join(","))
            .with("ports_up", up.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(","));
        return if ports.is_empty() {
            let ja = format!("ブリッジ {} にポートがありません", s.name);
            (CheckStatus::Failed, e.saying(ja, format!("bridge {} has no ports", s.name)))
        } else if up.is_empty() {
            (
                CheckStatus::Failed,
                e.saying(
                    format!("ブリッジ {} のどのポートもリンクしていません（{}）", s.name, ports.join(", ")),
                    format!("no port of bridge {} has a link ({})", s.name, ports.join(", ")),
                ),
            )
        } else {
            (
                CheckStatus::Ok,
                e.saying(
                    format!(
                        "ブリッジ {}: {} ポート中 {} ポートがリンクしています",
                        s.name,
                        ports.len(),
                        up.len()
                    ),
                    format!("bridge {}: {} of {} ports up", s.name, up.len(), ports.len()),
                ),
            )
        };
    }
    match &s.master {
        Some(bridge) => (
            CheckStatus::Ok,
            ok(
                format!("{} はブリッジ {bridge} のポートです", s.name),
                format!("{} is a port of {bridge}", s.name),
            )
            .with("bridge", bridge.clone()),
        ),
        None => skipped(
            format!("{} はブリッジでもブリッジのポートでもありません", s.name),
            format!("{} is neither a bridge nor a bridge port", s.name),
        ),
    }
}

pub fn judge_speed(s: &InterfaceState) -> Judged {
    let (Some(speed), duplex) = (s.speed_mbps, s.duplex.clone()) else {
        return skipped(
            format!("{} は速度を報告していません（仮想インターフェースか、リンクなし）", s.name),
            format!("{} reports no speed (virtual interface or no link)", s.name),
        );
    };
    let duplex = duplex.unwrap_or_else(|| "unknown".into());
    let duplex_ja = match duplex.as_str() {
        "full" => "全二重",
        "half" => "半二重",
        _ => "通信方式不明",
    };
    let e = Evidence::new(
        format!("{} は {speed} Mb/s、{duplex_ja}で動作しています", s.name),
        format!("{} at {speed} Mb/s, {duplex} duplex", s.name),
    )
    .with("speed_mbps", speed.to_string())
    .with("duplex", duplex.clone());
    if duplex == "half" || speed < 100 {
        (CheckStatus::Warning, e)
    } else {
        (CheckStatus::Ok, e)
    }
}

pub fn judge_errors(
    iface: &str,
    before: &InterfaceState,
    after: Option<&InterfaceState>,
    window: Duration,
) -> Judged {
    let Some(after) = after else {
        return (
            CheckStatus::Failed,
            Evidence::new(
                format!("{iface} が診断中に消えました"),
                format!("{iface} vanished during the run"),
            )
            .with("present", "false"),
        );
    };
    let (Some(b), Some(a)) = (before.errors, after.errors) else {
        return skipped(
            format!("{iface} のエラー計数を読めません"),
            format!("{iface} has no readable error counters"),
        );
    };
    let d = a.delta_since(&b);
    let e = Evidence::new(
        format!(
            "{iface} で {} ms の間にエラー {} 件、破棄 {} 件",
            window.as_millis(),
            d.errors(),
            d.dropped()
        ),
        format!("{} errors and {} drops on {iface} in {} ms", d.errors(), d.dropped(), window.as_millis()),
    )
    .with("rx_errors", d.rx_errors.to_string())
    .with("tx_errors", d.tx_errors.to_string())
    .with("rx_dropped", d.rx_dropped.to_string())
    .with("tx_dropped", d.tx_dropped.to_string())
    .with("window_ms", window.as_millis().to_string());
    if d.errors() > 0 {
        (CheckStatus::Warning, e)
    } else {
        (CheckStatus::Ok, e)
    }
}

pub fn judge_clock(now: time::OffsetDateTime, build: time::OffsetDateTime) -> Judged {
    let e = Evidence::default()
        .with("now", now.unix_timestamp().to_string())
        .with("build_time", build.unix_timestamp().to_string());
    if now < build {
        (
            CheckStatus::Failed,
            e.saying(
                "時計がエージェントの作成日時より前を指しています。時刻が合わせられていません",
                "the clock is before the agent's build time: it is not set",
            ),
        )
    } else {
        (
            CheckStatus::Ok,
            e.saying(
                "時刻は合わせられています（エージェントの作成日時より後）",
                "the clock is set (after the agent's build time)",
            ),
        )
    }
}

pub fn judge_memory(memory: Option<MemInfo>, settings: &DiagnoseConfig) -> Judged {
    let Some(m) = memory.filter(|m| m.total_kib > 0) else {
        return skipped("メモリの情報（/proc/meminfo）を読めません", "/proc/meminfo is unreadable");
    };
    let free_pct = to_f64(m.available_kib) * 100.0 / to_f64(m.total_kib);
    let e = Evidence::new(
        format!("{} MiB のうち {free_pct:.0}% が空いています", m.total_kib / 1024),
        format!("{free_pct:.0}% of {} MiB available", m.total_kib / 1024),
    )
    .with("available_kib", m.available_kib.to_string())
    .with("total_kib", m.total_kib.to_string())
    .with("available_pct", format!("{free_pct:.1}"));
    if free_pct < settings.min_free_memory_pct {
        (CheckStatus::Failed, e)
    } else if free_pct < settings.min_free_memory_pct * 2.0 {
        (CheckStatus::Warning, e)
    } else {
        (CheckStatus::Ok, e)
    }
}

pub fn judge_disk(disk: Result<DiskSpace, String>, settings: &DiagnoseConfig) -> Judged {
    match disk {
        Err(e) => (CheckStatus::Failed, Evidence::new(format!("保存領域の空きを調べられません: {e}"), e)),
        Ok(d) => {
            let kib = d.available_bytes / 1024;
            let e = Evidence::new(
                format!("保存領域の空きは {kib} KiB です"),
                format!("{kib} KiB free on the state partition"),
            )
            .with("available_kib", kib.to_string())
            .with("total_kib", (d.total_bytes / 1024).to_string());
            if kib < settings.min_free_disk_kib {
                (CheckStatus::Failed, e)
            } else if kib < settings.min_free_disk_kib.saturating_mul(4) {
                (CheckStatus::Warning, e)
            } else {
                (CheckStatus::Ok, e)
            }
        }
    }
}

pub fn judge_cpu(before: Option<CpuTimes>, after: Option<CpuTimes>, settings: &DiagnoseConfig) -> Judged {
    let (Some(b), Some(a)) = (before, after) else {
        return skipped("CPU の情報（/proc/stat）を読めません", "/proc/stat is unreadable");
    };
    let busy = a.busy_ticks().saturating_sub(b.busy_ticks());
    let idle = a.idle_ticks().saturating_sub(b.idle_ticks());
    let total = busy.saturating_add(idle);
    if total == 0 {
        return skipped(
            "2 回の読み取りの間に CPU 時間が進みませんでした",
            "no CPU time passed between two readings",
        );
    }
    let pct = to_f64(busy) * 100.0 / to_f64(total);
    let e = Evidence::new(format!("CPU 使用率は {pct:.0}% です"), format!("CPU {pct:.0}% busy"))
        .with("busy_pct", format!("{pct:.1}"));
    if pct >= settings.cpu_warn_pct {
        (CheckStatus::Warning, e)
    } else {
        (CheckStatus::Ok, e)
    }
}

pub fn judge_firewall(table: &str, present: Result<bool, String>, suspended: bool) -> Judged {
    match present {
        Err(e) => skipped(format!("ファイアウォール設定を読めません: {e}"), e),
        Ok(present) => {
            let e = Evidence::default()
                .with("table", table)
                .with("present", present.to_string())
                .with("expected", suspended.to_string());
            match (present, suspended) {
                (true, true) => (
                    CheckStatus::Ok,
                    e.saying(
                        format!("テーブル {table} が停止命令どおり通信を止めています"),
                        format!("table {table} enforces the suspension"),
                    ),
                ),
                (false, false) => (
                    CheckStatus::Ok,
                    e.saying(
                        format!("テーブル {table} はなく、通信は止められていません"),
                        format!("no table {table}: nothing blocked"),
                    ),
                ),
                (true, false) => (
                    CheckStatus::Failed,
                    e.saying(
                        format!("停止命令がないのにテーブル {table} が通信を止めています"),
                        format!("table {table} is present but no stop order is in force"),
                    ),
                ),
                (false, true) => (
                    CheckStatus::Failed,
                    e.saying(
                        format!("停止命令が出ているのにテーブル {table} がありません"),
                        format!("a stop order is in force but table {table} is missing"),
                    ),
                ),
            }
        }
    }
}

pub fn judge_certificate(status: Result<CertStatus, String>) -> Judged {
    let s = match status {
        Err(e) => {
            return (
                CheckStatus::Failed,
                Evidence::new(
                    format!("保存されている証明書を読めません: {e}"),
                    format!("the stored certificate is unreadable: {e}"),
                )
                .with("state", "unreadable"),
            )
        }
        Ok(s) => s,
    };
    let state =
        serde_json::to_value(s.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let mut e = Evidence::default().with("state", state);
    for (key, value) in
        [("not_after", &s.not_after), ("subject", &s.subject), ("institution_code", &s.institution_code)]
    {
        if let Some(v) = value {
            e = e.with(key, v.clone());
        }
    }
    if let Some(days) = s.days_left {
        e = e.with("days_left", days.to_string());
    }
    let until = s.not_after.clone().unwrap_or_default();
    match s.state {
        CertState::Valid => {
            (CheckStatus::Ok, e.saying(format!("{until} まで有効です"), format!("valid until {until}")))
        }
        CertState::Expiring => (
            CheckStatus::Warning,
            e.saying(
                format!("まもなく期限切れです（{until}）。更新が必要です"),
                format!("expires soon ({until}); renewal is due"),
            ),
        ),
        CertState::Expired => (
            CheckStatus::Failed,
            e.saying(format!("{until} に期限切れになりました"), format!("expired at {until}")),
        ),
        CertState::NotYetValid => (
            CheckStatus::Failed,
            e.saying(
                "まだ有効期間が始まっていません（時計が遅れていませんか）",
                "not yet valid (is the clock behind?)",
            ),
        ),
        CertState::None => (
            CheckStatus::Failed,
            e.saying("機関証明書がインストールされていません", "no institution certificate is installed"),
        ),
    }
}
