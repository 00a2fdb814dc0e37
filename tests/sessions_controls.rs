//! The camera's controls on the `rtcam` data channel: every viewer learns
//! them when its channel opens; a viewer that may sets one, the session
//! table asks the camera (an event), and the camera's fresh values reach
//! every page, so sliders move together. Session table and str0m peers on
//! simulated time.

use crate::common;

use std::time::Duration;

use common::sim::Sim;
use rtcam::capture::controls::{ControlError, SceneLook};
use rtcam::capture::supervise::CameraState;
use rtcam::control::CameraView;
use rtcam::rtc::{Grant, SessionEvent};

fn camera(brightness: i64) -> CameraView {
    let mut look = SceneLook::default();
    look.set("brightness", brightness).unwrap();
    CameraView {
        state: CameraState::Live,
        name: "test-scene 640x360 @ 30 fps".into(),
        problem: None,
        controls: look.controls(),
    }
}

fn of_type(sim: &Sim, i: usize, t: &str) -> Vec<serde_json::Value> {
    sim.received(i)
        .into_iter()
        .filter(|m| m["type"] == t)
        .collect()
}

fn brightness(m: &serde_json::Value) -> i64 {
    m["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "brightness")
        .unwrap()["value"]
        .as_i64()
        .unwrap()
}

fn settle(sim: &mut Sim) {
    for _ in 0..5 {
        sim.step(Duration::from_millis(10));
    }
}

fn two_viewers_one_watch_only() -> (Sim, usize, usize) {
    let mut sim = Sim::new(8);
    sim.sessions.set_camera(camera(128));
    let (a, b) = (sim.join_with_channel(), sim.join_with_channel());
    let id_b = sim.peers[b].id.unwrap();
    sim.sessions.grant(
        id_b,
        Grant {
            token_name: Some("hall-display".into()),
            may_control: false,
        },
    );
    sim.connect_all();
    for _ in 0..200 {
        if sim.peers.iter().all(|p| p.channel.is_some()) {
            break;
        }
        sim.step(Duration::from_millis(10));
    }
    settle(&mut sim);
    (sim, a, b)
}

#[test]
fn a_slider_moved_by_one_viewer_moves_for_every_viewer() {
    let (mut sim, a, b) = two_viewers_one_watch_only();
    for (p, may) in [(a, true), (b, false)] {
        let c = of_type(&sim, p, "controls");
        assert_eq!(c.len(), 1, "peer {p} learns the controls once");
        assert_eq!(c[0]["may_set"], may);
        assert_eq!(brightness(&c[0]), 128);
        assert_eq!(of_type(&sim, p, "camera")[0]["state"], "live");
    }
    sim.say(a, r#"{"type":"set","control":"brightness","value":180}"#);
    settle(&mut sim);
    let id_a = sim.peers[a].id.unwrap();
    let asked: Vec<_> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::SetControl {
                from,
                control,
                value,
            } => Some((*from, control.clone(), *value)),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![(id_a, "brightness".to_string(), 180)]);
    // The camera applied it: both pages hear the new value.
    sim.sessions.set_camera(camera(180));
    settle(&mut sim);
    for p in [a, b] {
        let c = of_type(&sim, p, "controls");
        assert_eq!(c.len(), 2, "peer {p}");
        assert_eq!(brightness(&c[1]), 180);
    }
}

#[test]
fn a_watch_only_token_and_a_refusing_camera_get_errors_and_video_goes_on() {
    let (mut sim, a, b) = two_viewers_one_watch_only();
    sim.events.clear();
    sim.say(b, r#"{"type":"set","control":"brightness","value":10}"#);
    settle(&mut sim);
    let errors = of_type(&sim, b, "error");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["reason"], "not_allowed");
    assert!(
        !sim.events
            .iter()
            .any(|e| matches!(e, SessionEvent::SetControl { .. })),
        "the camera is not asked"
    );
    let id_a = sim.peers[a].id.unwrap();
    sim.sessions.control_refused(
        id_a,
        ControlError::Failed {
            id: "brightness".into(),
            why: "Device or resource busy".into(),
        },
    );
    settle(&mut sim);
    let errors = of_type(&sim, a, "error");
    assert_eq!(errors[0]["reason"], "control_failed");
    assert!(errors[0]["message"].as_str().unwrap().contains("busy"));
    let before: Vec<usize> = sim.peers.iter().map(|p| p.frames.len()).collect();
    sim.frames(3, true);
    for (p, n) in before.into_iter().enumerate() {
        assert!(sim.peers[p].frames.len() > n, "peer {p} still gets video");
    }
}

#[test]
fn a_lost_camera_is_told_to_every_viewer() {
    let (mut sim, a, b) = two_viewers_one_watch_only();
    let mut lost = camera(128);
    lost.state = CameraState::Lost;
    lost.problem = Some("/dev/video0: No such device".into());
    sim.sessions.set_camera(lost);
    settle(&mut sim);
    for p in [a, b] {
        let cams = of_type(&sim, p, "camera");
        assert_eq!(cams.len(), 2, "peer {p}");
        assert_eq!(cams[1]["state"], "lost");
        assert!(
            cams[1]["problem"]
                .as_str()
                .unwrap()
                .contains("No such device")
        );
        assert_eq!(of_type(&sim, p, "controls").len(), 1, "controls unchanged");
    }
}
