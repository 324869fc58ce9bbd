//! The notice page's 「自己診断を実行」 button (guideline §1.3.2 ④ ⑤): clinic
//! staff run the same diagnosis as `cpe-agent diagnose`, and its report
//! goes to the carrier as an incident, like a remote diagnosis.
//!
//! This module owns who may press it and how often:
//! - [`Gate`], the pure core: one run at a time, at most one start per
//!   interval ([`MIN_INTERVAL`] by default), and the progress and outcome the page shows. Time is
//!   passed in, so the rate limit is tested without waiting.
//! - [`is_lan_client`]: only a client on a LAN subnet (`[network] lan`, read
//!   from the kernel's routes and addresses) may start it.
//! - [`SelfCheck`]: the gate, the LAN rule and the [`Runner`] the daemon
//!   gives (its remote-diagnosis path), used by the page's server.
//!
//! The same-origin rule of the POST lives with the request reader
//! ([`super::request::same_origin`]).

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::diagnose::run::Progress;
use crate::diagnose::DiagnosisReport;

/// Least time between two starts unless configured
/// (`[notice] self_check_interval_s`).
pub const MIN_INTERVAL: Duration = Duration::from_mins(1);

/// How long the page announces a finished run (then its result is simply
/// the last diagnosis).
pub const RESULT_SHOWN: Duration = Duration::from_mins(10);

/// The diagnosis behind the button: the daemon's path that keeps the report
/// on the device and queues it for the carrier; `Err` says why it could not
/// run.
pub type Runner = Arc<
    dyn Fn(Progress) -> Pin<Box<dyn Future<Output = Result<DiagnosisReport, String>> + Send>> + Send + Sync,
>;

/// Why a press did not start a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A run is in progress (the page shows it).
    Busy,
    /// The last start was less than [`MIN_INTERVAL`] ago; try again after `wait`.
    TooSoon {
        /// Until the next start is allowed.
        wait: Duration,
    },
}

/// What the page shows about the self-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Never run since the agent started.
    Idle,
    /// Running: checks finished so far, time since the start.
    Running {
        /// Checks finished.
        checks_done: usize,
        /// Since the start.
        elapsed: Duration,
    },
    /// Finished: the report id and segment, how long it took.
    Done {
        /// The report's id.
        id: String,
        /// The verdict segment (`none`, `uplink`, …).
        segment: String,
        /// How long the run took.
        took: Duration,
    },
    /// Could not run (English, technical).
    Failed {
        /// Why.
        error: String,
    },
}

/// The pure core: one run at a time, at most one start per `min_interval`.
#[derive(Debug)]
pub struct Gate {
    min_interval: Duration,
    last_start: Option<Instant>,
    finished_at: Option<Instant>,
    run: u64,
    status: Status,
}

impl Gate {
    /// A gate allowing one start per `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        Self { min_interval, last_start: None, finished_at: None, run: 0, status: Status::Idle }
    }

    /// Starts a run at `now`, or says why not. Returns the run's number.
    pub fn try_start(&mut self, now: Instant) -> Result<u64, Refusal> {
        if matches!(self.status, Status::Running { .. }) {
            return Err(Refusal::Busy);
        }
        if let Some(last) = self.last_start {
            let since = now.saturating_duration_since(last);
            if since < self.min_interval {
                return Err(Refusal::TooSoon { wait: self.min_interval.saturating_sub(since) });
            }
        }
        self.last_start = Some(now);
        self.run += 1;
        self.status = Status::Running { checks_done: 0, elapsed: Duration::ZERO };
        Ok(self.run)
    }

    /// One more check of run `run` finished.
    pub fn check_done(&mut self, run: u64) {
        if let (true, Status::Running { checks_done, .. }) = (run == self.run, &mut self.status) {
            *checks_done += 1;
        }
    }

    /// Run `run` ended at `now` with `outcome`.
    pub fn finish(&mut self, run: u64, now: Instant, outcome: Result<&DiagnosisReport, String>) {
        if run != self.run {
            return;
        }
        let took = self.last_start.map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        self.finished_at = Some(now);
        self.status = match outcome {
            Ok(report) => {
                Status::Done { id: report.id.clone(), segment: report.verdict.segment.to_string(), took }
            }
            Err(error) => Status::Failed { error },
        };
    }

    /// The status at `now`: an outcome is announced for [`RESULT_SHOWN`],
    /// then the gate is idle again.
    pub fn status(&self, now: Instant) -> Status {
        match (&self.status, self.last_start) {
            (Status::Running { checks_done, .. }, Some(start)) => {
                Status::Running { checks_done: *checks_done, elapsed: now.saturating_duration_since(start) }
            }
            (Status::Done { .. } | Status::Failed { .. }, _)
                if self.finished_at.is_some_and(|f| now.saturating_duration_since(f) >= RESULT_SHOWN) =>
            {
                Status::Idle
            }
            (status, _) => status.clone(),
        }
    }
}

/// Whether `peer` is on a LAN subnet: an IPv4 route of a `lan` interface
/// (not a default route) in `/proc/net/route`, or an IPv6 prefix of a
/// global or unique-local address of a `lan` interface in
/// `/proc/net/if_inet6` (link-local prefixes are on every interface, so
/// they prove nothing). IPv4-mapped IPv6 peers are judged as IPv4.
pub fn is_lan_client(peer: IpAddr, lan: &[String], route_v4: &str, if_inet6: &str) -> bool {
    use crate::diagnose::observe::{in_subnet, parse_if_inet6};
    let peer = peer.to_canonical();
    let on_lan = |iface: &str| lan.iter().any(|l| l == iface);
    match peer {
        IpAddr::V4(_) => crate::metrics::parse::parse_route_v4(route_v4).iter().any(|r| {
            on_lan(&r.iface) && !r.is_default() && in_subnet(peer, IpAddr::V4(r.destination), r.prefix_len())
        }),
        IpAddr::V6(_) => parse_if_inet6(if_inet6).iter().any(|a| {
            on_lan(&a.iface)
                && a.scope != 0x20
                && in_subnet(peer, IpAddr::V6(a.address), u32::from(a.prefix_len))
        }),
    }
}

/// The button's server side: the gate, the LAN rule and the runner.
pub struct SelfCheck {
    gate: Mutex<Gate>,
    runner: Runner,
    lan: Vec<String>,
    proc_root: PathBuf,
}

impl std::fmt::Debug for SelfCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfCheck").field("lan", &self.lan).finish_non_exhaustive()
    }
}

/// Why a press was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressed {
    /// Started (the page shows its progress).
    Started,
    /// Refused by the gate.
    Refused(Refusal),
    /// The client is not on the LAN.
    NotLan,
}

impl SelfCheck {
    /// The button for LAN interfaces `lan` (kernel state under
    /// `proc_root`), running `runner` at most once per `interval`.
    pub fn new(runner: Runner, interval: Duration, lan: Vec<String>, proc_root: &Path) -> Self {
        Self { gate: Mutex::new(Gate::new(interval)), runner, lan, proc_root: proc_root.to_owned() }
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `peer` may press the button (see [`is_lan_client`]).
    pub fn allows(&self, peer: IpAddr) -> bool {
        let read =
            |name: &str| crate::metrics::source::read_text(&self.proc_root.join(name)).unwrap_or_default();
        is_lan_client(peer, &self.lan, &read("net/route"), &read("net/if_inet6"))
    }

    /// A press by `peer`: starts the run in the background when allowed.
    pub fn press(self: &Arc<Self>, peer: IpAddr) -> Pressed {
        if !self.allows(peer) {
            return Pressed::NotLan;
        }
        let run = match self.gate().try_start(Instant::now()) {
            Ok(run) => run,
            Err(refusal) => return Pressed::Refused(refusal),
        };
        tracing::info!(%peer, "self-check started from the notice page");
        let this = self.clone();
        let progress_of = self.clone();
        let progress: Progress = Arc::new(move |_| progress_of.gate().check_done(run));
        let running = (self.runner)(progress);
        tokio::spawn(async move {
            let outcome = running.await;
            match &outcome {
                Ok(report) => {
                    tracing::info!(diagnosis = %report.id, verdict = %report.verdict.segment, "self-check done");
                }
                Err(e) => tracing::error!(error = %e, "self-check could not run"),
            }
            this.gate().finish(run, Instant::now(), outcome.as_ref().map_err(Clone::clone));
        });
        Pressed::Started
    }

    /// The least time between two starts.
    pub fn interval(&self) -> Duration {
        self.gate().min_interval
    }

    /// The status now.
    pub fn status(&self) -> Status {
        self.gate().status(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::{ReportVerdict, VerdictSegment};

    fn report() -> DiagnosisReport {
        DiagnosisReport {
            id: "diag-1".into(),
            started_at: "2026-12-01T00:00:00Z".into(),
            duration_ms: 1,
            verdict: ReportVerdict {
                segment: VerdictSegment::Uplink,
                summary: String::new(),
                hint: String::new(),
            },
            checks: Vec::new(),
        }
    }

    #[test]
    fn one_at_a_time_and_once_per_minute() {
        let t0 = Instant::now();
        let mut gate = Gate::new(MIN_INTERVAL);
        assert_eq!(gate.status(t0), Status::Idle);
        let run = gate.try_start(t0).unwrap();
        assert_eq!(gate.try_start(t0 + Duration::from_secs(5)), Err(Refusal::Busy));
        assert_eq!(
            gate.try_start(t0 + Duration::from_mins(5)),
            Err(Refusal::Busy),
            "busy however long it runs"
        );
        gate.check_done(run);
        gate.check_done(run + 7); // a stale run's progress is ignored
        assert_eq!(
            gate.status(t0 + Duration::from_secs(3)),
            Status::Running { checks_done: 1, elapsed: Duration::from_secs(3) }
        );
        gate.finish(run, t0 + Duration::from_secs(4), Ok(&report()));
        assert_eq!(
            gate.status(t0 + Duration::from_secs(9)),
            Status::Done { id: "diag-1".into(), segment: "uplink".into(), took: Duration::from_secs(4) }
        );
        assert_eq!(
            gate.try_start(t0 + Duration::from_secs(20)),
            Err(Refusal::TooSoon { wait: Duration::from_secs(40) }),
            "rate-limited from the start of the last run"
        );
        let second = gate.try_start(t0 + MIN_INTERVAL).unwrap();
        assert_ne!(second, run);
        gate.finish(second, t0 + MIN_INTERVAL, Err("no privileges".into()));
        assert_eq!(gate.status(t0 + MIN_INTERVAL), Status::Failed { error: "no privileges".into() });
        assert!(matches!(
            gate.try_start(t0 + MIN_INTERVAL + Duration::from_secs(1)),
            Err(Refusal::TooSoon { .. })
        ));
        assert_eq!(gate.status(t0 + MIN_INTERVAL + RESULT_SHOWN), Status::Idle, "announced for a while only");
    }

    #[test]
    fn only_lan_subnets_may_press() {
        let lan = vec!["br-lan".to_owned()];
        let route = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
                     wan0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     wan0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     br-lan\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let inet6 = "fd000000000000000000000000000001 03 40 00 80 br-lan\n\
                     fe800000000000000000000000000001 03 40 20 80 br-lan\n\
                     20010db8000000000000000000000001 02 40 00 80 wan0\n";
        let yes = |ip: &str| is_lan_client(ip.parse().unwrap(), &lan, route, inet6);
        assert!(yes("192.168.1.23") && yes("::ffff:192.168.1.23") && yes("fd00::42"));
        for no in ["10.0.0.5", "8.8.8.8", "192.168.2.1", "fe80::2", "2001:db8::9", "127.0.0.1"] {
            assert!(!yes(no), "{no}");
        }
        assert!(!is_lan_client("192.168.1.23".parse().unwrap(), &[], route, inet6), "no LAN configured");
        assert!(!is_lan_client("192.168.1.23".parse().unwrap(), &lan, "garbage", ""), "unreadable routes");
    }
}
