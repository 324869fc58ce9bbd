//! Records when the agent was built: a device clock earlier than this is
//! certainly unset (routers without RTC boot in 1970), which certificate
//! checks must tell apart from a certificate that is not yet valid.
//! `SOURCE_DATE_EPOCH` makes the value reproducible.

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    // A day of slack: a build machine's clock may run ahead of the device's.
    println!("cargo:rustc-env=CPE_AGENT_BUILD_UNIX={}", epoch.saturating_sub(86_400));
}
