//! The self-diagnosis verdict (issue 4) as a pure function of check results:
//! every segment × status, first failure wins for every pair of segments,
//! warnings, skipped segments, suspension, the named fault scenarios of the
//! issue with realistic check names and evidence, and the report's JSON
//! shape, text rendering and exit codes.
#![allow(clippy::expect_used, missing_docs)]

use cpe_agent::diagnose::{
    checks, hint_for, CheckResult, CheckStatus, DiagnosisReport, Evidence, Segment, Suspension, Verdict,
    VerdictSegment, EXIT_COULD_NOT_RUN, EXIT_FAULT, EXIT_HEALTHY,
};
use cpe_agent::lang::Lang;
use serde_json::Value;
use time::macros::datetime;

const STATUSES: [CheckStatus; 4] =
    [CheckStatus::Ok, CheckStatus::Warning, CheckStatus::Failed, CheckStatus::Skipped];

/// Fixture evidence: what a probe saw, given as the English sentence; the
/// Japanese one is marked as the fixture's (the judges' own sentences are
/// checked in the runner's tests).
fn ev(en: impl Into<String>) -> Evidence {
    let en = en.into();
    Evidence::new(format!("試験用の証跡: {en}"), en)
}

/// The verdict of `run`, after rendering its Japanese report and requiring
/// every sentence of it outside values and names to be in Japanese: every
/// scenario below goes through here.
fn verdict(run: &[CheckResult], suspension: Option<&Suspension>) -> Verdict {
    let (report, verdict) = DiagnosisReport::build(
        "diag-scenario",
        datetime!(2026-11-25 08:00:00 UTC),
        1,
        run.to_vec(),
        suspension,
        Lang::Ja,
    )
    .expect("report");
    let gaps = report.untranslated_ja();
    assert!(
        gaps.is_empty(),
        "English-only text in the Japanese report: {gaps:?}\n{}",
        report.render_text(Lang::Ja)
    );
    verdict
}

/// A representative check per segment.
fn sample_name(segment: Segment) -> &'static str {
    match segment {
        Segment::Terminal => checks::TERMINAL_ICMP,
        Segment::Lan => checks::LAN_LINK,
        Segment::Device => checks::DEVICE_CERTIFICATE,
        Segment::Uplink => checks::UPLINK_DEFAULT_ROUTE,
        Segment::Carrier => checks::CARRIER_STATUS,
    }
}

fn check(name: &str, status: CheckStatus) -> CheckResult {
    let segment = checks::segment_of(name).expect("catalogued name");
    CheckResult::new(name, segment, status, ev(format!("{name} {}", status.as_str())), 3)
}

fn check_ev(name: &str, status: CheckStatus, evidence: Evidence) -> CheckResult {
    let segment = checks::segment_of(name).expect("catalogued name");
    CheckResult::new(name, segment, status, evidence, 12)
}

/// Every catalogued check `ok`, with realistic evidence where it matters.
fn healthy_run() -> Vec<CheckResult> {
    checks::ALL
        .iter()
        .map(|(name, _)| {
            let ev = match *name {
                n if n == checks::UPLINK_ACTIVE => {
                    ev("default route via primary (wan0)").with("active", "primary")
                }
                n if n == checks::UPLINK_PATH_MTU => ev("1500-byte DF probes pass").with("pmtu", "1500"),
                n if n == checks::UPLINK_LOSS => ev("0/20 probes lost").with("loss_pct", "0"),
                n => ev(format!("{n} ok")),
            };
            check_ev(name, CheckStatus::Ok, ev)
        })
        .collect()
}

/// `run` with the check `name` replaced (or added) by `status` + `ev`.
fn set(mut run: Vec<CheckResult>, name: &str, status: CheckStatus, ev: Evidence) -> Vec<CheckResult> {
    let new = check_ev(name, status, ev);
    match run.iter_mut().find(|c| c.name == name) {
        Some(c) => *c = new,
        None => run.push(new),
    }
    run
}

fn fail(run: Vec<CheckResult>, name: &str, ev: Evidence) -> Vec<CheckResult> {
    set(run, name, CheckStatus::Failed, ev)
}

fn skip(run: Vec<CheckResult>, name: &str, why: &str) -> Vec<CheckResult> {
    set(run, name, CheckStatus::Skipped, ev(why))
}

fn suspension() -> Suspension {
    Suspension {
        order: 7,
        reason_ja: "是正勧告の期限超過".to_owned(),
        reason_en: "corrective recommendation past its deadline".to_owned(),
    }
}

// ---------------------------------------------------------------- catalogue

#[test]
fn catalogue_names_are_unique_snake_case_and_prefixed_by_their_segment() {
    let mut seen = std::collections::HashSet::new();
    for (name, segment) in checks::ALL {
        assert!(seen.insert(*name), "duplicate {name}");
        assert!(name.starts_with(&format!("{}.", segment.as_str())), "{name} not under {segment}");
        assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'));
        assert_eq!(checks::segment_of(name), Some(*segment));
        assert_eq!(checks::segment_of(&format!("{name}@inst")), Some(*segment));
    }
    assert_eq!(checks::segment_of("uplink.nonsense"), None);
}

#[test]
fn every_catalogued_check_has_a_hint_in_both_languages() {
    for (name, segment) in checks::ALL {
        let h = hint_for(name, *segment);
        assert!(!h.ja.is_empty() && !h.en.is_empty(), "{name}");
        assert!(!h.ja.is_ascii(), "{name}: Japanese hint is not Japanese");
    }
}

#[test]
fn hints_are_keyed_by_the_name_before_the_instance() {
    assert_eq!(hint_for("lan.link@lan2", Segment::Lan), hint_for(checks::LAN_LINK, Segment::Lan));
    assert_eq!(
        hint_for("terminal.icmp@reception-pc", Segment::Terminal),
        hint_for(checks::TERMINAL_ICMP, Segment::Terminal)
    );
    // Unknown names fall back to the segment's hint.
    assert_eq!(hint_for("device.memory", Segment::Device), hint_for("device.whatever", Segment::Device));
}

// ------------------------------------------------ segment × status, single check

#[test]
fn every_segment_and_status_for_a_single_check() {
    for segment in Segment::PATH {
        for status in STATUSES {
            let name = sample_name(segment);
            let v = verdict(&[check(name, status)], None);
            match status {
                CheckStatus::Failed => {
                    assert_eq!(v.segment, VerdictSegment::from(segment), "{name}");
                    assert_eq!(v.failed_checks, vec![name.to_owned()]);
                    assert!(v.is_fault());
                    assert_eq!(v.exit_code(), EXIT_FAULT);
                    assert_eq!(v.hint, hint_for(name, segment));
                }
                CheckStatus::Ok => {
                    assert_eq!(v.segment, VerdictSegment::None);
                    assert!(v.failed_checks.is_empty() && v.warnings.is_empty());
                    assert_eq!(v.exit_code(), EXIT_HEALTHY);
                }
                CheckStatus::Warning => {
                    assert_eq!(v.segment, VerdictSegment::None);
                    assert_eq!(v.warnings, vec![name.to_owned()]);
                    assert!(v.summary.en.contains(name));
                    assert_eq!(v.exit_code(), EXIT_HEALTHY);
                }
                CheckStatus::Skipped => {
                    assert_eq!(v.segment, VerdictSegment::None);
                    assert!(v.ran_nothing());
                    assert_eq!(v.exit_code(), EXIT_COULD_NOT_RUN);
                }
            }
        }
    }
}

#[test]
fn every_segment_and_status_among_otherwise_healthy_checks() {
    for segment in Segment::PATH {
        for status in STATUSES {
            let name = sample_name(segment);
            let run = set(healthy_run(), name, status, ev("probe"));
            let v = verdict(&run, None);
            let expected = if status == CheckStatus::Failed {
                VerdictSegment::from(segment)
            } else {
                VerdictSegment::None
            };
            assert_eq!(v.segment, expected, "{name} {status:?}");
            assert!(v.unverified.is_empty(), "{name} {status:?}: {:?}", v.unverified);
            let code = if status == CheckStatus::Failed { EXIT_FAULT } else { EXIT_HEALTHY };
            assert_eq!(v.exit_code(), code);
        }
    }
}

#[test]
fn every_catalogued_check_failing_alone_names_its_own_segment() {
    for (name, segment) in checks::ALL {
        let v = verdict(&fail(healthy_run(), name, ev("broken")), None);
        if name.starts_with("uplink.primary.") || name.starts_with("uplink.backup.") {
            // `uplink.active` is ok: the other line carries traffic.
            assert_eq!(v.segment, VerdictSegment::None, "{name}");
            assert_eq!(v.warnings, vec![(*name).to_owned()]);
            continue;
        }
        assert_eq!(v.segment, VerdictSegment::from(*segment), "{name}");
        assert_eq!(v.failed_checks, vec![(*name).to_owned()]);
        assert_eq!(v.hint, hint_for(name, *segment));
    }
}

// ------------------------------------------------------- first failure wins

#[test]
fn first_failure_wins_for_every_pair_of_segments_in_either_input_order() {
    for (i, &a) in Segment::PATH.iter().enumerate() {
        for &b in &Segment::PATH[i + 1..] {
            // Terminal probes cross the LAN: a LAN failure explains them.
            let winner = if (a, b) == (Segment::Terminal, Segment::Lan) { b } else { a };
            let loser = if winner == a { b } else { a };
            for run in [
                vec![check(sample_name(a), CheckStatus::Failed), check(sample_name(b), CheckStatus::Failed)],
                vec![check(sample_name(b), CheckStatus::Failed), check(sample_name(a), CheckStatus::Failed)],
            ] {
                let v = verdict(&run, None);
                assert_eq!(v.segment, VerdictSegment::from(winner), "{a} + {b}");
                assert_eq!(v.failed_checks, vec![sample_name(winner).to_owned()]);
                assert_eq!(v.other_failed, vec![sample_name(loser).to_owned()]);
                assert!(v.summary.en.contains(sample_name(loser)), "{}", v.summary.en);
            }
        }
    }
}

#[test]
fn all_failures_of_the_faulty_segment_are_listed_in_input_order() {
    let run = vec![
        check(checks::UPLINK_GATEWAY_ARP, CheckStatus::Failed),
        check(checks::CARRIER_STATUS, CheckStatus::Failed),
        check(checks::UPLINK_GATEWAY_ICMP, CheckStatus::Failed),
        check(checks::UPLINK_DNS, CheckStatus::Ok),
    ];
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Uplink);
    assert_eq!(v.failed_checks, vec![checks::UPLINK_GATEWAY_ARP, checks::UPLINK_GATEWAY_ICMP]);
    assert_eq!(v.other_failed, vec![checks::CARRIER_STATUS]);
    assert_eq!(v.hint, hint_for(checks::UPLINK_GATEWAY_ARP, Segment::Uplink));
}

#[test]
fn the_hint_follows_the_most_basic_failed_check_of_the_segment() {
    let cases = [
        (checks::DEVICE_CERTIFICATE, checks::DEVICE_CLOCK),
        (checks::TERMINAL_ICMP, checks::TERMINAL_SUBNET),
        (checks::CARRIER_STATUS, checks::CARRIER_CERTIFICATE_ACCEPTED),
        (checks::UPLINK_TLS_HANDSHAKE, checks::UPLINK_LOSS),
        (checks::UPLINK_DNS, checks::UPLINK_GATEWAY_ICMP),
    ];
    for (symptom, cause) in cases {
        let segment = checks::segment_of(cause).expect("catalogued");
        let v = verdict(&[check(symptom, CheckStatus::Failed), check(cause, CheckStatus::Failed)], None);
        assert_eq!(v.failed_checks, vec![symptom, cause], "input order kept");
        assert_eq!(v.hint, hint_for(cause, segment), "{symptom} + {cause}");
        assert_ne!(v.hint, hint_for(symptom, segment), "{symptom} + {cause}: hints must differ");
    }
    // Names outside the catalogue rank last.
    assert!(checks::rank("uplink.experimental") > checks::rank(checks::UPLINK_JITTER));
    assert_eq!(checks::rank("lan.link@lan2"), checks::rank(checks::LAN_LINK));
}

// --------------------------------------------------------------- warnings

#[test]
fn warnings_only_is_healthy_and_lists_them() {
    let run: Vec<_> = Segment::PATH.iter().map(|s| check(sample_name(*s), CheckStatus::Warning)).collect();
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::None);
    assert_eq!(v.warnings.len(), 5);
    assert!(v.failed_checks.is_empty());
    assert!(v.unverified.is_empty());
    assert_eq!(v.exit_code(), EXIT_HEALTHY);
    assert!(v.hint.en.contains("nothing is urgent"), "{}", v.hint.en);
}

#[test]
fn warnings_are_listed_next_to_a_fault() {
    let run = vec![
        check(checks::UPLINK_LATENCY, CheckStatus::Warning),
        check(checks::DEVICE_CLOCK, CheckStatus::Failed),
    ];
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Device);
    assert_eq!(v.warnings, vec![checks::UPLINK_LATENCY]);
    assert!(v.summary.en.contains("Warnings: uplink.latency"));
}

// ----------------------------------------------------------- skipped segments

#[test]
fn all_skipped_or_empty_could_not_run() {
    let run: Vec<_> = checks::ALL.iter().map(|(n, _)| check(n, CheckStatus::Skipped)).collect();
    for run in [run, Vec::new()] {
        let v = verdict(&run, None);
        assert_eq!(v.segment, VerdictSegment::None);
        assert_eq!(v.unverified, Segment::PATH.to_vec());
        assert!(v.ran_nothing());
        assert_eq!(v.exit_code(), EXIT_COULD_NOT_RUN);
        assert!(v.summary.en.contains("nothing was verified"));
    }
}

#[test]
fn a_skipped_earlier_segment_is_passed_over_and_reported_unverified() {
    // No terminal configured: every terminal check skipped; the uplink fails.
    let mut run = healthy_run();
    for (name, seg) in checks::ALL {
        if *seg == Segment::Terminal {
            run = skip(run, name, "no terminal configured");
        }
    }
    let run = fail(run, checks::UPLINK_DNS, ev("SERVFAIL for carrier.example.jp"));
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Uplink);
    assert_eq!(v.unverified, vec![Segment::Terminal]);
    assert!(v.summary.en.contains("Not verified: terminal"), "{}", v.summary.en);
    assert!(v.summary.ja.contains("未確認の区間: 端末"), "{}", v.summary.ja);
}

#[test]
fn a_missing_segment_counts_as_unverified_and_healthy_when_the_rest_is_ok() {
    // `--segment uplink`: only uplink checks ran.
    let run: Vec<_> = checks::ALL
        .iter()
        .filter(|(_, s)| *s == Segment::Uplink)
        .map(|(n, _)| check(n, CheckStatus::Ok))
        .collect();
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::None);
    assert_eq!(v.unverified, vec![Segment::Terminal, Segment::Lan, Segment::Device, Segment::Carrier]);
    assert_eq!(v.exit_code(), EXIT_HEALTHY);
}

#[test]
fn a_segment_with_one_ok_check_among_skips_is_verified() {
    let run = vec![
        check(checks::TERMINAL_DHCP_LEASE, CheckStatus::Skipped),
        check(checks::TERMINAL_ICMP, CheckStatus::Ok),
        check(checks::CARRIER_PLATFORM, CheckStatus::Failed),
    ];
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Carrier);
    assert_eq!(v.unverified, vec![Segment::Lan, Segment::Device, Segment::Uplink]);
}

#[test]
fn skipped_checks_behind_a_failure_do_not_change_the_verdict() {
    let run = vec![
        check(checks::UPLINK_PRIMARY_LINK, CheckStatus::Failed),
        check(checks::UPLINK_DNS, CheckStatus::Skipped),
        check(checks::CARRIER_STATUS, CheckStatus::Skipped),
    ];
    assert_eq!(verdict(&run, None).segment, VerdictSegment::Uplink);
}

// --------------------------------------------------------------- suspension

#[test]
fn suspension_overrides_any_failure_and_is_not_a_fault() {
    let order = suspension();
    for segment in Segment::PATH {
        let run = fail(healthy_run(), sample_name(segment), ev("broken"));
        let v = verdict(&run, Some(&order));
        assert_eq!(v.segment, VerdictSegment::Suspended);
        assert!(!v.is_fault());
        assert_eq!(v.failed_checks, vec![sample_name(segment).to_owned()]);
        assert_eq!(v.exit_code(), EXIT_FAULT);
    }
}

#[test]
fn suspension_on_a_healthy_run_names_the_order_and_its_reason() {
    let v = verdict(&healthy_run(), Some(&suspension()));
    assert_eq!(v.segment, VerdictSegment::Suspended);
    assert!(v.summary.en.contains("suspended by order 7"), "{}", v.summary.en);
    assert!(v.summary.en.contains("corrective recommendation past its deadline"));
    assert!(v.summary.en.contains("not a fault"));
    assert!(v.summary.ja.contains("番号 7") && v.summary.ja.contains("是正勧告の期限超過"));
    assert!(v.hint.en.contains("order 7"));
    assert!(v.failed_checks.is_empty());
}

#[test]
fn suspension_with_nothing_run_is_still_suspended() {
    let v = verdict(&[], Some(&suspension()));
    assert_eq!(v.segment, VerdictSegment::Suspended);
    assert_eq!(v.exit_code(), EXIT_FAULT);
}

// ------------------------------------------------ the issue's named scenarios

#[test]
fn scenario_healthy() {
    let v = verdict(&healthy_run(), None);
    assert_eq!(v.segment, VerdictSegment::None);
    assert!(v.warnings.is_empty() && v.failed_checks.is_empty() && v.unverified.is_empty());
    assert_eq!(v.summary.en, "No fault found.");
    assert_eq!(v.exit_code(), EXIT_HEALTHY);
}

#[test]
fn scenario_terminal_down() {
    let run = fail(
        healthy_run(),
        "terminal.neighbour@reception-pc",
        ev("neighbour 192.168.1.20 FAILED").with("ip", "192.168.1.20").with("state", "FAILED"),
    );
    let run = fail(
        run,
        "terminal.icmp@reception-pc",
        ev("0/3 echo replies from 192.168.1.20").with("ip", "192.168.1.20").with("received", "0"),
    );
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Terminal);
    assert_eq!(v.failed_checks, vec!["terminal.neighbour@reception-pc", "terminal.icmp@reception-pc"]);
    assert!(v.hint.en.contains("PC vendor"));
    assert!(v.hint.ja.contains("保守業者"));
}

#[test]
fn scenario_terminal_wrong_subnet() {
    let run = fail(
        healthy_run(),
        "terminal.subnet@receipt-pc",
        ev("192.168.10.50 is not in 192.168.1.0/24")
            .with("ip", "192.168.10.50")
            .with("subnet", "192.168.1.0/24"),
    );
    let run = skip(run, "terminal.icmp@receipt-pc", "terminal outside the LAN subnet");
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Terminal);
    assert_eq!(v.failed_checks, vec!["terminal.subnet@receipt-pc"]);
    assert!(v.hint.en.contains("outside the clinic LAN"));
}

#[test]
fn scenario_duplicate_ip_on_the_lan() {
    let run = fail(
        healthy_run(),
        checks::TERMINAL_DUPLICATE_IP,
        ev("two MACs answer for 192.168.1.20")
            .with("ip", "192.168.1.20")
            .with("macs", "02:00:00:00:00:01,02:00:00:00:00:02"),
    );
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Terminal);
    assert!(v.hint.en.contains("same IP address"));
}

#[test]
fn scenario_lan_interface_down_silences_the_terminals_behind_it() {
    let run = fail(
        healthy_run(),
        "lan.link@lan1",
        ev("lan1 oper down, no carrier").with("oper", "down").with("carrier", "0"),
    );
    let run = fail(run, "terminal.neighbour@reception-pc", ev("neighbour FAILED"));
    let run = fail(run, "terminal.icmp@reception-pc", ev("0/3 echo replies"));
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Lan);
    assert_eq!(v.failed_checks, vec!["lan.link@lan1"]);
    assert_eq!(v.other_failed, vec!["terminal.neighbour@reception-pc", "terminal.icmp@reception-pc"]);
    assert!(v.hint.en.contains("LAN cable"));
}

#[test]
fn scenario_certificate_expired_or_missing() {
    for evidence in [
        ev("certificate expired 2026-10-31T00:00:00Z").with("not_after", "2026-10-31T00:00:00Z"),
        ev("no certificate installed").with("state", "missing"),
    ] {
        let run = fail(healthy_run(), checks::DEVICE_CERTIFICATE, evidence);
        // The carrier refuses an expired certificate too: the device is named first.
        let run = fail(
            run,
            checks::CARRIER_CERTIFICATE_ACCEPTED,
            ev("TLS alert certificate_expired").with("alert", "certificate_expired"),
        );
        let v = verdict(&run, None);
        assert_eq!(v.segment, VerdictSegment::Device);
        assert_eq!(v.failed_checks, vec![checks::DEVICE_CERTIFICATE]);
        assert_eq!(v.other_failed, vec![checks::CARRIER_CERTIFICATE_ACCEPTED]);
        assert!(v.hint.en.contains("cpe-agent cert import"));
    }
}

#[test]
fn scenario_clock_insane() {
    let run = fail(
        healthy_run(),
        checks::DEVICE_CLOCK,
        ev("clock 1970-01-01T00:01:00Z is before the build time")
            .with("now", "1970-01-01T00:01:00Z")
            .with("floor", "2026-11-01T00:00:00Z"),
    );
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Device);
    assert!(v.hint.en.contains("clock"));
}

#[test]
fn scenario_nftables_not_as_expected() {
    let run = fail(
        healthy_run(),
        checks::DEVICE_FIREWALL,
        ev("ruleset hash differs").with("expected", "3f2a").with("actual", "9b1c"),
    );
    let run = fail(run, checks::UPLINK_TCP_CONNECT, ev("timeout"));
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Device);
    assert!(v.hint.en.contains("firewall ruleset"));
}

#[test]
fn scenario_wan_link_down_without_backup() {
    let run = fail(healthy_run(), checks::UPLINK_PRIMARY_LINK, ev("wan0 no carrier").with("if", "wan0"));
    let run = skip(run, checks::UPLINK_BACKUP_LINK, "no backup uplink configured");
    let run = skip(run, checks::UPLINK_BACKUP_ADDRESS, "no backup uplink configured");
    let run = fail(run, checks::UPLINK_ACTIVE, ev("no uplink carries the default route"));
    let run = fail(run, checks::UPLINK_DEFAULT_ROUTE, ev("no default route"));
    let run = skip(run, checks::UPLINK_DNS, "no default route");
    let run = fail(run, checks::CARRIER_STATUS, ev("unreachable"));
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Uplink);
    assert_eq!(
        v.failed_checks,
        vec![checks::UPLINK_PRIMARY_LINK, checks::UPLINK_ACTIVE, checks::UPLINK_DEFAULT_ROUTE]
    );
    assert!(v.hint.en.contains("line provider"));
}

#[test]
fn scenario_both_uplinks_down() {
    let run = fail(healthy_run(), checks::UPLINK_PRIMARY_LINK, ev("wan0 no carrier"));
    let run = fail(run, checks::UPLINK_BACKUP_LINK, ev("wwan0 no carrier"));
    let run = fail(run, checks::UPLINK_ACTIVE, ev("no uplink carries the default route"));
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Uplink);
    assert!(v.warnings.is_empty(), "per-line failures stay failures: {:?}", v.warnings);
}

#[test]
fn scenario_primary_down_with_traffic_on_the_backup_is_healthy_with_a_warning() {
    let run = fail(
        healthy_run(),
        checks::UPLINK_PRIMARY_LINK,
        ev("wan0 no carrier").with("if", "wan0").with("carrier", "0"),
    );
    let run = fail(run, checks::UPLINK_PRIMARY_ADDRESS, ev("wan0 has no address"));
    let run = set(
        run,
        checks::UPLINK_ACTIVE,
        CheckStatus::Ok,
        ev("default route via backup (wwan0)").with("active", "backup"),
    );
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::None);
    assert_eq!(v.warnings, vec![checks::UPLINK_PRIMARY_LINK, checks::UPLINK_PRIMARY_ADDRESS]);
    assert!(v.failed_checks.is_empty());
    assert_eq!(v.exit_code(), EXIT_HEALTHY);
    assert!(v.hint.en.contains("line provider"), "{}", v.hint.en);
    assert!(v.summary.en.contains("Warnings: uplink.primary.link"));
}

#[test]
fn scenario_gateway_unreachable() {
    let run = fail(healthy_run(), checks::UPLINK_GATEWAY_ARP, ev("no ARP reply").with("gw", "203.0.113.1"));
    let run = fail(run, checks::UPLINK_GATEWAY_ICMP, ev("0/3 echo replies").with("gw", "203.0.113.1"));
    let run = fail(run, checks::UPLINK_DNS, ev("timeout"));
    let run = fail(run, checks::CARRIER_STATUS, ev("unreachable"));
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Uplink);
    assert_eq!(
        v.failed_checks,
        vec![checks::UPLINK_GATEWAY_ARP, checks::UPLINK_GATEWAY_ICMP, checks::UPLINK_DNS]
    );
    assert_eq!(v.other_failed, vec![checks::CARRIER_STATUS]);
    assert!(v.hint.en.contains("gateway"));
}

#[test]
fn scenario_dns_failure() {
    let run = fail(
        healthy_run(),
        checks::UPLINK_DNS,
        ev("carrier.example.jp: SERVFAIL").with("name", "carrier.example.jp").with("rcode", "SERVFAIL"),
    );
    let run = skip(run, checks::UPLINK_TCP_CONNECT, "name did not resolve");
    let run = skip(run, checks::CARRIER_STATUS, "name did not resolve");
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Uplink);
    assert!(v.hint.en.contains("DNS"));
}

#[test]
fn scenario_mtu_black_hole() {
    let run = fail(
        healthy_run(),
        checks::UPLINK_PATH_MTU,
        ev("DF probes above 1400 bytes vanish, no ICMP frag-needed")
            .with("largest_ok", "1400")
            .with("smallest_lost", "1401"),
    );
    let run = fail(run, checks::UPLINK_TLS_HANDSHAKE, ev("stalled after ClientHello"));
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Uplink);
    assert_eq!(v.failed_checks, vec![checks::UPLINK_PATH_MTU, checks::UPLINK_TLS_HANDSHAKE]);
    // The hint names the more basic cause, not the handshake it broke.
    assert!(v.hint.en.contains("MTU black hole"), "{}", v.hint.en);
}

#[test]
fn scenario_heavy_loss() {
    let run = fail(
        healthy_run(),
        checks::UPLINK_LOSS,
        ev("12/20 probes lost").with("loss_pct", "60").with("probes", "20"),
    );
    let run = set(run, checks::UPLINK_LATENCY, CheckStatus::Warning, ev("rtt p50 180 ms"));
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Uplink);
    assert_eq!(v.failed_checks, vec![checks::UPLINK_LOSS]);
    assert_eq!(v.warnings, vec![checks::UPLINK_LATENCY]);
    assert!(v.hint.en.contains("packet loss"));
}

#[test]
fn scenario_carrier_server_stopped() {
    let run = set(
        healthy_run(),
        checks::UPLINK_TCP_CONNECT,
        CheckStatus::Ok,
        ev("connection refused by 198.51.100.10:443").with("refused", "true"),
    );
    let run = fail(run, checks::CARRIER_STATUS, ev("connection refused").with("port", "443"));
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Carrier);
    assert!(v.hint.en.contains("carrier's NOC"));
    assert!(v.hint.ja.contains("運用センター"));
}

#[test]
fn scenario_carrier_rejects_the_certificate() {
    let run = fail(
        healthy_run(),
        checks::CARRIER_CERTIFICATE_ACCEPTED,
        ev("TLS alert certificate_revoked from the carrier").with("alert", "certificate_revoked"),
    );
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Carrier);
    assert!(v.hint.en.contains("refused this institution's certificate"));
}

#[test]
fn scenario_platform_unreachable_beyond_the_demarcation() {
    let run = fail(
        healthy_run(),
        checks::CARRIER_PLATFORM,
        ev("0/5 replies from 192.0.2.200").with("address", "192.0.2.200"),
    );
    let v = verdict(&run, None);
    assert_eq!(v.segment, VerdictSegment::Carrier);
    assert!(v.hint.en.contains("platform"));
}

// ------------------------------------------------------------------ report

fn sample_report(lang: Lang) -> DiagnosisReport {
    let run = vec![
        check_ev(
            checks::UPLINK_GATEWAY_ICMP,
            CheckStatus::Failed,
            ev("0/3 echo replies").with("gw", "203.0.113.1"),
        ),
        check(checks::UPLINK_LATENCY, CheckStatus::Warning),
        check(checks::DEVICE_CLOCK, CheckStatus::Ok),
        check(checks::TERMINAL_DHCP_LEASE, CheckStatus::Skipped),
    ];
    let (report, verdict) =
        DiagnosisReport::build("diag-0001", datetime!(2026-11-25 17:00:00 +09:00), 1234, run, None, lang)
            .expect("report");
    assert_eq!(verdict.segment, VerdictSegment::Uplink);
    report
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[test]
fn json_has_exactly_the_shape_of_the_issue() {
    let report = sample_report(Lang::En);
    let v: Value = serde_json::from_str(&report.to_json().expect("json")).expect("parse");
    assert_eq!(keys(&v), ["checks", "duration_ms", "id", "started_at", "verdict"]);
    assert_eq!(keys(&v["verdict"]), ["hint", "segment", "summary"]);
    assert_eq!(v["id"], "diag-0001");
    assert_eq!(v["started_at"], "2026-11-25T08:00:00Z", "UTC RFC 3339");
    assert_eq!(v["duration_ms"], 1234);
    assert_eq!(v["verdict"]["segment"], "uplink");
    assert!(v["verdict"]["summary"].as_str().expect("str").starts_with("Fault in the uplink"));
    let checks = v["checks"].as_array().expect("array");
    assert_eq!(checks.len(), 4);
    for c in checks {
        assert_eq!(keys(c), ["duration_ms", "evidence", "name", "segment", "status"]);
        assert!(c["duration_ms"].is_u64());
    }
    let statuses: Vec<&str> = checks.iter().map(|c| c["status"].as_str().expect("str")).collect();
    assert_eq!(statuses, ["failed", "warning", "ok", "skipped"]);
    let segments: Vec<&str> = checks.iter().map(|c| c["segment"].as_str().expect("str")).collect();
    assert_eq!(segments, ["uplink", "uplink", "device", "terminal"]);
    assert_eq!(checks[0]["name"], "uplink.gateway_icmp");
    assert_eq!(checks[0]["evidence"]["text"]["en"], "0/3 echo replies");
    assert_eq!(checks[0]["evidence"]["text"]["ja"], "試験用の証跡: 0/3 echo replies");
    assert_eq!(checks[0]["evidence"]["values"]["gw"], "203.0.113.1");
    // Round trip.
    let back: DiagnosisReport = serde_json::from_value(v).expect("deserialise");
    assert_eq!(back, report);
}

#[test]
fn a_report_stored_before_the_translation_still_reads() {
    let old = r#"{"id":"diag-0","started_at":"2026-11-25T08:00:00Z","duration_ms":1,
        "verdict":{"segment":"uplink","summary":"s","hint":"h"},
        "checks":[{"name":"uplink.dns","segment":"uplink","status":"failed",
        "evidence":{"text":"cannot resolve carrier.example.jp","values":{"host":"carrier.example.jp"}},"duration_ms":3}]}"#;
    let report: DiagnosisReport = serde_json::from_str(old).expect("legacy report");
    let text = &report.checks[0].evidence.text;
    assert_eq!(
        (text.ja.as_str(), text.en.as_str()),
        ("cannot resolve carrier.example.jp", "cannot resolve carrier.example.jp")
    );
    assert_eq!(report.checks[0].evidence.values["host"], "carrier.example.jp");
}

#[test]
fn the_japanese_check_finds_english_only_sentences() {
    let report = sample_report(Lang::Ja);
    assert!(report.untranslated_ja().is_empty(), "{:?}", report.untranslated_ja());
    let mut english = report.clone();
    english.checks[0].evidence = Evidence::new("no echo reply", "no echo reply").with("gw", "203.0.113.1");
    assert_eq!(english.untranslated_ja(), ["no echo reply"]);
    let mut empty = report.clone();
    empty.checks[1].evidence = Evidence::default();
    assert_eq!(empty.untranslated_ja().len(), 1, "{:?}", empty.untranslated_ja());
    let mut hint = report;
    hint.verdict.hint = "Restart the ONU。ONU を再起動してください".into();
    assert_eq!(hint.untranslated_ja(), ["Restart the ONU"]);
    let text = english.render_text(Lang::Ja);
    assert!(text.contains("試験用の証跡: 0/3 echo replies") || text.contains("no echo reply"), "{text}");
}

#[test]
fn json_uses_the_requested_language_for_summary_and_hint() {
    let ja = sample_report(Lang::Ja);
    assert!(ja.verdict.summary.starts_with("回線に障害があります"), "{}", ja.verdict.summary);
    assert!(ja.verdict.hint.contains("回線事業者"));
    let en = sample_report(Lang::En);
    assert!(en.verdict.hint.contains("line provider"));
}

#[test]
fn verdict_segments_serialise_lower_case() {
    for (seg, s) in [
        (VerdictSegment::Terminal, "terminal"),
        (VerdictSegment::Lan, "lan"),
        (VerdictSegment::Device, "device"),
        (VerdictSegment::Uplink, "uplink"),
        (VerdictSegment::Carrier, "carrier"),
        (VerdictSegment::None, "none"),
        (VerdictSegment::Suspended, "suspended"),
    ] {
        assert_eq!(serde_json::to_value(seg).expect("json"), Value::from(s));
        assert_eq!(seg.as_str(), s);
    }
    for status in STATUSES {
        assert_eq!(serde_json::to_value(status).expect("json"), Value::from(status.as_str()));
    }
}

#[test]
fn suspended_report_json_and_exit_code() {
    let (report, _) = DiagnosisReport::build(
        "diag-0002",
        datetime!(2026-11-25 17:00:00 UTC),
        10,
        healthy_run(),
        Some(&suspension()),
        Lang::En,
    )
    .expect("report");
    let v: Value = serde_json::from_str(&report.to_json().expect("json")).expect("parse");
    assert_eq!(v["verdict"]["segment"], "suspended");
    assert_eq!(report.exit_code(), EXIT_FAULT);
}

#[test]
fn report_exit_codes_match_the_verdict() {
    let cases = [
        (healthy_run(), EXIT_HEALTHY),
        (fail(healthy_run(), checks::LAN_LINK, ev("down")), EXIT_FAULT),
        (vec![check(checks::UPLINK_DNS, CheckStatus::Skipped)], EXIT_COULD_NOT_RUN),
        (Vec::new(), EXIT_COULD_NOT_RUN),
    ];
    for (run, code) in cases {
        let (report, v) =
            DiagnosisReport::build("x", datetime!(2026-11-25 17:00:00 UTC), 1, run, None, Lang::En)
                .expect("report");
        assert_eq!(report.exit_code(), code);
        assert_eq!(v.exit_code(), code);
    }
}

#[test]
fn text_rendering_in_japanese_and_english() {
    let en = sample_report(Lang::En).render_text(Lang::En);
    assert!(en.starts_with("Diagnosis diag-0001 (started 2026-11-25T08:00:00Z, took 1234 ms)"), "{en}");
    assert!(en.contains("STATUS") && en.contains("EVIDENCE"));
    assert!(en.contains("FAIL") && en.contains("uplink.gateway_icmp") && en.contains("0/3 echo replies"));
    assert!(en.contains("SKIP") && en.contains("WARN"));
    assert!(en.contains("Verdict: uplink\nFault in the uplink"), "{en}");
    assert!(en.contains("Next step: "));
    // The table comes before the verdict.
    assert!(en.find("uplink.gateway_icmp").expect("row") < en.find("Verdict:").expect("verdict"));

    let ja = sample_report(Lang::Ja).render_text(Lang::Ja);
    assert!(ja.starts_with("診断 diag-0001"), "{ja}");
    assert!(ja.contains("状態") && ja.contains("証跡") && ja.contains("異常") && ja.contains("省略"));
    assert!(ja.contains("判定: 回線"));
    assert!(ja.contains("対処: "));
    // Japanese rows say what each check looks at, with its stable name.
    assert!(ja.contains("ゲートウェイへの ping（uplink.gateway_icmp）"), "{ja}");
    assert!(!en.contains("ゲートウェイ"));
}

#[test]
fn every_catalogued_check_has_a_japanese_label() {
    for (name, _) in checks::ALL {
        let label = checks::label_ja(name).unwrap_or_else(|| panic!("{name} has no Japanese label"));
        assert!(!label.is_ascii(), "{name}: {label}");
        assert_eq!(checks::label_ja(&format!("{name}@instance")), Some(label));
    }
    assert_eq!(checks::label_ja("uplink.bogus"), None);
}

#[test]
fn text_rendering_names_healthy_and_suspended() {
    let (healthy, _) =
        DiagnosisReport::build("h", datetime!(2026-11-25 17:00:00 UTC), 1, healthy_run(), None, Lang::Ja)
            .expect("report");
    assert!(healthy.render_text(Lang::Ja).contains("判定: 異常なし"));
    let (susp, _) = DiagnosisReport::build(
        "s",
        datetime!(2026-11-25 17:00:00 UTC),
        1,
        healthy_run(),
        Some(&suspension()),
        Lang::En,
    )
    .expect("report");
    let text = susp.render_text(Lang::En);
    assert!(text.contains("Verdict: suspended (carrier order)"), "{text}");
    assert!(text.contains("suspended by order 7"));
}
