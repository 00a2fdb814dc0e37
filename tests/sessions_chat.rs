//! Chat on the `rtcam` data channel each viewer makes in its offer: the
//! session table and str0m peers in one process on simulated time.

use crate::common;

use std::time::Duration;

use common::sim::Sim;

fn chats(sim: &Sim, i: usize) -> Vec<(String, String)> {
    sim.received(i)
        .into_iter()
        .filter(|m| m["type"] == "chat")
        .map(|m| {
            (
                m["from"].as_str().unwrap().into(),
                m["text"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn a_chat_line_reaches_every_viewer_the_sender_included() {
    let mut sim = Sim::new(8);
    let (a, b, c) = (
        sim.join_with_channel(),
        sim.join_with_channel(),
        sim.join_with_channel(),
    );
    sim.connect_all();
    sim.open_channels();
    sim.say(a, r#"{"type":"hello","name":"Ann"}"#);
    sim.step(Duration::from_millis(10));
    sim.say(a, r#"{"type":"chat","text":"<b>look</b> at the door"}"#);
    for _ in 0..5 {
        sim.step(Duration::from_millis(10));
    }
    for p in [a, b, c] {
        assert_eq!(
            chats(&sim, p),
            vec![("Ann".to_string(), "<b>look</b> at the door".to_string())],
            "peer {p}"
        );
    }
    // A viewer without the channel watches on, told nothing.
    let plain = sim.join();
    sim.connect_all();
    sim.frames(3, true);
    assert!(sim.peers[plain].messages.is_empty());
    assert!(!sim.peers[plain].frames.is_empty());
}

#[test]
fn a_late_viewer_gets_the_history_and_a_leaving_one_is_forgotten() {
    let mut sim = Sim::new(8);
    let a = sim.join_with_channel();
    let b = sim.join_with_channel();
    sim.connect_all();
    sim.open_channels();
    for i in 0..3 {
        sim.say(a, &format!(r#"{{"type":"chat","text":"line {i}"}}"#));
        sim.step(Duration::from_millis(250));
    }
    // b leaves mid-chat; a goes on talking.
    let id_b = sim.peers[b].id.unwrap();
    sim.sessions
        .end(id_b, rtcam::rtc::EndReason::HangUp)
        .unwrap();
    sim.say(a, r#"{"type":"chat","text":"after b left"}"#);
    sim.step(Duration::from_millis(50));
    let late = sim.join_with_channel();
    sim.connect_all();
    sim.open_channels();
    for _ in 0..5 {
        sim.step(Duration::from_millis(10));
    }
    let texts: Vec<String> = chats(&sim, late).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["line 0", "line 1", "line 2", "after b left"]);
    assert_eq!(chats(&sim, b).len(), 3, "b heard nothing after it left");
}

#[test]
fn a_flood_and_bad_messages_get_errors_and_the_video_goes_on() {
    let mut sim = Sim::new(8);
    let a = sim.join_with_channel();
    let b = sim.join_with_channel();
    sim.connect_all();
    sim.open_channels();
    sim.say(a, "not json at all");
    sim.say(
        a,
        &format!(r#"{{"type":"chat","text":"{}"}}"#, "y".repeat(1_001)),
    );
    for i in 0..40 {
        sim.say(a, &format!(r#"{{"type":"chat","text":"spam {i}"}}"#));
    }
    sim.frames(10, true);
    let errors: Vec<String> = sim
        .received(a)
        .into_iter()
        .filter(|m| m["type"] == "error")
        .map(|m| m["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        errors,
        ["bad_json", "text_too_long", "too_fast"],
        "one error for the flood"
    );
    // Of the flood, the burst allowance got through: 5 a second in all.
    let heard = chats(&sim, b).len();
    assert!((3..=6).contains(&heard), "b heard {heard} lines");
    let got = (sim.peers[a].frames.len(), sim.peers[b].frames.len());
    assert!(got.0 >= 9 && got.1 >= 9, "frames: {got:?}");
    assert!(
        sim.ended(sim.peers[a].id.unwrap()).is_none(),
        "the session goes on"
    );
}

#[test]
fn telemetry_comes_once_a_second_with_the_link() {
    let mut sim = Sim::new(8);
    let a = sim.join_with_channel();
    let b = sim.join_with_channel();
    sim.connect_all();
    sim.open_channels();
    sim.frames(90, true); // 3 s at 30 fps
    let telemetry: Vec<serde_json::Value> = sim
        .received(a)
        .into_iter()
        .filter(|m| m["type"] == "telemetry")
        .collect();
    assert!((2..=4).contains(&telemetry.len()), "{telemetry:?}");
    let last = telemetry.last().unwrap();
    assert_eq!(last["viewers"], 2);
    assert_eq!(last["codec"], "H.264");
    assert_eq!(last["copies"], 1);
    let fps = last["fps"].as_f64().unwrap();
    assert!((25.0..=35.0).contains(&fps), "{last}");
    assert!(sim.received(b).iter().any(|m| m["type"] == "telemetry"));
}
