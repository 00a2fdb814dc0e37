//! A link that loses packets at random gets every datagram two or three times; a clean or
//! merely slow link never does; copies end when the loss does. str0m peers
//! behind emulated links (str0m-netem), on simulated time.

use crate::common;

use common::link::{LinkSim, Path};

#[test]
fn five_percent_random_loss_gets_copies_and_frames_keep_coming() {
    let mut sim = LinkSim::new(2000);
    let lossy = sim.join(Path::lossy(0.05), Path::lossy(0.05));
    let clean = sim.join(Path::lan(), Path::lan());
    sim.run_until(5.0);
    assert!(sim.copies(lossy) >= 2, "5 % loss: copies within 5 s");
    assert_eq!(sim.copies(clean), 1);
    sim.run_until(15.0);
    let (from, to) = (sim.at(5.0), sim.at(15.0));
    let fps = sim.peers[lossy].fps(from, to);
    assert!(fps >= 29.0, "{fps:.1} fps through 5 % loss");
    // One encoder for both: the lossy viewer did not lower the rate.
    assert!(sim.target_at(to) >= 1700, "{:?}", sim.encoder.changes);
}

#[test]
fn copies_end_when_the_loss_does() {
    let mut sim = LinkSim::new(2000);
    let p = sim.join(Path::lossy(0.05), Path::lossy(0.05));
    sim.run_until(5.0);
    assert!(sim.copies(p) > 1);
    sim.set_paths(p, Path::lan(), Path::lan());
    sim.run_until(45.0);
    assert_eq!(sim.copies(p), 1, "a trial of single copies saw no loss");
}

#[test]
fn a_slow_link_that_overflows_gets_no_copies() {
    let mut sim = LinkSim::new(2000);
    let p = sim.join(Path::capped(800), Path::lan());
    for t in 1..=20 {
        sim.run_until(t as f64);
        assert_eq!(sim.copies(p), 1, "copies on a congested link at {t} s");
    }
}

#[test]
fn a_minute_of_five_percent_loss_asks_for_no_keyframe_beyond_the_joins() {
    let mut sim = LinkSim::new(2000);
    sim.join(Path::lossy(0.05), Path::lossy(0.05));
    sim.join(Path::lan(), Path::lan());
    sim.run_until(60.0);
    let asks = sim
        .events
        .iter()
        .filter(|(_, e)| matches!(e, rtcam::rtc::SessionEvent::KeyframeWanted(..)))
        .count();
    assert!(
        asks <= 3,
        "{asks} keyframe asks in a minute: the two joins and at most one more"
    );
}
