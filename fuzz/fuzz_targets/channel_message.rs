//! Any sequence of messages on the `rtcam` data channel from two viewers:
//! the protocol never panics, answers every refused message with a JSON
//! error, and keeps its history bounded.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtcam::control::{Control, HISTORY};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut c: Control<u8> = Control::new();
    c.join(t0, 0, None);
    c.join(t0, 1, Some("token"));
    for (i, msg) in data.split(|&b| b == 0x1e).enumerate() {
        let who = (i % 2) as u8;
        let binary = msg.first() == Some(&0xff);
        c.handle(t0 + Duration::from_millis(i as u64 * 150), i as u64, who, msg, binary);
        if i % 7 == 6 {
            c.join(t0, 2, None);
        }
        while let Some(out) = c.poll_output() {
            let v: serde_json::Value = serde_json::from_str(&out.text).expect("JSON out");
            assert!(v["type"] == "chat" || v["type"] == "error", "{v}");
        }
    }
    c.join(t0, 3, None);
    let history = std::iter::from_fn(|| c.poll_output()).count();
    assert!(history <= HISTORY);
});
