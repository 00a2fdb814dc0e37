//! rtcam: a camera appliance that serves its picture over WebRTC.
//!
//! Data flows one way: [`capture`] -> [`encode`] -> [`rtc`] -> the network.
//! Control flows one way too: [`http`] -> [`signal`] -> [`rtc`].
//! The library exists so that integration tests and benches can reuse the
//! sans-IO parts (the stripe decoder above all); the binary is `src/main.rs`.

pub mod app;
pub mod audio;
pub mod auth;
pub mod board;
pub mod capture;
pub mod commands;
pub mod config;
pub mod control;
pub mod encode;
pub mod fault;
pub mod frame;
pub mod http;
pub mod log_limit;
pub mod mem;
pub mod net;
pub mod notify;
pub mod record;
pub mod rtc;
pub mod serial;
pub mod signal;
pub mod state_dir;
pub mod xorshift;
