//! A viewer's PLI reaches the encoder as one keyframe ask.

use crate::common;

use std::time::Duration;

use common::sim::Sim;

#[test]
fn pli_from_a_viewer_asks_for_a_keyframe() {
    let mut sim = Sim::new(4);
    let p = sim.join();
    sim.connect_all();
    sim.frames(10, true);
    let before = sim.keyframe_asks();
    sim.request_keyframe(p);
    for _ in 0..10 {
        sim.step(Duration::from_millis(20));
    }
    assert_eq!(sim.keyframe_asks(), before + 1);
}
