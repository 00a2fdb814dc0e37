//! Recorded clips checked by Debian's ffprobe and ffmpeg (scripts/setup.sh
//! installs them): what the stream is, every frame decoded, the timestamp
//! stripe read back from each.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

pub fn tool(name: &str) -> Command {
    let probe = Command::new(name).arg("-version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "{name} is missing: scripts/setup.sh installs it (apt-get install ffmpeg)"
    );
    Command::new(name)
}

/// What ffprobe says of the video stream: codec, width, height.
pub fn probe(file: &Path) -> (String, u32, u32) {
    let out = tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=codec_name,width,height", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut f = text.split(',');
    let codec = f.next().unwrap_or_default().to_string();
    let w = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let h = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (codec, w, h)
}

/// `file` decoded whole by ffmpeg into raw output as `output` asks (an
/// error or a warning is a failure).
pub fn decode(file: &Path, output: &[&str]) -> Vec<u8> {
    let out = tool("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(file)
        .args(output)
        .arg("-")
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every frame decoded by ffmpeg, as the stamps of their stripes.
pub fn stamps(file: &Path, width: usize, height: usize) -> Vec<u64> {
    // Every frame as it is in the file: ffmpeg would repeat frames to fill
    // a gap in time (an emulated CPU's lower frame rate); and in the file's
    // own time base, or two frames closer than a 30th of a second (a loaded
    // machine's capture) would get the same time and fail the muxer.
    let output = [
        "-fps_mode",
        "passthrough",
        "-enc_time_base",
        "-1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "gray",
    ];
    decode(file, &output)
        .chunks_exact(width * height)
        .map(|luma| {
            rtcam::capture::stripe::decode_luma(luma, width, height, width)
                .map_or(0, |d| d.stamp_ms)
        })
        .collect()
}

/// The longest gap between two frames tolerated: 150 ms, or half a second
/// on an emulated CPU (the encoder there runs at a few frames a second).
pub fn max_gap_ms() -> u64 {
    if super::emulated() { 500 } else { 150 }
}

/// Stamps increase frame to frame, with no gap over `max_gap_ms`.
pub fn assert_continuous(stamps: &[u64], max_gap_ms: u64, what: &str) {
    assert!(
        stamps.iter().all(|s| *s > 0),
        "{what}: a frame without a readable stripe"
    );
    for w in stamps.windows(2) {
        assert!(
            w[1] > w[0] && w[1] - w[0] <= max_gap_ms,
            "{what}: {} then {}",
            w[0],
            w[1]
        );
    }
}
