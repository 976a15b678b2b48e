//! The targets' passive health as a worker reports it (the heartbeat, the status handler):
//! read from the limit zone, on the nginx thread only. One zone lock and one slot lookup per
//! target of the served snapshot; nothing is written.

use super::conf::MainConf;
use super::limit_zone::{now_ms, LimitZone};
use super::snapshot;
use crate::core::routing::health::{targets_health, HealthView};

/// The health of the targets of the snapshot `mcf` serves now (`targets: None` without a
/// limit zone).
///
/// # Safety
/// nginx thread; `mcf` must be the main conf of the running cycle.
pub unsafe fn read(mcf: &MainConf) -> HealthView {
    let now = now_ms();
    // SAFETY: the zone is the running cycle's (caller), initialised before any worker runs.
    let zone = mcf.limit_zone.and_then(|z| unsafe { LimitZone::open(z) });
    let targets = zone.and_then(|zone| {
        let snap = snapshot::of_conf(mcf);
        let targets = snap
            .as_ref()
            .map_or(&[][..], |s| &s.config.routing.targets[..]);
        zone.with_table(|table| targets_health(table, targets, now))
    });
    HealthView {
        at_ms: now,
        targets,
    }
}
