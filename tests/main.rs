//! Every integration test, one binary: one link per target instead of one per
//! file, and the shared harness (`common/`) compiled once. Cargo.toml turns
//! off the discovery of `tests/*.rs` (`autotests = false`); a new test file is
//! a new line here. Run one file's tests with its module as the filter:
//! `cargo test --test integration sessions_chat::`.

mod common;

mod audio_whep;
mod auth_routes;
mod bad_input;
mod bench_record;
mod bench_send_path;
mod bench_soak;
mod bench_viewers;
mod bench_whip;
mod camera_missing;
mod chat_images;
mod controls_kept;
mod limits;
mod lockout;
mod lossy_link_copies;
mod motion;
mod mtu;
mod qemu_vivid;
mod rate_floor;
mod rate_follows_the_slowest_link;
mod rate_start;
mod record_disk;
mod record_stall;
mod recording;
mod rpicam;
mod serial_bridge;
mod serial_flood;
mod sessions_audio;
mod sessions_chat;
mod sessions_codecs;
mod sessions_controls;
mod sessions_fanout;
mod sessions_keyframe_requests;
mod sessions_limits;
mod sessions_serial;
mod sessions_talker_pli;
mod sessions_timeouts;
mod sessions_uploads;
mod shutdown;
mod snapshot;
mod ten_viewers;
mod whep;
mod whip_client;
mod whip_http;
mod whip_publish;
mod ws_signaling;
