//! Picture uploads cannot be held by a trickle (issue #20): the session
//! table and str0m peers in one process on simulated time. Two watch-only
//! viewers announce the largest picture, send a byte every 2 s, and
//! announce again whenever they are told no; a third viewer still shares
//! its picture within seconds.

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::sim::Sim;
use rtcam::control::images::{MAX_CHUNK_BYTES, MAX_IMAGE_BYTES};
use rtcam::rtc::Grant;

fn errors(sim: &Sim, i: usize) -> Vec<String> {
    sim.received(i)
        .into_iter()
        .filter(|m| m["type"] == "error")
        .map(|m| m["reason"].as_str().unwrap().to_string())
        .collect()
}

/// The chat lines with a picture peer `i` got: (from, file name).
fn pictures(sim: &Sim, i: usize) -> Vec<(String, String)> {
    sim.received(i)
        .into_iter()
        .filter(|m| m["type"] == "chat" && m["image"].is_object())
        .map(|m| {
            (
                m["from"].as_str().unwrap().into(),
                m["text"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// A viewer that may only watch, as a WHEP token made without `--control`.
fn watch_only(sim: &mut Sim, i: usize, name: &str) {
    let id = sim.peers[i].id.unwrap();
    let grant = Grant {
        token_name: Some(name.into()),
        may_control: false,
    };
    sim.sessions.grant(id, grant);
}

/// One of the two slow viewers: the upload it believes is under way.
struct Trickler {
    peer: usize,
    upload: Option<u32>,
    next_id: u32,
    errors_seen: usize,
    last_announce: Option<Duration>,
    /// When it was first told its upload came too slowly.
    cancelled_at: Option<Duration>,
}

impl Trickler {
    /// One 100 ms turn at `at` since the start: a "no" makes it announce
    /// the largest picture again (at most once a second); every 2 s it
    /// sends one byte of the one under way.
    fn turn(&mut self, sim: &mut Sim, at: Duration) {
        let errors = errors(sim, self.peer);
        if errors.len() > self.errors_seen {
            if errors.iter().any(|e| e == "upload_too_slow") {
                self.cancelled_at.get_or_insert(at);
            }
            self.errors_seen = errors.len();
            self.upload = None;
        }
        let announced_long_ago = self
            .last_announce
            .is_none_or(|t| at >= t + Duration::from_secs(1));
        if self.upload.is_none() && announced_long_ago {
            self.next_id += 1;
            let id = self.next_id;
            let start = format!(
                r#"{{"type":"image","id":{id},"name":"slow.jpg","size":{MAX_IMAGE_BYTES}}}"#
            );
            sim.say(self.peer, &start);
            self.upload = Some(id);
            self.last_announce = Some(at);
        }
        if let Some(id) = self.upload
            && at.as_millis().is_multiple_of(2000)
        {
            sim.say(
                self.peer,
                &format!(r#"{{"type":"image_chunk","id":{id},"data":"eA=="}}"#),
            );
        }
    }
}

/// Peer `i` announces `png` and sends it in chunks, as the page does.
fn share(sim: &mut Sim, i: usize, id: u32, png: &[u8]) {
    let start = format!(
        r#"{{"type":"image","id":{id},"name":"door.png","size":{}}}"#,
        png.len()
    );
    sim.say(i, &start);
    sim.step(Duration::from_millis(10));
    for part in png.chunks(MAX_CHUNK_BYTES) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(part);
        sim.say(
            i,
            &format!(r#"{{"type":"image_chunk","id":{id},"data":"{b64}"}}"#),
        );
        sim.step(Duration::from_millis(10));
    }
}

#[test]
fn two_trickling_viewers_cannot_keep_a_third_from_sharing_a_picture() {
    let mut sim = Sim::new(8);
    let (slow_a, slow_b) = (sim.join_with_channel(), sim.join_with_channel());
    watch_only(&mut sim, slow_a, "trickle-a");
    watch_only(&mut sim, slow_b, "trickle-b");
    let honest = sim.join_with_channel();
    sim.connect_all();
    sim.open_channels();
    let mut tricklers = [slow_a, slow_b].map(|peer| Trickler {
        peer,
        upload: None,
        next_id: 0,
        errors_seen: 0,
        last_announce: None,
        cancelled_at: None,
    });
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.resize(100_000, 1);
    let mut shared_at = None;
    for step in 0..200u32 {
        let at = Duration::from_millis(100 * u64::from(step));
        for t in &mut tricklers {
            t.turn(&mut sim, at);
        }
        sim.step(Duration::from_millis(100));
        if at == Duration::from_millis(500) {
            // Both slots are theirs now.
            share(&mut sim, honest, 1, &png);
            assert_eq!(errors(&sim, honest), ["upload_busy"]);
        }
        // Then the honest viewer tries again every 2 s, as its user would.
        if at >= Duration::from_secs(2)
            && at.as_millis().is_multiple_of(2000)
            && shared_at.is_none()
            && pictures(&sim, honest).is_empty()
        {
            share(&mut sim, honest, 2 + step, &png);
            if !pictures(&sim, honest).is_empty() {
                shared_at = Some(at);
            }
        }
    }
    let shared_at = shared_at.unwrap_or_else(|| {
        panic!(
            "the honest viewer never shared its picture; it was told {:?}",
            errors(&sim, honest)
        )
    });
    // A trickle holds a slot for its 3 s grace, and is then cancelled at
    // once; the next try after that gets through.
    assert!(shared_at <= Duration::from_secs(4), "{shared_at:?}");
    for t in &tricklers {
        let cancelled = t.cancelled_at.expect("the trickle was cancelled");
        assert!(
            cancelled <= Duration::from_millis(3_500),
            "peer {}: cancelled only at {cancelled:?}",
            t.peer
        );
        // Told once it was too slow, then to wait: not again at once.
        let told = errors(&sim, t.peer);
        assert_eq!(
            told.iter().filter(|e| *e == "upload_too_slow").count(),
            1,
            "{told:?}"
        );
        assert!(told.iter().any(|e| e == "upload_cooldown"), "{told:?}");
        assert!(
            told.iter().all(
                |e| ["upload_too_slow", "upload_cooldown", "upload_busy"].contains(&e.as_str())
            ),
            "{told:?}"
        );
    }
    // Everyone saw the honest picture, and only it.
    for p in [slow_a, slow_b, honest] {
        let got = pictures(&sim, p);
        assert_eq!(got.len(), 1, "peer {p}: {got:?}");
        assert_eq!(got[0].1, "door.png");
    }
    let image = sim.sessions.chat_image(1).expect("kept");
    assert_eq!(image.bytes.len(), png.len());
}
