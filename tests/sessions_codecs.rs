//! Viewers of two codecs on one session table: each is bound from its offer,
//! gets only its codec's frames, asks only its codec's encoder for
//! keyframes, and its encoder runs while it watches.

use crate::common;

use std::time::Duration;

use common::sim::{Browser, Sim, offer_with};
use rtcam::encode::demand::{Action, Demand};
use rtcam::frame::VideoCodec::{self, H264, Vp8};
use rtcam::rtc::SessionEvent;

fn keyframe_asks(sim: &Sim, codec: VideoCodec) -> usize {
    sim.events
        .iter()
        .filter(|e| matches!(e, SessionEvent::KeyframeWanted(_, c) if *c == codec))
        .count()
}

#[test]
fn each_viewer_is_bound_to_its_codec_and_gets_only_its_frames() {
    let mut sim = Sim::new(8);
    let chromium = sim.join_as(Browser::Chromium);
    let firefox = sim.join_as(Browser::FirefoxOffline);
    sim.connect_all();
    let (c_id, f_id) = (
        sim.peers[chromium].id.unwrap(),
        sim.peers[firefox].id.unwrap(),
    );
    assert_eq!(
        sim.sessions.codec_of(c_id),
        Some(H264),
        "H.264 when offered"
    );
    assert_eq!(sim.sessions.codec_of(f_id), Some(Vp8));
    assert_eq!(
        (sim.sessions.viewers_of(H264), sim.sessions.viewers_of(Vp8)),
        (1, 1)
    );
    for i in 0..20 {
        // VP8 at twice the rate: the two streams are independent.
        sim.frame_of(H264, i == 0);
        sim.frame_of(Vp8, i == 0);
        sim.step(Duration::from_millis(16));
        sim.frame_of(Vp8, false);
        sim.step(Duration::from_millis(17));
    }
    sim.step(Duration::from_millis(100));
    assert_eq!(sim.peers[chromium].frames.len(), 20);
    assert_eq!(sim.peers[firefox].frames.len(), 40);
    // What arrived is what was sent for that codec: Annex-B for H.264, a VP8
    // frame tag for VP8 (str0m depacketizes each by its negotiated codec).
    assert!(
        sim.peers[chromium]
            .frames
            .iter()
            .all(|f| f.starts_with(&[0, 0, 0, 1]))
    );
    assert!(
        sim.peers[firefox]
            .frames
            .iter()
            .all(|f| f[0] & 0xfe == 0x10)
    );
    assert_eq!(sim.sessions.frames_sent(c_id), Some(20));
    assert_eq!(sim.sessions.frames_sent(f_id), Some(40));
}

#[test]
fn a_keyframe_ask_names_the_codec_of_the_viewer_who_asked() {
    let mut sim = Sim::new(8);
    let _chromium = sim.join_as(Browser::Chromium);
    let firefox = sim.join_as(Browser::FirefoxOffline);
    sim.connect_all();
    // Joining: one ask each, for its own codec.
    assert_eq!(
        (keyframe_asks(&sim, H264), keyframe_asks(&sim, Vp8)),
        (1, 1)
    );
    for i in 0..5 {
        sim.frame_of(H264, i == 0);
        sim.frame_of(Vp8, i == 0);
        sim.step(Duration::from_millis(33));
    }
    sim.request_keyframe(firefox);
    sim.step(Duration::from_millis(20));
    sim.step(Duration::from_millis(20));
    assert_eq!(
        keyframe_asks(&sim, Vp8),
        2,
        "the VP8 viewer's PLI asks the VP8 encoder"
    );
    assert_eq!(keyframe_asks(&sim, H264), 1, "and never the H.264 one");
}

#[test]
fn the_vp8_encoder_runs_while_vp8_viewers_watch() {
    let grace = Duration::from_secs(5);
    let mut sim = Sim::new(8);
    let mut demand = Demand::new(grace);
    let mut actions = Vec::new();
    let turn = |sim: &mut Sim, demand: &mut Demand, actions: &mut Vec<Action>| {
        for codec in [H264, Vp8] {
            demand.set_viewers(sim.now, codec, sim.sessions.viewers_of(codec));
        }
        demand.handle_timeout(sim.now);
        actions.extend(std::iter::from_fn(|| demand.poll_action()));
    };
    sim.join_as(Browser::Chromium);
    sim.connect_all();
    turn(&mut sim, &mut demand, &mut actions);
    assert_eq!(actions, vec![Action::Start(H264)]);

    let firefox = sim.join_as(Browser::FirefoxOffline);
    turn(&mut sim, &mut demand, &mut actions);
    assert_eq!(
        actions[1..],
        [Action::Start(Vp8)],
        "starts on the offer, before ICE"
    );
    sim.connect_all();

    let id = sim.peers[firefox].id.unwrap();
    sim.sessions.end(id, rtcam::rtc::EndReason::HangUp).unwrap();
    turn(&mut sim, &mut demand, &mut actions);
    assert_eq!(actions.len(), 2, "the grace period first");
    for _ in 0..60 {
        // Chromium keeps watching through it all.
        sim.frame_of(H264, false);
        sim.step(Duration::from_millis(100));
        turn(&mut sim, &mut demand, &mut actions);
    }
    assert_eq!(
        actions[2..],
        [Action::Stop(Vp8)],
        "stopped after the grace, H.264 untouched"
    );
    assert!(demand.is_running(H264));
}

/// H.264 passthrough sends the camera's own profile-level-id: a camera that
/// writes constrained baseline with other constraint flags (42c0xx) is still
/// what a browser offering 42e0xx takes; a camera in a profile the offer
/// lacks is refused, naming the profile.
#[test]
fn a_passthrough_camera_profile_is_matched_by_profile_not_bytes() {
    use rtcam::encode::SdpParams;
    let mut sim = Sim::with_codecs(
        4,
        vec![SdpParams::H264 {
            profile_level_id: 0x42c028,
        }],
    );
    let viewer = sim.join_as(Browser::Chromium);
    let id = sim.peers[viewer].id.unwrap();
    assert_eq!(sim.sessions.codec_of(id), Some(H264));

    let mut sim = Sim::with_codecs(
        4,
        vec![SdpParams::H264 {
            profile_level_id: 0xf40028,
        }],
    );
    let (_, offer, _, addr) = sim.offer(0);
    let err = sim
        .sessions
        .add_viewer(sim.now, &offer, addr.ip())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("PredictiveHigh444 (profile-level-id f40028"),
        "{err}"
    );
}

/// NACKs are answered only when the answer carries an RTX payload type for
/// the video codec (`apt=`): check it does for what Chromium and Firefox
/// (without OpenH264) offer.
#[test]
fn every_answer_carries_retransmission_for_its_codec() {
    for (name, offer) in [
        (
            "chromium-like",
            offer_with(|c| c.enable_vp8(true).enable_h264(true)),
        ),
        (
            "firefox-like",
            offer_with(|c| c.enable_vp8(true).enable_vp9(true)),
        ),
    ] {
        let mut sim = Sim::new(4);
        let (_, answer) = sim
            .sessions
            .add_viewer(sim.now, &offer, "10.0.0.9".parse().unwrap())
            .expect("answered");
        let video: Vec<&str> = answer
            .split("m=")
            .find(|m| m.starts_with("video"))
            .expect("a video section")
            .lines()
            .collect();
        let pts_of = |codec: &str| -> Vec<String> {
            video
                .iter()
                .filter_map(|l| {
                    let (pt, enc) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
                    enc.to_ascii_lowercase()
                        .starts_with(codec)
                        .then(|| pt.to_string())
                })
                .collect()
        };
        let main = pts_of("h264")
            .into_iter()
            .chain(pts_of("vp8"))
            .next()
            .expect("a codec");
        let answered = pts_of("rtx")
            .iter()
            .any(|rtx| video.contains(&format!("a=fmtp:{rtx} apt={main}").as_str()));
        assert!(
            answered,
            "{name}: no RTX for payload type {main} in\n{answer}"
        );
    }
}
