//! A slow link from the first second (issue #20): behind an 800 or a 400
//! kbit/s link with a 100 ms drop-tail queue (a home router's), a viewer's
//! picture never stands still over 200 ms and it gets at least 75 % of the
//! link from 10 s on; a LAN viewer still gets the ceiling within 2 s and its
//! first frame as soon as before, and a slow viewer joining does not freeze
//! it. str0m peers that show frames as a browser does (a gap freezes the
//! picture until the next keyframe, which they ask for), behind emulated
//! links, on simulated time. Each test prints what its viewers went through,
//! second by second (`LinkSim::report`).

use crate::common;

use std::time::Duration;

use common::link::{LinkSim, Path};

/// `--bitrate`'s default.
const CEILING: u32 = 1935;
/// The longest a picture may stand still: what the issue calls a freeze.
const FREEZE: Duration = Duration::from_millis(200);
/// How long after connecting a slow viewer's first frame may come: its
/// keyframe across the link and a feedback round or two. Generous: it is
/// here so that a start showing nothing for seconds (and so never
/// "freezing") fails.
const SLOW_FIRST_FRAME: Duration = Duration::from_secs(1);
/// How long after connecting a LAN viewer's first frame may come. Today the
/// keyframe asked for on connecting is the encoder's next frame (at most
/// 33 ms away at 30 fps) and crosses the 50 Mbit/s LAN in about 8 ms (37 KB
/// with `like_openh264`), so it is expected 10-45 ms after connecting:
/// measured 30 ms here (the bound leaves room for a frame interval more).
const LAN_FIRST_FRAME: Duration = Duration::from_millis(60);

/// The camera as rtcam runs by default, its encoder making keyframes as
/// openh264 does, and viewers that ask for a keyframe when their picture
/// breaks, as browsers do.
fn camera() -> LinkSim {
    let mut sim = LinkSim::new(CEILING);
    sim.encoder.like_openh264();
    sim.ask_keyframes = true;
    sim
}

/// One viewer alone behind a `kbps` link with a 100 ms queue, for 30 s from
/// its join: its first frame comes within [`SLOW_FIRST_FRAME`] of
/// connecting, its picture never stands still for [`FREEZE`] after that,
/// and from 10 s on it receives at least 75 % of the link in video (what a
/// browser's `bytesReceived` counts: no headers, no padding).
fn starts_without_a_freeze(kbps: u64) {
    let mut sim = camera();
    let p = sim.join(Path::bottleneck(kbps, 100), Path::lan());
    sim.run_until(30.0);
    eprintln!("{}", sim.report(p));
    let mut failures = slow_start_failures(&sim, p, kbps, 30.0);
    let video = sim.peers[p].kbps(sim.at(10.0), sim.at(30.0));
    let least = 0.75 * kbps as f64;
    eprintln!(
        "{video:.0} kbit/s of video from 10 s on ({:.0} % of the link)",
        video / kbps as f64 * 100.0
    );
    if video < least {
        failures.push(format!(
            "{video:.0} kbit/s of video from 10 s on, under {least:.0} (75 % of the link)"
        ));
    }
    assert!(
        failures.is_empty(),
        "{}; targets {}",
        failures.join("; "),
        sim.changes_text()
    );
}

/// What went wrong with peer `p` behind a slow link until `end_secs`: its
/// first frame later than [`SLOW_FIRST_FRAME`] after connecting, its
/// picture standing still for [`FREEZE`] after that. All verdicts at once:
/// which of them fail says what to fix.
fn slow_start_failures(sim: &LinkSim, p: usize, kbps: u64, end_secs: f64) -> Vec<String> {
    let end = sim.at(end_secs);
    let peer = &sim.peers[p];
    let connected = peer.connected_at.expect("connected");
    let Some(first) = peer.first_frame_at() else {
        return vec![format!("nothing shown behind the {kbps} kbit/s link")];
    };
    let wait = first.saturating_duration_since(connected);
    eprintln!(
        "behind {kbps} kbit/s: first frame {} ms after connecting ({:.3} s from the start), \
         {} datagrams dropped",
        wait.as_millis(),
        sim.secs(first),
        peer.drops(sim.start, end),
    );
    let mut failures = Vec::new();
    if wait > SLOW_FIRST_FRAME {
        failures.push(format!(
            "first frame {} ms after connecting",
            wait.as_millis()
        ));
    }
    let longest = peer.max_freeze(first, end);
    if longest >= FREEZE {
        failures.push(format!(
            "the picture stood still {} ms: {}",
            longest.as_millis(),
            sim.freezes_text(p, FREEZE - Duration::from_millis(1), first, end)
        ));
    }
    failures
}

#[test]
fn an_800_kbit_link_never_freezes_from_the_start() {
    starts_without_a_freeze(800);
}

#[test]
fn a_400_kbit_link_never_freezes_from_the_start() {
    starts_without_a_freeze(400);
}

#[test]
fn a_lan_viewer_gets_the_ceiling_within_2_s() {
    gets_the_ceiling_within_2_s(Path::lan());
}

/// The first keyframe's packets arrive within one tick of the viewer's
/// feedback clock: the probe riding on them measures nothing (as in
/// Chromium on loopback, which read them in one batch), and the link's
/// estimate must not stay at the start rate or drift from it for seconds.
#[test]
fn a_gigabit_lan_viewer_gets_the_ceiling_within_2_s() {
    gets_the_ceiling_within_2_s(Path::gigabit());
}

fn gets_the_ceiling_within_2_s(path: Path) {
    let mut sim = camera();
    let p = sim.join(path, path);
    sim.run_until(10.0);
    eprintln!("{}", sim.report(p));
    let (two, end) = (sim.at(2.0), sim.at(10.0));
    let full = CEILING * 95 / 100;
    let changes = sim.changes_text();
    let target = sim.target_at(two);
    assert!(target >= full, "{target} kbit/s at 2 s; targets {changes}");
    // And keeps it: a LAN never pulls the rate down much (the estimate
    // wobbles; `a_lan_keeps_the_ceiling` allows the same 10 %).
    let keep = CEILING * 9 / 10;
    let low = sim
        .encoder
        .changes
        .iter()
        .find(|(t, k)| *t > two && *k < keep);
    assert!(low.is_none(), "under {keep} after 2 s; targets {changes}");
    let video = sim.peers[p].kbps(two, end);
    let least = 0.9 * CEILING as f64;
    assert!(
        video >= least,
        "{video:.0} kbit/s of video from 2 s on, under {least:.0}; targets {changes}"
    );
}

#[test]
fn a_lan_viewer_sees_its_first_frame_as_soon_as_before() {
    let mut sim = camera();
    let p = sim.join(Path::lan(), Path::lan());
    sim.run_until(2.0);
    let peer = &sim.peers[p];
    let connected = peer.connected_at.expect("connected");
    let first = peer.first_frame_at().expect("a frame shown");
    let wait = first.saturating_duration_since(connected);
    eprintln!(
        "connected at {:.1} ms, first frame {:.1} ms after that ({:.1} ms after joining)",
        sim.secs(connected) * 1000.0,
        wait.as_secs_f64() * 1000.0,
        sim.secs(first) * 1000.0
    );
    assert!(
        wait <= LAN_FIRST_FRAME,
        "first frame {:.1} ms after connecting, over {} ms; targets {}",
        wait.as_secs_f64() * 1000.0,
        LAN_FIRST_FRAME.as_millis(),
        sim.changes_text()
    );
}

#[test]
fn a_slow_viewer_joining_never_freezes_a_lan_viewer() {
    let mut sim = camera();
    let lan = sim.join(Path::lan(), Path::lan());
    sim.run_until(10.0);
    let slow = sim.join(Path::bottleneck(800, 100), Path::lan());
    sim.run_until(30.0);
    eprintln!("{}\n{}", sim.report(lan), sim.report(slow));
    let end = sim.at(30.0);
    let first = sim.peers[lan].first_frame_at().expect("a frame shown");
    let longest = sim.peers[lan].max_freeze(first, end);
    assert!(
        longest < FREEZE,
        "the LAN viewer's picture stood still {} ms: {}",
        longest.as_millis(),
        sim.freezes_text(lan, FREEZE - Duration::from_millis(1), first, end)
    );
    // And the joiner starts as a slow viewer alone does: its keyframe waits
    // for its link's measurement and comes at its rate, paced.
    let failures = slow_start_failures(&sim, slow, 800, 30.0);
    assert!(
        failures.is_empty(),
        "{}; targets {}",
        failures.join("; "),
        sim.changes_text()
    );
}
