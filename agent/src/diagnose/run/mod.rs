//! The diagnosis runner: which checks run, in which order, concurrently,
//! each bounded by its own timeout and the whole run by
//! `[diagnose] total_timeout_ms`; and the pure judgement turning each probe's
//! observation into a [`CheckResult`](super::CheckResult) with its evidence.
//!
//! Three jobs, one module each, imports running one way
//! (`schedule` → `judge` → `plan`):
//!
//! - `plan`: what a run checks ([`RunInput`], from the configuration and
//!   `--segment`) and the names of every check it reports
//!   ([`RunInput::planned`]);
//! - `schedule`: [`run()`], the concurrent groups and their time limits;
//! - `judge`: the pure judgements of each observation and [`reconcile`],
//!   the cross-check rules that need two results.
//!
//! Groups that do not depend on each other run concurrently: one per
//! terminal, one per LAN interface, the device, and the path (uplink and
//! carrier: link and route first, then gateway, DNS and the platform, then
//! once the carrier's address is known loss/latency/jitter, path MTU and the
//! TLS exchange). Every check a group owns is always reported, as `skipped`
//! with the reason when a prerequisite failed, so the set of names of a run
//! depends only on the configuration and `--segment`. A check still running
//! when the run's time is up is reported `failed` ("did not finish").
//! Results are handed to a progress callback as they finish.

mod judge;
mod plan;
mod schedule;

pub use judge::path::{mtu_ladder, mtu_refinement};
pub use judge::reconcile;
pub use plan::{carrier_target, CarrierTarget, RunInput, TerminalTarget};
pub use schedule::{run, Progress};

#[cfg(test)]
mod tests;
