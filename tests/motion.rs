//! Motion through the real binary, on the still test scene (a fixed camera;
//! an object crosses it from 6 s to 9 s of every 12): nothing while it is
//! empty; then the event reaches a viewer on the `rtcam` channel with its
//! snapshot, `/api/events` and `/metrics` count it, the `--on-event` hook
//! gets it as JSON, and `--record motion` keeps one clip that starts
//! before the motion (the pre-roll) and decodes whole.

use crate::common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Server;
use common::channels::ChannelViewer;
use common::clips::{assert_continuous, max_gap_ms, probe, stamps};

const WAIT: Duration = Duration::from_secs(20);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn motion_is_told_recorded_with_its_pre_roll_and_handed_to_the_hook() {
    let dir: PathBuf = std::env::temp_dir().join(format!("rtcam-motion-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let hook_out = dir.join("hook.jsonl");
    let clips = dir.join("clips");
    std::fs::create_dir_all(&clips).unwrap();
    let hook = format!("cat >> {}", hook_out.display());
    let clips_arg = clips.display().to_string();
    let server = Server::start(&[
        "--source",
        "test:still",
        "--size",
        "640x360",
        "--record",
        "motion",
        "--record-dir",
        &clips_arg,
        "--record-pre",
        "3",
        "--record-post",
        "1",
        "--on-event",
        &hook,
    ]);
    let mut viewer = ChannelViewer::join(server.http, &server.token).await;
    let started = viewer
        .wait_for(WAIT, |m| m["type"] == "motion" && m["state"] == "started")
        .unwrap_or_else(|| panic!("no motion event\n{}", server.log()));
    let told = now_ms();
    let at = started["at"].as_u64().unwrap();
    println!(
        "motion event reached the viewer {} ms after the picture it was seen in",
        told.saturating_sub(at)
    );
    // Its snapshot.
    let snapshot = started["snapshot"].as_str().unwrap();
    let jpeg = common::https_raw(
        server.http,
        "GET",
        snapshot,
        &[("Authorization", &format!("Bearer {}", server.token))],
        b"",
    )
    .await;
    assert_eq!(jpeg.status, 200);
    assert_eq!(&jpeg.bytes[..2], &[0xff, 0xd8], "a JPEG");

    // The object leaves at 9 s; quiet ends the event about 3 s later.
    let ended = viewer
        .wait_for(WAIT, |m| m["type"] == "motion" && m["state"] == "ended")
        .unwrap_or_else(|| panic!("the event never ended\n{}", server.log()));
    assert_eq!(ended["id"], started["id"]);
    let lasted = ended["lasted_ms"].as_u64().unwrap();
    assert!((2_000..8_000).contains(&lasted), "lasted {lasted} ms");

    // The clip closes after the post-roll.
    let mut listing = serde_json::Value::Null;
    for _ in 0..60 {
        let r = server.https("GET", "/api/recordings", None, b"").await.body;
        listing = serde_json::from_str(&r).unwrap();
        if listing["clips"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["recording"] == false))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let clip = &listing["clips"][0];
    assert_eq!(
        listing["clips"].as_array().unwrap().len(),
        1,
        "one clip: {listing}"
    );
    assert_eq!(clip["trigger"], "motion");
    assert_eq!(clip["recording"], false, "{listing}");
    let pre = at.saturating_sub(clip["start_ms"].as_u64().unwrap());
    assert!(
        (2_900..7_000).contains(&pre),
        "the clip starts {pre} ms before the motion was seen"
    );
    let duration = clip["duration_ms"].as_u64().unwrap();
    assert!(
        duration >= pre + lasted,
        "{duration} ms: the pre-roll, the motion and the post-roll"
    );

    let events = server.https("GET", "/api/events", None, b"").await.body;
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    assert_eq!(events[0]["id"], started["id"]);
    assert_eq!(events[0]["clip"], clip["id"], "{events}");
    assert!(events[0]["ended_ms"].as_u64().is_some());
    let metrics = server.https("GET", "/metrics", None, b"").await.body;
    assert!(
        metrics.contains("rtcam_motion_events_total{kind=\"started\"} 1"),
        "{metrics}"
    );

    // The hook had both, as JSON lines.
    let hooked = std::fs::read_to_string(&hook_out).unwrap_or_default();
    let lines: Vec<serde_json::Value> = hooked
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{hooked}");
    assert_eq!(lines[0]["state"], "started");
    assert_eq!(lines[1]["state"], "ended");

    // The clip decodes whole, its stripe continuous from the pre-roll on,
    // and its first picture is from before the motion.
    let id = clip["id"].as_str().unwrap();
    let file = clips.join(format!("{id}.mp4"));
    assert_eq!(probe(&file), ("h264".into(), 640, 360));
    let s = stamps(&file, 640, 360);
    assert_continuous(&s, max_gap_ms(), "the motion clip");
    assert!(
        at.saturating_sub(s[0]) >= 2_900,
        "its first picture is {} ms before the motion",
        at.saturating_sub(s[0])
    );
    assert!(
        *s.last().unwrap() >= ended["at"].as_u64().unwrap(),
        "it goes on past the motion's end"
    );
    drop(viewer);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
