//! Chromium 147 and later send a talking viewer's RTCP feedback with its
//! audio sender's SSRC as the sender and the video's SSRC as the media
//! source (this broke keyframe requests in Janus and PiKVM in 2026). Such a
//! PLI must still bring a keyframe.
//!
//! The stand-in is a str0m peer that sends audio and only receives video:
//! str0m signs its feedback with its first sending SSRC, which is then its
//! audio sender's, exactly the shape Chromium 147 sends.

use crate::common;

use std::time::Duration;

use common::sim::{Browser, Sim};
use rtcam::rtc::SessionEvent;
use str0m::media::Direction;

#[test]
fn a_pli_signed_by_the_viewers_audio_sender_brings_a_keyframe() {
    let mut sim = Sim::new(8);
    let talker = sim.join_full(Browser::Chromium, &["rtcam"], Some(Direction::SendRecv));
    sim.connect_all();
    sim.frames(5, true);
    let before = sim.keyframe_asks();
    sim.request_keyframe(talker);
    sim.step(Duration::from_millis(20));
    sim.step(Duration::from_millis(20));
    assert_eq!(sim.keyframe_asks(), before + 1, "{:?}", sim.events);
    let id = sim.peers[talker].id.unwrap();
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, SessionEvent::KeyframeWanted(v, _) if *v == id))
    );
}
