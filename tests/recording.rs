//! Recording through the real binary, checked by Debian's ffprobe and
//! ffmpeg: every segment is a valid MP4 that decodes whole, the timestamp
//! stripe runs on without a gap from one segment to the next, a clip plays
//! over HTTP with byte ranges, and `kill -9` in the middle of a segment
//! leaves it playable up to its last whole fragment.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Server;
use common::clips::{assert_continuous, decode, max_gap_ms, probe, stamps, tool};

fn record_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rtcam-rec-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The clips in `dir` (whole ones, or `.part` too), oldest first.
fn clips(dir: &Path, part: bool) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".mp4") || (part && n.ends_with(".mp4.part"))
        })
        .collect();
    v.sort();
    v
}

/// GET with the bearer token and an optional Range.
async fn get_with(server: &Server, path: &str, range: Option<&str>) -> common::HttpResponse {
    let auth = format!("Bearer {}", server.token);
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(r) = range {
        headers.push(("Range", r));
    }
    common::https_raw(server.http, "GET", path, &headers, b"").await
}

#[tokio::test(flavor = "multi_thread")]
async fn continuous_segments_decode_whole_and_join_without_a_gap() {
    let dir = record_dir("continuous");
    let d = dir.display().to_string();
    let mut server = Server::start(&[
        "--record",
        "continuous",
        "--record-dir",
        &d,
        "--record-segment",
        "3",
        "--size",
        "640x360",
    ]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let listing = server.https("GET", "/api/recordings", None, b"").await.body;
    let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(listing["mode"], "continuous", "{listing}");
    assert_eq!(listing["state"], "recording", "{listing}\n{}", server.log());
    let clips_json = listing["clips"].as_array().unwrap();
    assert!(clips_json.len() >= 2, "{listing}");
    let done = clips_json
        .iter()
        .find(|c| c["recording"] == false)
        .expect("a whole clip");
    assert!(done["duration_ms"].as_u64().unwrap() >= 2_500, "{done}");

    // A byte range of a whole clip, as a <video> asks for it.
    let id = done["id"].as_str().unwrap();
    let path = format!("/api/recordings/{id}.mp4");
    let file = std::fs::read(dir.join(format!("{id}.mp4"))).unwrap();
    let r = get_with(&server, &path, Some("bytes=100-199")).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.bytes, file[100..200]);
    let whole = get_with(&server, &path, None).await;
    assert_eq!((whole.status, whole.bytes.len()), (200, file.len()));

    let (status, _) = server.terminate();
    assert!(status.success(), "{}", server.log());
    let files = clips(&dir, true);
    assert!(files.len() >= 3, "{files:?}");
    assert!(
        files.iter().all(|f| f.extension().unwrap() == "mp4"),
        "every segment closed on SIGTERM: {files:?}"
    );
    let mut last: Option<u64> = None;
    for f in &files {
        assert_eq!(probe(f), ("h264".into(), 640, 360), "{}", f.display());
        let s = stamps(f, 640, 360);
        // Every segment but the last (cut by SIGTERM) is at least 3 s.
        // (a third of that on an emulated CPU, whose frame rate is lower).
        let full = if common::emulated() { 20 } else { 60 };
        let least = if Some(f) == files.last() { 1 } else { full };
        assert!(s.len() >= least, "{}: {} frames", f.display(), s.len());
        assert_continuous(&s, max_gap_ms(), &f.display().to_string());
        if let Some(prev) = last {
            let gap = s[0].saturating_sub(prev);
            assert!(
                s[0] > prev && gap <= max_gap_ms(),
                "{}: starts {gap} ms after the last segment ended",
                f.display()
            );
        }
        last = s.last().copied();
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_leaves_the_segment_playable_up_to_its_last_whole_fragment() {
    let dir = record_dir("kill");
    let d = dir.display().to_string();
    let args = [
        "--record",
        "continuous",
        "--record-dir",
        &d,
        "--record-segment",
        "60",
        "--size",
        "640x360",
    ];
    let server = Server::start(&args);
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(server); // SIGKILL, in the middle of a segment
    let part = clips(&dir, true);
    assert_eq!(part.len(), 1, "{part:?}");
    assert!(part[0].to_string_lossy().ends_with(".part"));
    // Cut at a random point inside the last fragment, as a power cut
    // could leave it: still whole up to the fragment before.
    let len = std::fs::metadata(&part[0]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&part[0])
        .unwrap()
        .set_len(len - 700)
        .unwrap();

    // The next start cuts it back to its last whole fragment and keeps it.
    let server = Server::start(&["--record", "off", "--record-dir", &d]);
    let mut whole = Vec::new();
    for _ in 0..50 {
        let listing = server.https("GET", "/api/recordings", None, b"").await.body;
        let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
        whole = clips(&dir, true);
        if listing["clips"].as_array().is_some_and(|c| c.len() == 1)
            && whole.len() == 1
            && !whole[0].to_string_lossy().ends_with(".part")
        {
            assert_eq!(listing["clips"][0]["interrupted"], true, "{listing}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
    assert_eq!(whole.len(), 1, "{whole:?}");
    let s = stamps(&whole[0], 640, 360);
    let least = if common::emulated() { 20 } else { 60 };
    assert!(s.len() >= least, "{} frames kept of about 5 s", s.len());
    assert_continuous(&s, max_gap_ms(), "the recovered clip");
    let _ = std::fs::remove_dir_all(dir);
}

/// The start of a stream in the file, seconds (ffprobe's start_time).
fn start_time(file: &Path, stream: &str) -> f64 {
    let out = tool("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-show_entries"])
        .args(["stream=start_time", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(f64::NAN)
}

/// The file's sound decoded whole by ffmpeg, 48 kHz mono.
fn sound(file: &Path) -> Vec<i16> {
    let output = ["-map", "0:a", "-f", "s16le", "-ac", "1", "-ar", "48000"];
    decode(file, &output)
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_microphone_is_recorded_in_step_with_the_picture() {
    let dir = record_dir("sound");
    let d = dir.display().to_string();
    let mut server = Server::start(&[
        "--record",
        "continuous",
        "--record-dir",
        &d,
        "--record-segment",
        "4",
        "--size",
        "640x360",
        "--audio-in",
        "test",
        "--audio-out",
        "off",
    ]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let record = server.status().await["record"].clone();
    let (status, _) = server.terminate();
    assert!(status.success(), "{}", server.log());
    let files = clips(&dir, false);
    assert!(files.len() >= 2, "{files:?}");
    for f in &files {
        let name = f.display().to_string();
        let video = stamps(f, 640, 360);
        let pcm = sound(f);
        let heard = rtcam::audio::stamp::detect_i16(&pcm, 48_000);
        // The first segment's sound track starts with the segment, which
        // may open before the microphone's first packet: that lead is
        // silence, not stamps lost.
        let lead = pcm.iter().position(|s| s.unsigned_abs() > 64).unwrap_or(0);
        let seconds = (pcm.len() - lead) as f64 / 48_000.0;
        // Most stamps read back (a CI run on a loaded machine found 3 of 8 in
        // one segment); every one found must be in step (below).
        assert!(
            heard.len() as f64 >= seconds,
            "{name}: {} stamps in {seconds:.1} s; recording {record}",
            heard.len()
        );
        assert!(
            heard
                .windows(2)
                .all(|w| (1..20).contains(&w[1].slot.wrapping_sub(w[0].slot))),
            "{name}: slots {:?}",
            heard.iter().map(|h| h.slot).collect::<Vec<_>>()
        );
        // In step: where a stamp is in the file against where the picture
        // says that wall-clock time is (the first frame is at 0).
        let (v0, a0) = (start_time(f, "v:0"), start_time(f, "a:0"));
        for h in &heard {
            let at = a0 + h.pos / 48_000.0 - v0;
            let wall_in_file = video[0] as f64 + at * 1000.0;
            let slot_wall = f64::from(h.slot) * 500.0;
            let period = 65_536.0 * 500.0;
            let off = (wall_in_file - slot_wall).rem_euclid(period);
            let off = if off > period / 2.0 {
                off - period
            } else {
                off
            };
            assert!(
                off.abs() < 100.0,
                "{name}: a stamp {off:.0} ms away from the picture"
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_leaves_every_earlier_segment_whole() {
    let dir = record_dir("kill-segments");
    let d = dir.display().to_string();
    let args = [
        "--record",
        "continuous",
        "--record-dir",
        &d,
        "--record-segment",
        "2",
        "--size",
        "640x360",
    ];
    let server = Server::start(&args);
    tokio::time::sleep(Duration::from_secs(7)).await;
    drop(server); // SIGKILL
    let closed = clips(&dir, false);
    assert!(closed.len() >= 2, "{closed:?}");
    let server = Server::start(&["--record", "off", "--record-dir", &d]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(server);
    // The segments closed before the kill, and what the next start kept
    // of the one being written: each decodes whole.
    let all = clips(&dir, true);
    assert!(
        all.iter().all(|f| f.extension().unwrap() == "mp4"),
        "{all:?}"
    );
    for f in &all {
        let s = stamps(f, 640, 360);
        assert!(!s.is_empty(), "{}", f.display());
        assert_continuous(&s, max_gap_ms(), &f.display().to_string());
    }
    let _ = std::fs::remove_dir_all(dir);
}
