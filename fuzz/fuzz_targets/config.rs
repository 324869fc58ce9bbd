//! The agent configuration file (TOML), as loaded at start.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(table) = text.parse::<toml::Table>() {
        let _ = cpe_agent::config::AgentConfig::from_merged(table, std::path::Path::new("/etc/cpe-agent/agent.toml"));
    }
});
