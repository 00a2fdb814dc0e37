//! `GET /api/snapshot.jpg` (a logged-in session or a bearer token): the
//! camera's next picture as a JPEG at the stream's size.

use std::time::Duration;

use axum::extract::State;
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
