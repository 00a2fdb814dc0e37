//! A viewer whose link cannot carry the floor does not drag everyone down:
//! it is sent only the frames that others refer to (about half), and the
//! others keep the rate their links take. str0m peers behind emulated links.

use crate::common;

use common::link::{LinkSim, Path};

#[test]
fn a_link_below_the_floor_is_thinned_and_the_others_keep_their_rate() {
    let mut sim = LinkSim::new(2000);
    let fast = sim.join(Path::lan(), Path::lan());
    let slow = sim.join(Path::capped(250), Path::lan());
    sim.run_until(20.0);
    let changes = &sim.encoder.changes;
    // The floor is 400 kbit/s: the policy may dip while the slow link's
    // estimate is still falling, but it ends back near the ceiling.
    let last = sim.target_at(sim.at(20.0));
    assert!(
        last >= 1500,
        "the fast viewer's rate: {last}; changes {changes:?}"
    );
    assert!(sim.sessions.thinned(sim.peers[slow].id));
    assert!(!sim.sessions.thinned(sim.peers[fast].id));
    let (from, to) = (sim.at(12.0), sim.at(20.0));
    let fast_fps = sim.peers[fast].fps(from, to);
    assert!(fast_fps >= 29.0, "fast: {fast_fps:.1} fps");
    assert!(
        sim.peers[fast].droppable(from, to) > 100,
        "the fast one gets every frame"
    );
    // Half the frames of a 2 Mbit/s stream still do not fit 250 kbit/s: the
    // slow viewer's picture stutters (a second, smaller encode would serve
    // it; see the README), but it is the only one that suffers.
    let thinned_out = sim.peers[slow].droppable(from, to);
    assert_eq!(thinned_out, 0, "the slow one is sent no droppable frame");
}
