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
        return skipped("no LAN subnet is known ([network] lan unset, or no address on it)");
    }
    let list = subnets.iter().map(|(n, l, i)| format!("{n}/{l} ({i})")).collect::<Vec<_>>().join(", ");
    match subnets.iter().find(|(net, len, _)| in_subnet(ip, *net, *len)) {
        Some((net, len, iface)) => (
            CheckStatus::Ok,
            ok(format!("{ip} is in {net}/{len} on {iface}"))
                .with("ip", ip.to_string())
                .with("subnet", format!("{net}/{len}")),
        ),
        None => (
            CheckStatus::Failed,
            Evidence::new(format!("{ip} is outside the LAN subnets {list}"))
                .with("ip", ip.to_string())
                .with("lan_subnets", list),
        ),
    }
}

pub fn judge_lease(t: &TerminalTarget, leases: Option<Result<Vec<Lease>, String>>, now_unix: i64) -> Judged {
    let leases = match leases {
        None => return skipped("this device serves no DHCP ([network] dhcp_leases unset)"),
        Some(Err(e)) => return skipped(e),
        Some(Ok(leases)) => leases,
    };
    let found = leases
        .iter()
        .filter(|l| t.mac.as_deref().map_or(l.ip == t.ip, |mac| l.mac == mac))
        .max_by_key(|l| if l.expiry_unix == 0 { i64::MAX } else { l.expiry_unix });
    let by = t.mac.clone().map_or_else(|| format!("address {}", t.ip), |mac| format!("MAC {mac}"));
    match found {
        Some(lease) if lease.is_active(now_unix) => {
            let mut e = Evidence::new(format!("lease of {} for {by}", lease.ip))
                .with("leased_ip", lease.ip.to_string())
                .with("mac", lease.mac.clone())
                .with("expiry_unix", lease.expiry_unix.to_string());
            if lease.ip != t.ip {
                e.text = format!("{by} holds a lease of {}, not the registered {}", lease.ip, t.ip);
                return (CheckStatus::Warning, e);
            }
            e = e.with("ip", t.ip.to_string());
            (CheckStatus::Ok, e)
        }
        Some(lease) => (
            CheckStatus::Failed,
            Evidence::new(format!("the lease of {} for {by} expired", lease.ip))
                .with("leased_ip", lease.ip.to_string())
                .with("expiry_unix", lease.expiry_unix.to_string()),
        ),
        None => (
            CheckStatus::Failed,
            Evidence::new(format!("no DHCP lease for {by}")).with("ip", t.ip.to_string()),
        ),
    }
}

pub fn judge_duplicate(t: &TerminalTarget, scan: Result<Vec<String>, String>) -> Judged {
    match scan {
        Err(e) => skipped(e),
        Ok(macs) if macs.is_empty() => skipped(format!("no host answered ARP for {}", t.ip)),
        Ok(macs) if macs.len() > 1 => (
            CheckStatus::Failed,
            Evidence::new(format!("{} MACs answer for {}: {}", macs.len(), t.ip, macs.join(", ")))
                .with("ip", t.ip.to_string())
                .with("macs", macs.join(",")),
        ),
        Ok(macs) => {
            let mac = macs.join(",");
            match &t.mac {
                Some(registered) if *registered != mac => (
                    CheckStatus::Warning,
                    Evidence::new(format!("{} is answered by {mac}, not the registered {registered}", t.ip))
                        .with("ip", t.ip.to_string())
                        .with("macs", mac)
                        .with("registered_mac", registered.clone()),
                ),
                _ => (
                    CheckStatus::Ok,
                    ok(format!("only {mac} answers for {}", t.ip))
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
            let e = Evidence::new(format!("{} is at {} on {}", n.ip, n.mac, n.device))
                .with("ip", n.ip.to_string())
                .with("mac", n.mac.clone())
                .with("device", n.device.clone());
            match &t.mac {
                Some(registered) if *registered != n.mac => {
                    let text = format!("{} is at {}, not the registered {registered}", n.ip, n.mac);
                    (CheckStatus::Warning, Evidence { text, ..e }.with("registered_mac", registered.clone()))
                }
                _ => (CheckStatus::Ok, e),
            }
        }
        Some(n) => (
            CheckStatus::Failed,
            Evidence::new(format!("no ARP answer from {} (entry incomplete on {})", n.ip, n.device))
                .with("ip", n.ip.to_string())
                .with("state", "incomplete"),
        ),
        None => (
            CheckStatus::Failed,
            Evidence::new(format!("no neighbour entry for {}", t.ip))
                .with("ip", t.ip.to_string())
                .with("state", "none"),
        ),
    }
}

pub fn judge_link(s: &InterfaceState) -> Judged {
    let e = Evidence::new(String::new())
        .with("iface", s.name.clone())
        .with("operstate", s.operstate.clone())
        .with("admin_up", s.admin_up.to_string())
        .with("carrier", s.carrier.to_string());
    let e = match s.mtu {
        Some(mtu) => e.with("mtu", mtu.to_string()),
        None => e,
    };
    if !s.admin_up {
        (CheckStatus::Failed, Evidence { text: format!("{} is administratively down", s.name), ..e })
    } else if !s.carrier || !s.oper_up {
        (
            CheckStatus::Failed,
            Evidence { text: format!("{} has no link (operstate {}, no carrier)", s.name, s.operstate), ..e },
        )
    } else {
        (CheckStatus::Ok, Evidence { text: format!("{} is up with carrier", s.name), ..e })
    }
}

pub fn judge_bridge<P: Probes>(probes: &P, s: &InterfaceState) -> Judged {
    if let Some(ports) = &s.bridge_ports {
        let up: Vec<&String> =
            ports.iter().filter(|p| probes.interface(p).is_some_and(|i| i.carrier && i.oper_up)).collect();
        let e = Evidence::new(String::new())
            .with("bridge", s.name.clone())
            .with("ports", ports.join(","))
            .with("ports_up", up.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(","));
        return if ports.is_empty() {
            (CheckStatus::Failed, Evidence { text: format!("bridge {} has no ports", s.name), ..e })
        } else if up.is_empty() {
            (
                CheckStatus::Failed,
                Evidence {
                    text: format!("no port of bridge {} has a link ({})", s.name, ports.join(", ")),
                    ..e
                },
            )
        } else {
            (
                CheckStatus::Ok,
                Evidence {
                    text: format!("bridge {}: {} of {} ports up", s.name, up.len(), ports.len()),
                    ..e
                },
            )
        };
    }
    match &s.master {
        Some(bridge) => {
            (CheckStatus::Ok, ok(format!("{} is a port of {bridge}", s.name)).with("bridge", bridge.clone()))
        }
        None => skipped(format!("{} is neither a bridge nor a bridge port", s.name)),
    }
}

pub fn judge_speed(s: &InterfaceState) -> Judged {
    let (Some(speed), duplex) = (s.speed_mbps, s.duplex.clone()) else {
        return skipped(format!("{} reports no speed (virtual interface or no link)", s.name));
    };
    let duplex = duplex.unwrap_or_else(|| "unknown".into());
    let e = Evidence::new(format!("{} at {speed} Mb/s, {duplex} duplex", s.name))
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
            Evidence::new(format!("{iface} vanished during the run")).with("present", "false"),
        );
    };
    let (Some(b), Some(a)) = (before.errors, after.errors) else {
        return skipped(format!("{iface} has no readable error counters"));
    };
    let d = a.delta_since(&b);
    let e = Evidence::new(format!(
        "{} errors and {} drops on {iface} in {} ms",
        d.errors(),
        d.dropped(),
        window.as_millis()
    ))
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
    let e = Evidence::new(String::new())
        .with("now", now.unix_timestamp().to_string())
        .with("build_time", build.unix_timestamp().to_string());
    if now < build {
        (
            CheckStatus::Failed,
            Evidence { text: "the clock is before the agent's build time: it is not set".into(), ..e },
        )
    } else {
        (CheckStatus::Ok, Evidence { text: "the clock is set (after the agent's build time)".into(), ..e })
    }
}

pub fn judge_memory(memory: Option<MemInfo>, settings: &DiagnoseConfig) -> Judged {
    let Some(m) = memory.filter(|m| m.total_kib > 0) else { return skipped("/proc/meminfo is unreadable") };
    let free_pct = to_f64(m.available_kib) * 100.0 / to_f64(m.total_kib);
    let e = Evidence::new(format!("{free_pct:.0}% of {} MiB available", m.total_kib / 1024))
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
        Err(e) => (CheckStatus::Failed, Evidence::new(e)),
        Ok(d) => {
            let kib = d.available_bytes / 1024;
            let e = Evidence::new(format!("{kib} KiB free on the state partition"))
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
    let (Some(b), Some(a)) = (before, after) else { return skipped("/proc/stat is unreadable") };
    let busy = a.busy_ticks().saturating_sub(b.busy_ticks());
    let idle = a.idle_ticks().saturating_sub(b.idle_ticks());
    let total = busy.saturating_add(idle);
    if total == 0 {
        return skipped("no CPU time passed between two readings");
    }
    let pct = to_f64(busy) * 100.0 / to_f64(total);
    let e = Evidence::new(format!("CPU {pct:.0}% busy")).with("busy_pct", format!("{pct:.1}"));
    if pct >= settings.cpu_warn_pct {
        (CheckStatus::Warning, e)
    } else {
        (CheckStatus::Ok, e)
    }
}

pub fn judge_firewall(table: &str, present: Result<bool, String>, suspended: bool) -> Judged {
    match present {
        Err(e) => skipped(e),
        Ok(present) => {
            let e = Evidence::new(String::new())
                .with("table", table)
                .with("present", present.to_string())
                .with("expected", suspended.to_string());
            match (present, suspended) {
                (true, true) => (
                    CheckStatus::Ok,
                    Evidence { text: format!("table {table} enforces the suspension"), ..e },
                ),
                (false, false) => {
                    (CheckStatus::Ok, Evidence { text: format!("no table {table}: nothing blocked"), ..e })
                }
                (true, false) => (
                    CheckStatus::Failed,
                    Evidence { text: format!("table {table} is present but no stop order is in force"), ..e },
                ),
                (false, true) => (
                    CheckStatus::Failed,
                    Evidence { text: format!("a stop order is in force but table {table} is missing"), ..e },
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
                Evidence::new(format!("the stored certificate is unreadable: {e}"))
                    .with("state", "unreadable"),
            )
        }
        Ok(s) => s,
    };
    let state =
        serde_json::to_value(s.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let mut e = Evidence::new(String::new()).with("state", state);
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
        CertState::Valid => (CheckStatus::Ok, Evidence { text: format!("valid until {until}"), ..e }),
        CertState::Expiring => {
            (CheckStatus::Warning, Evidence { text: format!("expires soon ({until}); renewal is due"), ..e })
        }
        CertState::Expired => (CheckStatus::Failed, Evidence { text: format!("expired at {until}"), ..e }),
        CertState::NotYetValid => {
            (CheckStatus::Failed, Evidence { text: "not yet valid (is the clock behind?)".into(), ..e })
        }
        CertState::None => {
            (CheckStatus::Failed, Evidence { text: "no institution certificate is installed".into(), ..e })
        }
    }
}
