//! The send path's cost in instructions (issue #20), for `bench/callgrind.sh`:
//! openh264 encodes the camera-like scene at 1280x720@30 and 1 Mbit/s and
//! the session table sends every frame to `RTCAM_BENCH_VIEWERS` str0m
//! viewers on a LAN, on simulated time. `measured_window` runs the counted
//! frames, after the viewers connected and settled; callgrind counts only
//! inside it, and `callgrind_annotate --inclusive=yes` splits it into the
//! encoder (`Encoder::encode`) and the send path (`Sessions::write_frame`,
//! `handle_timeout`, `handle_receive`, `poll_transmit`). The viewers' own
//! receiving is in the window too, and left out of the send path's figure.
//! Asserts only that every viewer got the frames: it is a benchmark.

use crate::common;

use common::link::{LinkSim, Path, SceneSource};

/// Counted frames (10 s at 30 fps).
pub const FRAMES: u64 = 300;

fn viewers() -> usize {
    std::env::var("RTCAM_BENCH_VIEWERS").map_or(1, |v| v.parse().expect("a number"))
}

#[inline(never)]
fn measured_window(sim: &mut LinkSim, until: f64) {
    sim.run_until(until);
}

#[test]
#[ignore = "a benchmark: bench/callgrind.sh runs it under callgrind"]
fn send_path_instructions() {
    let mut sim = LinkSim::new(1000);
    sim.scene = Some(SceneSource::openh264(1280, 720, 30, 1000));
    let n = viewers();
    let peers: Vec<usize> = (0..n).map(|_| sim.join(Path::lan(), Path::lan())).collect();
    sim.run_until(3.0);
    let (from, to) = (sim.at(3.0), sim.at(3.0 + FRAMES as f64 / 30.0));
    measured_window(&mut sim, 3.0 + FRAMES as f64 / 30.0);
    for p in peers {
        let fps = sim.peers[p].fps(from, to);
        assert!(fps >= 29.0, "viewer {p}: {fps:.1} fps");
    }
    eprintln!("{n} viewer(s), {FRAMES} frames counted");
}
