//! Facts about time that the device can trust more than its own clock.
//!
//! A router without a real-time clock may boot in 1970. The build time of the
//! agent is a floor: any reading before it is an unset clock.

use time::OffsetDateTime;

/// When this agent was built (minus a day of slack), from `build.rs`.
pub fn build_time() -> OffsetDateTime {
    env!("CPE_AGENT_BUILD_UNIX")
        .parse::<i64>()
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The current time from the system clock.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
