//! Any sequence of messages on the `rtcam` data channel from two viewers
//! (and bytes on their `serial` channels): the protocol never panics,
//! answers every refused message with a JSON error, asks the camera only for
//! values its controls take, and keeps its history bounded.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtcam::capture::controls::{self, SceneLook};
use rtcam::capture::supervise::CameraState;
use rtcam::control::{CameraView, Control, HISTORY, Request};
use rtcam::serial::{SerialState, SerialView};

const KNOWN: [&str; 6] = ["chat", "error", "camera", "controls", "serial", "telemetry"];

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut c: Control<u8> = Control::new();
    let look = SceneLook::default();
    c.camera(CameraView {
        state: CameraState::Live,
        name: "test".into(),
        problem: None,
        controls: look.controls(),
    });
    c.serial(SerialView {
        state: SerialState::Open,
        path: Some("/dev/ttyUSB0".into()),
        baud: 9600,
        problem: None,
    });
    c.join(t0, 0, None, true);
    c.join(t0, 1, Some("token"), false);
    for (i, msg) in data.split(|&b| b == 0x1e).enumerate() {
        let who = (i % 2) as u8;
        let now = t0 + Duration::from_millis(i as u64 * 150);
        match msg.first() {
            Some(&0xfe) => {
                c.serial_write(now, who, msg.len());
            }
            Some(&0xfd) => c.tick(now + Duration::from_secs(11)),
            first => c.handle(now, i as u64, who, msg, first == Some(&0xff)),
        }
        if i % 7 == 6 {
            c.join(t0, 2, None, true);
        }
        while let Some(out) = c.poll_output() {
            let v: serde_json::Value = serde_json::from_str(&out.text).expect("JSON out");
            assert!(KNOWN.iter().any(|t| v["type"] == *t), "{v}");
        }
        while let Some(Request::SetControl { from, id, value }) = c.poll_request() {
            assert_eq!(from, 0, "only the viewer that may control asks");
            assert!(controls::check(&look.controls(), &id, value).is_ok());
        }
    }
    c.join(t0, 3, None, true);
    let history = std::iter::from_fn(|| c.poll_output()).count();
    assert!(history <= HISTORY + 3, "the camera, controls and serial, then the history");
});
