//! One encoder, many links: its bitrate follows the slowest healthy viewer's
//! bandwidth estimate, and rises again when that viewer leaves. str0m peers
//! behind emulated links (str0m-netem), on simulated time.

use crate::common;

use common::link::{LinkSim, Path};

#[test]
fn the_target_settles_under_a_slow_link_and_both_viewers_get_every_frame() {
    let mut sim = LinkSim::new(2000);
    let fast = sim.join(Path::lan(), Path::lan());
    let slow = sim.join(Path::capped(800), Path::lan());
    sim.run_until(20.0);
    assert!(sim.peers[fast].connected && sim.peers[slow].connected);
    let changes = &sim.encoder.changes;
    let settled = sim.target_at(sim.at(5.0));
    assert!(
        settled < 800,
        "under the 800 kbit/s link within 5 s: {settled}; changes {changes:?}"
    );
    let last = sim.target_at(sim.at(20.0));
    assert!(
        (400..800).contains(&last),
        "at the end {last} kbit/s; changes {changes:?}"
    );
    let (from, to) = (sim.at(10.0), sim.at(20.0));
    // The slow viewer loses a few frames: str0m's estimate still overshoots
    // an 800 kbit/s link now and then (the target reached 914 kbit/s), and
    // what the overshoot costs depends on packet sizes (29+ fps with
    // 1500-byte packets, 26.8 with the 1150-byte MTU). Starting and
    // staying under a slow link is the open issue on slow links.
    for (p, least) in [(fast, 29.0), (slow, 26.0)] {
        let fps = sim.peers[p].fps(from, to);
        assert!(fps >= least, "peer {p}: {fps:.1} fps; changes {changes:?}");
    }
    let kbps = sim.peers[slow].kbps(from, to);
    assert!(kbps < 800.0, "the slow peer received {kbps:.0} kbit/s");
}

#[test]
fn the_rate_rises_back_to_the_ceiling_when_the_slow_viewer_leaves() {
    let mut sim = LinkSim::new(2000);
    sim.join(Path::lan(), Path::lan());
    let slow = sim.join(Path::capped(800), Path::lan());
    sim.run_until(10.0);
    let low = sim.target_at(sim.at(10.0));
    assert!(low < 800, "{low}");
    sim.leave(slow);
    let left = sim.now;
    sim.run_until(40.0);
    let changes = &sim.encoder.changes;
    assert_eq!(sim.target_at(sim.at(40.0)), 2000, "changes {changes:?}");
    // Gently: no step up more than 25 % (or 50 kbit/s) at a time, a second
    // apart (the start's jumps to the first measurements long done).
    let after: Vec<_> = changes.iter().filter(|(t, _)| *t >= left).collect();
    for w in after.windows(2).filter(|w| w[1].1 > w[0].1) {
        let (a, b) = (w[0].1 as f64, w[1].1 as f64);
        assert!(
            b <= (a * 1.25).max(a + 50.0) + 1.0,
            "{a} -> {b}: {changes:?}"
        );
        assert!(
            w[1].0 - w[0].0 >= std::time::Duration::from_secs(1),
            "{changes:?}"
        );
    }
}

#[test]
fn a_lan_keeps_the_ceiling() {
    let mut sim = LinkSim::new(2000);
    sim.join(Path::lan(), Path::lan());
    sim.join(Path::lan(), Path::lan());
    sim.run_until(15.0);
    let changes = &sim.encoder.changes;
    // The start rate until the links are measured, then the ceiling
    // within a second, and nothing much under it after.
    assert_eq!(changes.first().map(|c| c.1), Some(255), "{changes:?}");
    assert_eq!(sim.target_at(sim.at(1.0)), 2000, "{changes:?}");
    assert!(
        changes[1..].iter().all(|(_, k)| *k >= 1800),
        "a LAN never pulls the rate down much: {changes:?}"
    );
    assert_eq!(sim.target_at(sim.at(15.0)), 2000, "{changes:?}");
}
