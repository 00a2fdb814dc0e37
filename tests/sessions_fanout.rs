//! Every connected viewer gets every frame, from its first keyframe on.

use crate::common;

use std::time::Duration;

use common::sim::Sim;
use rtcam::rtc::SessionEvent;

#[test]
fn every_viewer_gets_every_frame_of_the_one_stream() {
    let mut sim = Sim::new(8);
    for _ in 0..3 {
        sim.join();
    }
    sim.connect_all();
    let connected = sim
        .events
        .iter()
        .filter(|e| matches!(e, SessionEvent::Connected(_)))
        .count();
    assert_eq!(connected, 3);
    assert_eq!(sim.keyframe_asks(), 3, "each new viewer asks for an IDR");
    sim.frames(30, true);
    sim.step(Duration::from_millis(100));
    for p in &sim.peers {
        assert_eq!(p.frames.len(), 30, "every frame arrives");
        // The very same bytes reach everyone.
        assert_eq!(p.frames[5], sim.peers[0].frames[5]);
    }
}

#[test]
fn a_late_joiner_waits_for_the_next_keyframe() {
    let mut sim = Sim::new(8);
    sim.join();
    sim.connect_all();
    sim.frames(10, true);
    let late = sim.join();
    sim.connect_all();
    let asks = sim.keyframe_asks();
    assert_eq!(asks, 2);
    // P-frames only: the newcomer gets nothing it could not decode.
    sim.frames(10, false);
    assert!(sim.peers[late].frames.is_empty());
    sim.frames(5, true);
    sim.step(Duration::from_millis(100));
    assert_eq!(sim.peers[late].frames.len(), 5);
    assert_eq!(sim.peers[0].frames.len(), 25);
}
