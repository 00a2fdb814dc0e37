//! A WHIP publish is a row of the session table: rtcam offers, a receiver
//! (a str0m peer standing in for an SFU) answers; rtcam is the controlling
//! full-ICE agent. It gets the shared encode, its keyframe requests reach
//! the encoder, it does not take a viewer's place, and an answer that
//! refuses our codec is an error. Simulated time, str0m style.

use crate::common;

use std::time::Duration;

use common::sim::Sim;
use rtcam::audio::EncodedAudio;
use rtcam::frame::VideoCodec;
use rtcam::rtc::{PublishSpec, SessionError, SessionEvent};

fn h264(audio: bool) -> PublishSpec {
    PublishSpec {
        codec: VideoCodec::H264,
        audio,
        keyframe_every: None,
    }
}

fn settle(sim: &mut Sim) {
    for _ in 0..100 {
        if sim.peers.iter().all(|p| p.connected) {
            break;
        }
        sim.step(Duration::from_millis(10));
    }
    for _ in 0..5 {
        sim.step(Duration::from_millis(10));
    }
}

fn keyframe_asks(sim: &Sim) -> usize {
    sim.events
        .iter()
        .filter(|e| matches!(e, SessionEvent::KeyframeWanted(..)))
        .count()
}

#[test]
fn the_receiver_gets_the_shared_stream_and_its_pli_reaches_the_encoder() {
    let mut sim = Sim::new(1);
    let sfu = sim
        .publish(h264(true), |c| c.enable_h264(true).enable_opus(true, false))
        .expect("answer applies");
    settle(&mut sim);
    assert!(
        sim.peers[sfu].connected,
        "ICE (rtcam controlling) and DTLS up"
    );
    let id = sim.peers[sfu].id.unwrap();
    assert!(sim.events.contains(&SessionEvent::Connected(id)));
    assert_eq!(sim.sessions.codec_of(id), Some(VideoCodec::H264));
    // The publish is not a viewer: the one viewer slot is still free.
    assert_eq!(sim.sessions.len(), 0);
    let viewer = sim.join();
    settle(&mut sim);
    assert!(sim.peers[viewer].connected);
    sim.frames(30, true);
    sim.step(Duration::from_millis(50));
    assert_eq!(sim.peers[sfu].frames.len(), 30, "every frame to the SFU");
    assert_eq!(sim.peers[viewer].frames.len(), 30, "and to the viewer");

    // The microphone too, one Opus encode for all.
    for n in 0..25u8 {
        sim.sessions.write_audio(&EncodedAudio {
            data: std::sync::Arc::from(vec![0xfc, n, n, n]),
            captured: sim.now,
            wall_ns: 1_767_225_600_000_000_000,
            level: 30,
        });
        sim.step(Duration::from_millis(20));
    }
    sim.step(Duration::from_millis(100));
    assert_eq!(sim.peers[sfu].audio.len(), 25, "the SFU gets the sound");

    let before = keyframe_asks(&sim);
    sim.request_keyframe(sfu);
    for _ in 0..20 {
        sim.step(Duration::from_millis(10));
    }
    assert!(
        keyframe_asks(&sim) > before,
        "the SFU's PLI asks the encoder"
    );
}

#[test]
fn an_answer_without_our_codec_is_refused() {
    let mut sim = Sim::new(4);
    let refused = sim.publish(h264(false), |c| c.enable_vp8(true));
    assert!(
        matches!(refused, Err(SessionError::NoCodec { .. })),
        "{refused:?}"
    );
}

#[test]
fn vp8_publishes_carry_vp8() {
    let mut sim = Sim::new(4);
    let spec = PublishSpec {
        codec: VideoCodec::Vp8,
        ..h264(false)
    };
    let sfu = sim
        .publish(spec, |c| c.enable_vp8(true).enable_h264(true))
        .expect("answer applies");
    settle(&mut sim);
    let id = sim.peers[sfu].id.unwrap();
    assert_eq!(sim.sessions.codec_of(id), Some(VideoCodec::Vp8));
    for i in 0..10 {
        sim.frame_of(VideoCodec::Vp8, i == 0);
        sim.frame_of(VideoCodec::H264, i == 0);
        sim.step(Duration::from_millis(33));
    }
    assert_eq!(sim.peers[sfu].frames.len(), 10, "VP8 frames only");
}

#[test]
fn a_keyframe_interval_asks_for_keyframes_on_schedule() {
    let mut sim = Sim::new(4);
    let spec = PublishSpec {
        keyframe_every: Some(Duration::from_secs(2)),
        ..h264(false)
    };
    sim.publish(spec, |c| c.enable_h264(true)).unwrap();
    settle(&mut sim);
    let at_connect = keyframe_asks(&sim);
    for _ in 0..(10_000 / 50) {
        sim.step(Duration::from_millis(50));
    }
    let scheduled = keyframe_asks(&sim) - at_connect;
    assert!(
        (4..=5).contains(&scheduled),
        "one every 2 s over 10 s: {scheduled}"
    );
}
