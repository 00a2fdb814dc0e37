//! Viewers that never connect, or that vanish, are removed; others stay.

use crate::common;

use std::time::Duration;

use common::sim::Sim;
use rtcam::rtc::EndReason;

#[test]
fn a_viewer_that_never_connects_times_out() {
    let mut sim = Sim::new(8);
    let ghost = sim.join();
    sim.peers[ghost].silent = true;
    let id = sim.peers[ghost].id.unwrap();
    for _ in 0..19 {
        sim.step(Duration::from_secs(1));
    }
    assert_eq!(sim.sessions.len(), 1, "still waiting at 19 s");
    sim.step(Duration::from_secs(2));
    assert_eq!(sim.ended(id), Some(&EndReason::ConnectTimeout));
    assert!(sim.sessions.is_empty());
}

#[test]
fn a_silent_viewer_is_dropped_and_the_other_keeps_its_video() {
    let mut sim = Sim::new(8);
    let stays = sim.join();
    let goes = sim.join();
    sim.connect_all();
    sim.frames(5, true);
    sim.peers[goes].silent = true;
    let gone_id = sim.peers[goes].id.unwrap();
    // Twelve seconds of video: the silent one is dropped on the way.
    sim.frames(360, true);
    sim.step(Duration::from_millis(100));
    assert!(matches!(
        sim.ended(gone_id),
        Some(EndReason::Idle) | Some(EndReason::IceDisconnected)
    ));
    assert_eq!(sim.sessions.ids(), vec![sim.peers[stays].id.unwrap()]);
    assert_eq!(sim.peers[stays].frames.len(), 365);
}

#[test]
fn hang_up_removes_the_viewer_and_reports_why() {
    let mut sim = Sim::new(8);
    let p = sim.join();
    sim.connect_all();
    let id = sim.peers[p].id.unwrap();
    sim.sessions.end(id, EndReason::HangUp).unwrap();
    sim.step(Duration::from_millis(10));
    assert_eq!(sim.ended(id), Some(&EndReason::HangUp));
    assert!(sim.sessions.is_empty());
    assert_eq!(
        sim.sessions.end(id, EndReason::HangUp),
        Err(rtcam::rtc::SessionError::UnknownViewer)
    );
}
