//! The small `state` file: the acknowledged position and the reserved
//! sequence numbers, replaced whole with `cpe_common::durable::write_atomic`.
//!
//! ```text
//! offset  size  field
//!      0     4  "CPQS"
//!      4     1  version 1
//!      5     8  acked_through, u64 LE
//!     13     8  seq_reserved_until (first seq not yet reserved), u64 LE
//!     21     4  CRC-32 of bytes 0..21, u32 LE
//! ```

const MAGIC: &[u8; 4] = b"CPQS";
const VERSION: u8 = 1;
/// Size of the encoded state.
pub(super) const STATE_BYTES: usize = 25;

/// What the state file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct State {
    /// Every record with a seq up to this one was confirmed by the carrier.
    pub acked_through: u64,
    /// Every seq below this one may have been handed out: the next start
    /// begins here at the latest.
    pub seq_reserved_until: u64,
}

impl State {
    pub(super) fn encode(self) -> [u8; STATE_BYTES] {
        let mut out = [0; STATE_BYTES];
        out[..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        out[5..13].copy_from_slice(&self.acked_through.to_le_bytes());
        out[13..21].copy_from_slice(&self.seq_reserved_until.to_le_bytes());
        let crc = crc32fast::hash(&out[..21]);
        out[21..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// `None` for anything but an intact state of this version.
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; STATE_BYTES] = bytes.try_into().ok()?;
        if &bytes[..4] != MAGIC || bytes[4] != VERSION {
            return None;
        }
        let crc = u32::from_le_bytes(bytes[21..].try_into().ok()?);
        if crc32fast::hash(&bytes[..21]) != crc {
            return None;
        }
        Some(Self {
            acked_through: u64::from_le_bytes(bytes[5..13].try_into().ok()?),
            seq_reserved_until: u64::from_le_bytes(bytes[13..21].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let state = State { acked_through: 41, seq_reserved_until: 1_066 };
        let bytes = state.encode();
        assert_eq!(State::decode(&bytes), Some(state));
        for i in 0..STATE_BYTES {
            let mut bad = bytes;
            bad[i] ^= 0x10;
            assert_eq!(State::decode(&bad), None, "byte {i}");
        }
        assert_eq!(State::decode(&bytes[..24]), None);
        assert_eq!(State::decode(&[]), None);
    }
}
