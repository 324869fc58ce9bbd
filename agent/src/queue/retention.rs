//! The drop policy (see *Drop policy* in the [module documentation](super)):
//! the age limit, the size limit with its order of deletion (finished
//! segments, then the oldest metrics, then the oldest events), and the
//! deletion of segments no record is pending in.

use super::{Queue, QueueError, RecordClass};

/// The order in which [`Queue::make_room`] deletes segments.
#[derive(Debug, Clone, Copy)]
enum DropPass {
    /// Segments without pending records: no loss.
    Finished,
    /// The oldest metric segment.
    Metrics,
    /// The oldest event segment, once no metric segment is left.
    Events,
}

impl Queue {
    /// Applies the limits at `now_unix_ms` (drop policy in the module doc):
    /// drops records older than [`QueueLimits::max_age_ms`](super::QueueLimits::max_age_ms), then enforces
    /// the size limit. Call it after [`Queue::open`] and periodically (e.g.
    /// before each upload).
    pub fn enforce_limits(&mut self, now_unix_ms: i64) -> Result<(), QueueError> {
        let floor = self.limits.clock_floor_unix_ms;
        if now_unix_ms >= floor {
            let cutoff = now_unix_ms.saturating_sub(self.limits.max_age_ms);
            let mut dropped = [0usize; 2];
            for stream in &mut self.streams {
                for segment in &mut stream.segments {
                    let before = segment.entries.len();
                    segment.entries.retain(|e| e.at_unix_ms < floor || e.at_unix_ms >= cutoff);
                    dropped[stream.class.index()] += before - segment.entries.len();
                }
            }
            if dropped != [0, 0] {
                self.stats.dropped_age += (dropped[0] + dropped[1]) as u64;
                tracing::warn!(
                    metrics = dropped[0],
                    events = dropped[1],
                    max_age_ms = self.limits.max_age_ms,
                    "queue: dropped records older than the age limit"
                );
            }
        } else {
            tracing::debug!(now_unix_ms, floor, "queue: the clock is not set; no record is judged by age");
        }
        self.collect_garbage()?;
        self.make_room(None, 0)
    }

    /// Deletes segments until `extra` more bytes fit (drop policy in the
    /// module doc). `incoming` is the class about to be pushed, if any.
    pub(super) fn make_room(&mut self, incoming: Option<RecordClass>, extra: u64) -> Result<(), QueueError> {
        let max = self.limits.max_total_bytes;
        if self.bytes().saturating_add(extra) <= max {
            return Ok(());
        }
        if incoming == Some(RecordClass::Metric) {
            let used: u64 = self.streams[RecordClass::Event.index()]
                .segments
                .iter()
                .filter(|g| !g.entries.is_empty())
                .map(|g| g.len)
                .sum();
            if used.saturating_add(extra) > max {
                self.stats.rejected_full += 1;
                tracing::warn!(used, max, "queue: full of events; a metric was not stored");
                return Err(QueueError::Full { used, max });
            }
        }
        let mut dropped = [0usize; 2];
        let mut deleted = false;
        for pass in [DropPass::Finished, DropPass::Metrics, DropPass::Events] {
            while self.bytes().saturating_add(extra) > max {
                let Some((s, id)) = self.drop_target(pass) else { break };
                dropped[s] += self.delete_segment(s, id)?;
                deleted = true;
            }
        }
        if deleted {
            self.sync_dir()?;
        }
        if dropped != [0, 0] {
            self.stats.dropped_size += (dropped[0] + dropped[1]) as u64;
            tracing::warn!(
                metrics = dropped[0],
                events = dropped[1],
                max_total_bytes = max,
                "queue: over its size limit; dropped the oldest records"
            );
        }
        Ok(())
    }

    /// The next segment to delete in `pass` of [`Queue::make_room`].
    fn drop_target(&self, pass: DropPass) -> Option<(usize, u64)> {
        let oldest_of = |class: RecordClass| {
            let s = class.index();
            self.streams[s].segments.front().map(|g| (s, g.id))
        };
        match pass {
            DropPass::Finished => self
                .streams
                .iter()
                .enumerate()
                .flat_map(|(s, st)| st.segments.iter().map(move |g| (s, g)))
                .filter(|(_, g)| g.entries.is_empty())
                .min_by_key(|(_, g)| g.id)
                .map(|(s, g)| (s, g.id)),
            DropPass::Metrics => oldest_of(RecordClass::Metric),
            DropPass::Events => oldest_of(RecordClass::Event),
        }
    }

    /// Deletes every segment without pending records except the last of each
    /// stream (still being appended to), persisting the ack position first.
    pub(super) fn collect_garbage(&mut self) -> Result<(), QueueError> {
        let dead: Vec<(usize, u64)> = self
            .streams
            .iter()
            .enumerate()
            .flat_map(|(s, st)| {
                let n = st.segments.len();
                st.segments
                    .iter()
                    .take(n.saturating_sub(1))
                    .filter(|g| g.entries.is_empty())
                    .map(move |g| (s, g.id))
            })
            .collect();
        if dead.is_empty() {
            return Ok(());
        }
        if self.persisted.acked_through != self.acked_through {
            self.persist_state()?;
        }
        for (s, id) in dead {
            self.delete_segment(s, id)?;
        }
        self.sync_dir()
    }
}
