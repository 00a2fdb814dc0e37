//! Audio on simulated time: the microphone's one encode reaches every viewer
//! whose offer takes audio, whatever its video codec; viewers without audio
//! keep their video; one talker at a time reaches the speaker.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sim::{Browser, Sim};
use rtcam::audio::EncodedAudio;
use rtcam::control::talk::{AudioView, DeviceState, DeviceView};
use rtcam::rtc::SessionEvent;
use str0m::media::{Direction, MediaTime};

fn mic_packet(at: Instant, n: u8) -> EncodedAudio {
    EncodedAudio {
        // Not real Opus: the table forwards bytes, it never decodes them.
        data: Arc::from(vec![0xfc, n, n, n]),
        captured: at,
        wall_ns: 1_767_225_600_000_000_000,
        level: 30,
    }
}

fn speaker_open() -> AudioView {
    let open = DeviceView {
        state: DeviceState::Open,
        device: Some("test".into()),
        problem: None,
    };
    AudioView {
        microphone: open.clone(),
        speaker: open,
        echo: "half-duplex",
    }
}

/// Peer `i` says 20 ms of voice (`loud`) on its audio section, as RTP
/// packet `n` of its stream.
fn talk(sim: &mut Sim, i: usize, n: u64, loud: bool) {
    let now = sim.now;
    let p = &mut sim.peers[i];
    let mid = p.audio_mid.expect("an audio section");
    let writer = p.rtc.writer(mid).expect("it may send audio");
    let pt = writer.payload_params().next().expect("Opus").pt();
    let level = if loud { -20 } else { -127 };
    writer
        .audio_level(level, loud)
        .write(
            pt,
            now,
            MediaTime::new(n * 960, str0m::media::Frequency::FORTY_EIGHT_KHZ),
            vec![0xfc, 1, 2, 3],
        )
        .unwrap();
}

fn talk_packets(sim: &Sim) -> usize {
    sim.events
        .iter()
        .filter(|e| matches!(e, SessionEvent::Talk(_)))
        .count()
}

#[test]
fn the_one_encode_reaches_viewers_of_both_codecs_and_not_those_without_audio() {
    let mut sim = Sim::new(8);
    let h264 = sim.join_full(Browser::Chromium, &[], Some(Direction::SendRecv));
    let vp8 = sim.join_full(Browser::FirefoxOffline, &[], Some(Direction::SendRecv));
    let whep = sim.join_full(Browser::Chromium, &[], Some(Direction::RecvOnly));
    let mute = sim.join();
    sim.connect_all();
    assert_eq!(sim.sessions.audio_listeners(), 3);
    sim.frame(true);
    sim.frame_of(rtcam::frame::VideoCodec::Vp8, true);
    for n in 0..50 {
        sim.sessions.write_audio(&mic_packet(sim.now, n));
        sim.step(Duration::from_millis(20));
    }
    sim.step(Duration::from_millis(100));
    for i in [h264, vp8, whep] {
        assert_eq!(sim.peers[i].audio.len(), 50, "viewer {i} hears every frame");
        assert_eq!(
            sim.peers[i].audio[7], sim.peers[h264].audio[7],
            "the same bytes"
        );
    }
    assert!(sim.peers[mute].audio.is_empty());
    assert_eq!(sim.peers[mute].frames.len(), 1, "its video goes on");
    assert_eq!(sim.peers[vp8].frames.len(), 1);
}

#[test]
fn one_talker_reaches_the_speaker_others_are_told_who() {
    let mut sim = Sim::new(8);
    sim.sessions.set_audio(speaker_open());
    let ann = sim.join_full(Browser::Chromium, &["rtcam"], Some(Direction::SendRecv));
    let bob = sim.join_full(Browser::Chromium, &["rtcam"], Some(Direction::SendRecv));
    sim.connect_all();
    sim.step(Duration::from_millis(50));
    sim.say(ann, r#"{"type":"hello","name":"Ann"}"#);
    sim.say(ann, r#"{"type":"talk","on":true}"#);
    sim.step(Duration::from_millis(20));
    let told = sim.received(bob);
    assert!(
        told.iter()
            .any(|m| m["type"] == "talk" && m["holder"] == "Ann" && m["you_hold"] == false),
        "{told:?}"
    );
    assert!(
        sim.received(ann)
            .iter()
            .any(|m| m["type"] == "talk" && m["you_hold"] == true)
    );

    for n in 0..10 {
        talk(&mut sim, ann, n, true);
        talk(&mut sim, bob, n, true);
        sim.step(Duration::from_millis(20));
    }
    sim.step(Duration::from_millis(100));
    let heard = talk_packets(&sim);
    assert!((9..=10).contains(&heard), "only Ann's packets: {heard}");

    sim.say(bob, r#"{"type":"talk","on":true}"#);
    sim.step(Duration::from_millis(20));
    let refused = sim.received(bob);
    assert!(
        refused
            .iter()
            .any(|m| m["type"] == "error" && m["reason"] == "talk_busy"),
        "{refused:?}"
    );

    // Ann's packets go on, silent: after 5 s the floor is free.
    for n in 10..300 {
        talk(&mut sim, ann, n, false);
        sim.step(Duration::from_millis(20));
    }
    let last = sim.received(bob);
    let last_talk = last.iter().rev().find(|m| m["type"] == "talk").unwrap();
    assert_eq!(last_talk["holder"], serde_json::Value::Null, "{last_talk}");
    sim.say(bob, r#"{"type":"talk","on":true}"#);
    sim.step(Duration::from_millis(20));
    let now_bob = sim.received(ann);
    assert!(now_bob.iter().rev().find(|m| m["type"] == "talk").unwrap()["holder"] != "Ann");
}

#[test]
fn a_watch_only_viewer_and_a_device_without_speaker_refuse_talking() {
    let mut sim = Sim::new(8);
    let watcher = sim.join_full(Browser::Chromium, &["rtcam"], Some(Direction::SendRecv));
    let id = sim.peers[watcher].id.unwrap();
    sim.sessions.grant(
        id,
        rtcam::rtc::Grant {
            token_name: Some("kiosk".into()),
            may_control: false,
        },
    );
    let owner = sim.join_full(Browser::Chromium, &["rtcam"], Some(Direction::SendRecv));
    sim.connect_all();
    sim.step(Duration::from_millis(50));
    // No speaker yet (the default view: off).
    sim.say(owner, r#"{"type":"talk","on":true}"#);
    sim.step(Duration::from_millis(20));
    assert!(
        sim.received(owner)
            .iter()
            .any(|m| m["reason"] == "talk_unavailable")
    );
    sim.sessions.set_audio(speaker_open());
    sim.step(Duration::from_millis(20));
    let audio = sim.received(watcher);
    let audio = audio.iter().rev().find(|m| m["type"] == "audio").unwrap();
    assert_eq!(audio["may_talk"], false);
    assert_eq!(audio["speaker"]["state"], "open");
    sim.say(watcher, r#"{"type":"talk","on":true}"#);
    sim.step(Duration::from_millis(20));
    assert!(
        sim.received(watcher)
            .iter()
            .any(|m| m["reason"] == "not_allowed")
    );
    for n in 0..10 {
        talk(&mut sim, watcher, n, true);
        sim.step(Duration::from_millis(20));
    }
    assert_eq!(
        talk_packets(&sim),
        0,
        "a watch-only viewer never reaches the speaker"
    );
}

#[test]
fn an_offer_without_audio_gets_video_and_one_with_audio_gets_an_audio_answer() {
    let mut sim = Sim::new(8);
    let (_, offer, _, addr) = sim.offer(0);
    let (_, answer) = sim.sessions.add_viewer(sim.now, &offer, addr.ip()).unwrap();
    assert!(answer.contains("m=video") && !answer.contains("m=audio"));
    let with = sim.join_full(Browser::Chromium, &[], Some(Direction::SendRecv));
    sim.connect_all();
    assert!(sim.peers[with].audio_mid.is_some(), "the answer has audio");
}

#[test]
fn audio_flows_while_bandwidth_estimation_runs() {
    let mut sim = Sim::new(8);
    let mut config = rtcam::rtc::SessionConfig::new(
        vec![common::sim::SERVER.parse().unwrap()],
        8,
        common::sim::codecs(),
    );
    config.rates = vec![(
        rtcam::frame::VideoCodec::H264,
        rtcam::rtc::rate::RateRange::from_ceiling(1900),
    )];
    sim.sessions = rtcam::rtc::Sessions::new(config, sim.now);
    let p = sim.join_full(Browser::Chromium, &[], Some(Direction::SendRecv));
    sim.connect_all();
    sim.frame(true);
    for n in 0..100 {
        let at = sim.now - Duration::from_millis(20);
        sim.sessions.write_audio(&mic_packet(at, n as u8));
        if n % 3 == 0 {
            sim.frame(false);
        }
        sim.step(Duration::from_millis(20));
    }
    sim.step(Duration::from_millis(200));
    assert_eq!(sim.peers[p].audio.len(), 100);
}
