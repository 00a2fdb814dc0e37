//! Pictures over HTTPS (a logged-in session or a bearer token):
//! `GET /api/snapshot.jpg`, the camera's next picture as a JPEG at the
//! stream's size; `GET /api/chat/images/N`, a picture a viewer shared in the
//! chat (`control::images`).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::encode::jpeg::{QUALITY, encode_jpeg};

/// How long to wait for the camera's next picture.
const PATIENCE: Duration = Duration::from_secs(2);

pub async fn snapshot(State(state): State<AppState>) -> Response {
    if state.source.borrow().passthrough.is_some() {
        return unavailable(
            "this camera delivers H.264 only (passthrough): rtcam has no picture to take",
        );
    }
    // One JPEG at a time; others wait up to the same patience.
    let Ok(Ok(_turn)) = tokio::time::timeout(PATIENCE, state.snapshots.busy.acquire()).await else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "a snapshot is being taken; try again\n",
        )
            .into_response();
    };
    let Some(frame) = state.snapshots.next(PATIENCE).await else {
        return unavailable("no picture from the camera within 2 s");
    };
    match tokio::task::spawn_blocking(move || encode_jpeg(&frame, QUALITY)).await {
        Ok(Ok(jpeg)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            jpeg,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!("snapshot: {e}");
            unavailable(&e.to_string())
        }
        Err(_) => unavailable("the snapshot encoder failed"),
    }
}

fn unavailable(why: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}

pub async fn chat_image(State(state): State<AppState>, Path(n): Path<String>) -> Response {
    let Ok(n) = n.parse::<u64>() else {
        return (StatusCode::NOT_FOUND, "no such picture\n").into_response();
    };
    match state.rtc.chat_image(n).await {
        Ok(Some(image)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(image.mime)),
                (
                    header::CACHE_CONTROL,
                    // Numbers start again at 1 when rtcam restarts: not cached.
                    HeaderValue::from_static("no-store"),
                ),
            ],
            image.bytes,
        )
            .into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            "no such picture (the device keeps the newest few)\n",
        )
            .into_response(),
        Err(e) => unavailable(&e.to_string()),
    }
}
