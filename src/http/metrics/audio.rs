//! The sound's families: the devices, the microphone's and speaker's
//! frames, the jitter buffer, the FEC plan and the echo canceller.

use std::sync::atomic::AtomicU64;

use super::Text;
use crate::audio::AudioStats;
use crate::control::talk::DeviceState;

/// A counter family: its name, help, and each kind's counter.
type CounterFamily<'a> = (&'a str, &'a str, &'a [(&'a str, &'a AtomicU64)]);

pub(super) fn audio(out: &mut Text, s: &AudioStats, devices: &[(&'static str, DeviceState)]) {
    out.family(
        "rtcam_audio_device_open",
        "gauge",
        "1 while the audio device captures or plays, 0 while absent or off.",
    );
    for (device, state) in devices {
        let open = (*state == DeviceState::Open) as u8 as f64;
        out.sample("rtcam_audio_device_open", &[("device", device)], open);
    }
    let get = AudioStats::get;
    let counters: [CounterFamily; 6] = [
        (
            "rtcam_audio_microphone_frames_total",
            "Microphone frames (20 ms), by what became of them.",
            &[
                ("captured", &s.mic_frames),
                ("encoded", &s.mic_encoded),
                ("dropped", &s.mic_dropped),
                ("muted", &s.mic_muted),
            ],
        ),
        (
            "rtcam_audio_talk_packets_total",
            "Voice packets of the talking viewer, to the speaker or dropped.",
            &[("played", &s.talk_packets), ("dropped", &s.talk_dropped)],
        ),
        (
            "rtcam_audio_speaker_frames_total",
            "Speaker frames (20 ms): played, concealed, recovered by FEC, late.",
            &[
                ("played", &s.played),
                ("concealed", &s.concealed),
                ("recovered", &s.recovered),
                ("late", &s.late),
            ],
        ),
        (
            "rtcam_audio_xruns_total",
            "Capture overruns and playback underruns.",
            &[("overrun", &s.mic_overruns), ("underrun", &s.underruns)],
        ),
        (
            "rtcam_audio_echo_frames_total",
            "Echo canceller frames (20 ms): microphone frames cancelled, speaker frames \
             taken as its reference, speaker frames dropped on the way to it.",
            &[
                ("cancelled", &s.echo_frames),
                ("reference", &s.echo_reference),
                ("reference_dropped", &s.echo_reference_dropped),
            ],
        ),
        (
            "rtcam_audio_echo_timeline_total",
            "The speaker's sound as it played, for the echo canceller: gaps (the speaker \
             ran dry) and overlaps (its buffer shrank), and 10 ms chunks of silence handed \
             over where nothing played or dropped because their time had passed.",
            &[
                ("gap", &s.echo_timeline_gaps),
                ("overlap", &s.echo_timeline_overlaps),
                ("silence_chunk", &s.echo_timeline_silence),
                ("dropped_chunk", &s.echo_timeline_dropped),
            ],
        ),
    ];
    for (name, help, samples) in counters {
        out.family(name, "counter", help);
        for (kind, counter) in samples {
            out.sample(name, &[("kind", kind)], get(counter) as f64);
        }
    }
    out.family(
        "rtcam_audio_jitter_buffer_seconds",
        "gauge",
        "The speaker's jitter buffer: its target and what it holds.",
    );
    for (kind, v) in [
        ("target", &s.jitter_target_ms),
        ("buffered", &s.jitter_buffered_ms),
    ] {
        out.sample(
            "rtcam_audio_jitter_buffer_seconds",
            &[("kind", kind)],
            get(v) as f64 / 1000.0,
        );
    }
    out.family(
        "rtcam_audio_fec_planned_loss_ratio",
        "gauge",
        "The loss the microphone's Opus encoder plans for (in-band FEC), from the listeners' smoothed reports.",
    );
    out.sample(
        "rtcam_audio_fec_planned_loss_ratio",
        &[],
        get(&s.fec_loss_percent) as f64 / 100.0,
    );
    echo_gauges(out, s);
}

/// The canceller's view of the echo: how much its linear filter removes
/// (once AEC3 says) and where it found the echo.
fn echo_gauges(out: &mut Text, s: &AudioStats) {
    let erle = s.echo_erle_db.get();
    if !erle.is_nan() {
        out.family(
            "rtcam_audio_echo_return_loss_enhancement_decibels",
            "gauge",
            "AEC3's echo return loss enhancement (its linear filter's), dB.",
        );
        out.sample(
            "rtcam_audio_echo_return_loss_enhancement_decibels",
            &[],
            erle,
        );
    }
    out.family(
        "rtcam_audio_echo_delay_seconds",
        "gauge",
        "The echo's delay: AEC3's estimate.",
    );
    out.sample(
        "rtcam_audio_echo_delay_seconds",
        &[("kind", "estimated")],
        AudioStats::get(&s.echo_delay_ms) as f64 / 1000.0,
    );
}
