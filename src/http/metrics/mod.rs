//! `GET /metrics`: the appliance in the Prometheus text exposition format
//! (0.0.4), for a scraper with a bearer token (or a logged-in browser).
//!
//! Written by hand rather than with a metrics crate: a few dozen lines of
//! text from values the appliance already keeps (the rtc task's per-viewer
//! link stats, the encoders' board, the capture status, the limit counters),
//! with no registry to keep in step with them.

mod audio;
mod record;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::audio::AudioStats;
use crate::capture::SourceInfo;
use crate::capture::supervise::CameraState;
use crate::control::talk::DeviceState;
use crate::encode::pool::EncoderStatus;
use crate::rtc::RtcStats;
use crate::rtc::whip::{Phase, TargetView};

/// Limits hit, by kind: what an owner watches for floods and attacks.
#[derive(Debug, Default)]
pub struct LimitHits {
    pub connections_refused: AtomicU64,
    pub connections_displaced: AtomicU64,
    pub logins_throttled: AtomicU64,
    pub logins_busy: AtomicU64,
    pub signaling_floods: AtomicU64,
}

impl LimitHits {
    pub fn hit(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let rtc = match state.rtc.stats().await {
        Ok(s) => s,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let source = state.source.borrow().clone();
    let text = render(&Inputs {
        rtc: &rtc,
        source: &source,
        encoders: &state.encoders.snapshot(),
        captured: state.captured.load(Ordering::Relaxed),
        limits: &state.limits,
        whip: &state.whip.snapshot(),
        record: Some((&state.record.status.view(), state.record.events.counts())),
        audio: Some((
            &state.audio.stats,
            [
                ("microphone", state.audio.microphone.borrow().state),
                ("speaker", state.audio.speaker.borrow().state),
            ],
        )),
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// What one scrape reports.
pub struct Inputs<'a> {
    pub rtc: &'a RtcStats,
    pub source: &'a SourceInfo,
    pub encoders: &'a [EncoderStatus],
    pub captured: u64,
    pub limits: &'a LimitHits,
    /// The sound's counters, and its devices' states.
    pub audio: Option<(&'a AudioStats, [(&'static str, DeviceState); 2])>,
    /// The WHIP targets.
    pub whip: &'a [TargetView],
    /// Recording's state, and motion events started and ended.
    pub record: Option<(&'a crate::record::status::StatusView, (u64, u64))>,
}

/// The exposition text.
pub fn render(i: &Inputs) -> String {
    let mut out = Text::default();
    out.family("rtcam_viewers", "gauge", "Viewers connected or connecting.");
    out.sample("rtcam_viewers", &[], i.rtc.viewers as f64);
    out.family(
        "rtcam_frames_captured_total",
        "counter",
        "Frames the capture delivered, the camera-lost slate included.",
    );
    out.sample("rtcam_frames_captured_total", &[], i.captured as f64);
    out.family(
        "rtcam_frames_encoded_total",
        "counter",
        "Encoded (or passed-through) frames that reached the media task.",
    );
    out.sample("rtcam_frames_encoded_total", &[], i.rtc.frames_in as f64);
    out.family(
        "rtcam_datagram_max_bytes",
        "gauge",
        "The largest UDP datagram sent since start (never over --mtu).",
    );
    out.sample(
        "rtcam_datagram_max_bytes",
        &[],
        i.rtc.largest_datagram as f64,
    );
    camera(&mut out, i.source);
    encoders(&mut out, i.encoders);
    viewers(&mut out, i.rtc);
    whip(&mut out, i.whip, i.rtc);
    limits(&mut out, i.limits, i.rtc.uploads_cancelled);
    if let Some((stats, devices)) = i.audio {
        audio::audio(&mut out, stats, &devices);
    }
    if let Some((view, events)) = i.record {
        record::record(&mut out, view, events);
    }
    out.0
}

fn camera(out: &mut Text, s: &SourceInfo) {
    out.family(
        "rtcam_camera_up",
        "gauge",
        "1 while the camera delivers, 0 while it is lost.",
    );
    let up = if s.state == CameraState::Live {
        1.0
    } else {
        0.0
    };
    out.sample(
        "rtcam_camera_up",
        &[("kind", s.kind), ("format", s.format)],
        up,
    );
    out.family(
        "rtcam_camera_corrupt_frames_total",
        "counter",
        "Camera frames dropped because they were corrupt or truncated.",
    );
    out.sample(
        "rtcam_camera_corrupt_frames_total",
        &[],
        s.corrupt_frames as f64,
    );
}

fn encoders(out: &mut Text, encoders: &[EncoderStatus]) {
    out.family(
        "rtcam_encoder_bitrate_kbps",
        "gauge",
        "Each running encoder's target bitrate.",
    );
    out.family(
        "rtcam_encoder_viewers",
        "gauge",
        "Viewers of each running encoder.",
    );
    out.family(
        "rtcam_encoder_frames_dropped_total",
        "counter",
        "Frames an encoder was too slow to take.",
    );
    out.family(
        "rtcam_encoder_frames_total",
        "counter",
        "Frames each running encoder was given.",
    );
    out.family(
        "rtcam_encoder_seconds_total",
        "counter",
        "Time each running encoder spent encoding (divide by frames for the mean).",
    );
    for e in encoders {
        let codec = e.codec.to_string();
        let labels = [
            ("codec", codec.as_str()),
            ("implementation", e.implementation.as_str()),
        ];
        out.sample("rtcam_encoder_bitrate_kbps", &labels, e.bitrate_kbps as f64);
        out.sample("rtcam_encoder_viewers", &labels, e.viewers as f64);
        out.sample(
            "rtcam_encoder_frames_dropped_total",
            &labels,
            e.frames_dropped as f64,
        );
        let frames = e.frames_encoded as f64;
        out.sample("rtcam_encoder_frames_total", &labels, frames);
        out.sample("rtcam_encoder_seconds_total", &labels, e.encode_seconds);
    }
}

/// Each WHIP target: its state (one series per state, 1 for the current
/// one), since when, and its link.
fn whip(out: &mut Text, targets: &[TargetView], rtc: &RtcStats) {
    if targets.is_empty() {
        return;
    }
    out.family(
        "rtcam_whip_state",
        "gauge",
        "Each WHIP target's state: 1 for the state it is in.",
    );
    for t in targets {
        for state in [
            Phase::Waiting,
            Phase::Offering,
            Phase::Connecting,
            Phase::Live,
            Phase::Stopping,
            Phase::Stopped,
        ] {
            let name = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let labels = [("target", t.url.as_str()), ("state", name.as_str())];
            out.sample("rtcam_whip_state", &labels, f64::from(t.state == state));
        }
    }
    out.family(
        "rtcam_whip_state_since_seconds",
        "gauge",
        "When each WHIP target entered its state (Unix time).",
    );
    for t in targets {
        let since = t.since_ms as f64 / 1000.0;
        out.sample(
            "rtcam_whip_state_since_seconds",
            &[("target", &t.url)],
            since,
        );
    }
    let link = |t: &TargetView| rtc.publish(t.peer);
    out.family(
        "rtcam_whip_sent_bytes_total",
        "counter",
        "Bytes sent to each WHIP target in its current session.",
    );
    for t in targets {
        let sent = link(t).map_or(0, |s| s.bytes_sent);
        out.sample(
            "rtcam_whip_sent_bytes_total",
            &[("target", &t.url)],
            sent as f64,
        );
    }
    out.family(
        "rtcam_whip_bandwidth_estimate_bps",
        "gauge",
        "The bandwidth estimate towards each live WHIP target.",
    );
    for t in targets {
        if let Some(kbps) = link(t).and_then(|s| s.bwe_kbps) {
            let labels = [("target", t.url.as_str())];
            out.sample(
                "rtcam_whip_bandwidth_estimate_bps",
                &labels,
                kbps as f64 * 1000.0,
            );
        }
    }
}

fn viewers(out: &mut Text, rtc: &RtcStats) {
    type Pick = fn(&crate::rtc::viewer::ViewerStats) -> Option<f64>;
    let families: [(&str, &str, &str, Pick); 10] = [
        (
            "rtcam_viewer_rtt_seconds",
            "gauge",
            "Round-trip time to the viewer.",
            |s| s.rtt_ms.map(|ms| ms / 1000.0),
        ),
        (
            "rtcam_viewer_loss_ratio",
            "gauge",
            "Fraction of packets the viewer reported lost (after repairs).",
            |s| s.loss.map(f64::from),
        ),
        (
            "rtcam_viewer_nacks_total",
            "counter",
            "NACKs the viewer sent.",
            |s| Some(s.nacks as f64),
        ),
        (
            "rtcam_viewer_plis_total",
            "counter",
            "PLIs the viewer sent.",
            |s| Some(s.plis as f64),
        ),
        (
            "rtcam_viewer_firs_total",
            "counter",
            "FIRs the viewer sent.",
            |s| Some(s.firs as f64),
        ),
        (
            "rtcam_viewer_sent_bytes_total",
            "counter",
            "Bytes sent to the viewer.",
            |s| Some(s.bytes_sent as f64),
        ),
        (
            "rtcam_viewer_bandwidth_estimate_bytes_per_second",
            "gauge",
            "The bandwidth estimate towards the viewer, when estimation runs.",
            |s| s.bwe_kbps.map(|k| k as f64 * 1000.0 / 8.0),
        ),
        (
            "rtcam_viewer_wire_loss_ratio",
            "gauge",
            "Fraction of packets lost on the way to the viewer in the last second, before repairs.",
            |s| s.wire_loss.map(f64::from),
        ),
        (
            "rtcam_viewer_copies",
            "gauge",
            "How many times each datagram to the viewer goes out: 2 or 3 on a lossy link, else 1.",
            |s| Some(f64::from(s.copies.max(1))),
        ),
        (
            "rtcam_viewer_thinned",
            "gauge",
            "1 while the viewer's link is below the bitrate floor and it gets only referenced frames.",
            |s| Some(if s.thinned { 1.0 } else { 0.0 }),
        ),
    ];
    for (name, kind, help, pick) in families {
        out.family(name, kind, help);
        for (id, codec, stats) in &rtc.links {
            if let Some(v) = pick(stats) {
                let id = id.to_string();
                let codec = codec.map_or("none".to_string(), |c| c.to_string());
                out.sample(
                    name,
                    &[("viewer", id.as_str()), ("codec", codec.as_str())],
                    v,
                );
            }
        }
    }
}

/// The control plane's counters, and the media task's picture uploads
/// cancelled for coming too slowly.
fn limits(out: &mut Text, l: &LimitHits, uploads_cancelled: u64) {
    out.family("rtcam_limit_hits_total", "counter", "Limits hit, by kind.");
    for (kind, counter) in [
        ("connection_refused", &l.connections_refused),
        ("connection_displaced", &l.connections_displaced),
        ("login_throttled", &l.logins_throttled),
        ("login_busy", &l.logins_busy),
        ("signaling_flood", &l.signaling_floods),
    ] {
        let n = counter.load(Ordering::Relaxed) as f64;
        out.sample("rtcam_limit_hits_total", &[("kind", kind)], n);
    }
    let n = uploads_cancelled as f64;
    out.sample("rtcam_limit_hits_total", &[("kind", "upload_too_slow")], n);
}

/// The text being written.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value as the format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VideoCodec;
    use crate::rtc::ViewerId;
    use crate::rtc::viewer::ViewerStats;

    #[test]
    fn renders_every_family_with_its_samples() {
        let rtc = RtcStats {
            viewers: 1,
            frames_in: 300,
            largest_datagram: 1100,
            uploads_cancelled: 2,
            links: vec![(
                ViewerId(7),
                Some(VideoCodec::H264),
                ViewerStats {
                    rtt_ms: Some(4.0),
                    loss: Some(0.05),
                    nacks: 3,
                    ..Default::default()
                },
            )],
            publishes: vec![],
        };
        let source = SourceInfo {
            state: CameraState::Live,
            ..SourceInfo::none(640, 360, 30)
        };
        let enc = EncoderStatus {
            codec: VideoCodec::H264,
            implementation: r#"passthrough (the camera's "own")"#.into(),
            width: 640,
            height: 360,
            fps: 30,
            bitrate_kbps: 1935,
            viewers: 1,
            frames_dropped: 2,
            frames_encoded: 90,
            encode_seconds: 0.25,
        };
        let limits = LimitHits::default();
        LimitHits::hit(&limits.logins_throttled);
        let record = crate::record::status::RecordStatus::new(
            crate::record::RecordMode::Motion,
            Some(150.0),
        )
        .view();
        let text = render(&Inputs {
            rtc: &rtc,
            source: &source,
            encoders: &[enc],
            captured: 301,
            limits: &limits,
            audio: None,
            whip: &[TargetView {
                url: "http://10.0.0.2:7080/whip/endpoint/cam".into(),
                codec: "H.264".into(),
                state: Phase::Live,
                since_ms: 1_700_000_000_000,
                last_error: None,
                peer: Some(ViewerId(9)),
            }],
            record: Some((&record, (3, 2))),
        });
        for line in [
            r#"rtcam_motion_events_total{kind="started"} 3"#,
            r#"rtcam_motion_events_total{kind="ended"} 2"#,
            "rtcam_record_disk_ok 1",
            "rtcam_record_recording 0",
            "rtcam_record_wear_percent_per_year 0",
            "rtcam_viewers 1",
            "rtcam_frames_captured_total 301",
            r#"rtcam_camera_up{kind="none",format="-"} 1"#,
            r#"rtcam_viewer_rtt_seconds{viewer="0000000000000007",codec="H.264"} 0.004"#,
            r#"rtcam_whip_state{target="http://10.0.0.2:7080/whip/endpoint/cam",state="live"} 1"#,
            r#"rtcam_whip_state{target="http://10.0.0.2:7080/whip/endpoint/cam",state="waiting"} 0"#,
            r#"rtcam_whip_state_since_seconds{target="http://10.0.0.2:7080/whip/endpoint/cam"} 1700000000"#,
            r#"rtcam_whip_sent_bytes_total{target="http://10.0.0.2:7080/whip/endpoint/cam"} 0"#,
            r#"rtcam_viewer_nacks_total{viewer="0000000000000007",codec="H.264"} 3"#,
            r#"rtcam_limit_hits_total{kind="login_throttled"} 1"#,
            r#"rtcam_limit_hits_total{kind="upload_too_slow"} 2"#,
            r#"rtcam_viewer_copies{viewer="0000000000000007",codec="H.264"} 1"#,
            r#"rtcam_encoder_seconds_total{codec="H.264",implementation="passthrough (the camera's \"own\")"} 0.25"#,
            r#"implementation="passthrough (the camera's \"own\")""#,
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
        // Every sample line belongs to a family declared before it.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
    }

    #[test]
    fn the_echo_cancellers_work_is_reported_in_base_units() {
        let rtc = RtcStats {
            viewers: 0,
            frames_in: 0,
            largest_datagram: 1100,
            uploads_cancelled: 0,
            links: vec![],
            publishes: vec![],
        };
        let stats = AudioStats::default();
        let limits = LimitHits::default();
        let source = SourceInfo::none(640, 360, 30);
        let inputs = |stats| Inputs {
            rtc: &rtc,
            source: &source,
            encoders: &[],
            captured: 0,
            limits: &limits,
            whip: &[],
            record: None,
            audio: Some((
                stats,
                [
                    ("microphone", DeviceState::Open),
                    ("speaker", DeviceState::Open),
                ],
            )),
        };
        let text = render(&inputs(&stats));
        assert!(!text.contains("enhancement"), "no ERLE before AEC3 has one");
        AudioStats::add(&stats.echo_frames, 250);
        AudioStats::add(&stats.echo_reference_dropped, 2);
        stats.echo_erle_db.set(24.5);
        AudioStats::add(&stats.echo_delay_ms, 34);
        AudioStats::add(&stats.echo_timeline_silence, 3);
        let text = render(&inputs(&stats));
        for line in [
            r#"rtcam_audio_echo_frames_total{kind="cancelled"} 250"#,
            r#"rtcam_audio_echo_frames_total{kind="reference_dropped"} 2"#,
            "rtcam_audio_echo_return_loss_enhancement_decibels 24.5",
            r#"rtcam_audio_echo_delay_seconds{kind="estimated"} 0.034"#,
            r#"rtcam_audio_echo_timeline_total{kind="silence_chunk"} 3"#,
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
    }
}
