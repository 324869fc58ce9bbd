//! The on-device agent of the carrier CPE (`cpe-agent`).
//!
//! The router a carrier ships to a medical institution exists to carry the
//! institution's electronic certificate (機関認証) and connect it to the
//! national health-information network. This library holds the device-side
//! logic; `src/main.rs` is the thin command-line shell around it.
//!
//! - [`identity`]: the certificate lifecycle (import, validation, durable
//!   storage, status, CSR, renewal policy, TLS client configuration).
//! - [`channel`]: the mutual-TLS client for the carrier server, with backoff.
//! - [`config`]: the TOML configuration with drop-ins.
//! - [`lang`]: Japanese / English selection for user-facing text.
//! - [`renew`]: certificate renewal over the carrier channel, proven or rolled back.
//! - [`clock`]: the build time, the floor below which the clock is unset.
//! - [`queue`]: the on-disk store-and-forward queue of reports and events
//!   (crash-safe appends, bounded flash writes, drop policy).
//! - [`metrics`]: device health read from `/proc` and `/sys`, aggregated
//!   into the heartbeat (CPU, memory, load, temperature, per-line
//!   bandwidth, active uplink) and failover detection.
//! - [`diagnose`]: self-diagnosis (§1.3.2 ④): named check results, the
//!   verdict naming the faulty segment (terminal → LAN → device → uplink →
//!   carrier) with a hint, the report document; the probes behind one trait,
//!   the concurrent runner, storage on the device and incidents for the carrier.
//! - [`thresholds`]: the two-level (caution 注意 / warning 警告) threshold
//!   state machine with hysteresis and minimum duration.
//! - [`orders`]: compliance orders (§2.2): the pure verifier, the durable
//!   order state, nftables enforcement, signed receipts and the apply
//!   pipeline behind `cpe-agent apply-state` / `orders` and the daemon.
//! - [`notice`]: the notice page on the LAN (§2.2 ⑦).
//! - [`audit`]: the append-only, hash-chained audit log (§2.1.1(5)) with
//!   rotation, export and the export verifier.
#![forbid(unsafe_code)]

pub mod audit;
pub mod channel;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod diagnose;
pub mod identity;
pub mod lang;
pub mod metrics;
pub mod notice;
pub mod orders;
pub mod queue;
pub mod renew;
pub mod thresholds;
