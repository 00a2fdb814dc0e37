//! Recording's families: motion events, what was written and deleted, the
//! disk's room and its wear.

use super::Text;
use crate::record::status::StatusView;

pub(super) fn record(out: &mut Text, r: &StatusView, (started, ended): (u64, u64)) {
    out.family(
        "rtcam_motion_events_total",
        "counter",
        "Motion events, by what happened.",
    );
    out.sample(
        "rtcam_motion_events_total",
        &[("kind", "started")],
        started as f64,
    );
    out.sample(
        "rtcam_motion_events_total",
        &[("kind", "ended")],
        ended as f64,
    );
    let samples: [(&str, &str, &str, f64); 6] = [
        (
            "rtcam_record_written_bytes_total",
            "counter",
            "Bytes recording wrote since start.",
            r.written_bytes as f64,
        ),
        (
            "rtcam_record_bytes_per_day",
            "gauge",
            "Bytes recording writes a day at the rate since start.",
            r.bytes_per_day as f64,
        ),
        (
            "rtcam_record_used_bytes",
            "gauge",
            "Bytes the clips take.",
            r.used_bytes as f64,
        ),
        (
            "rtcam_record_free_bytes",
            "gauge",
            "Free bytes on the recordings' file system.",
            r.free_bytes as f64,
        ),
        (
            "rtcam_record_deleted_total",
            "counter",
            "Clips retention deleted.",
            r.deleted as f64,
        ),
        (
            "rtcam_record_dropped_total",
            "counter",
            "Fragments or frames dropped because the disk or the recorder was behind.",
            r.dropped as f64,
        ),
    ];
    for (name, kind, help, v) in samples {
        out.family(name, kind, help);
        out.sample(name, &[], v);
    }
    out.family(
        "rtcam_record_recording",
        "gauge",
        "1 while a clip is being written.",
    );
    out.sample(
        "rtcam_record_recording",
        &[],
        f64::from(u8::from(r.state == "recording")),
    );
    out.family(
        "rtcam_record_disk_ok",
        "gauge",
        "1 while the recordings' disk takes writes.",
    );
    out.sample(
        "rtcam_record_disk_ok",
        &[],
        f64::from(u8::from(r.state != "stopped")),
    );
    if let Some(w) = r.wear_percent_per_year {
        out.family(
            "rtcam_record_wear_percent_per_year",
            "gauge",
            "Of the card's rated endurance (--record-endurance-tbw), a year at this rate.",
        );
        out.sample("rtcam_record_wear_percent_per_year", &[], w);
    }
}
