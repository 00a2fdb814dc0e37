//! Recordings and motion over HTTPS (a logged-in session or a bearer
//! token): `GET /api/recordings` (the clips and the recorder's state),
//! `GET /api/recordings/ID.mp4` (with byte ranges, so it plays in a
//! `<video>` and seeks; `?download=1` to save it), `GET .../ID.jpg` (its
//! thumbnail), `DELETE /api/recordings/ID` (the owner: a session, or a
//! token that may control the camera); `GET /api/events` and
//! `/api/events/N.jpg`; `GET`/`PUT /api/motion/zones`.

use std::io::SeekFrom;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::AppState;
use crate::record::ClipId;
use crate::record::disk::{self, ClipInfo};
use crate::record::status::StatusView;
use crate::record::watch::ZoneJson;

/// Bytes read from a clip per chunk of the response.
const CHUNK: usize = 256 * 1024;

fn text(status: StatusCode, why: &str) -> Response {
    (status, format!("{why}\n")).into_response()
}

/// Whether the request is the owner's: a session, or a token that may
/// change the camera.
fn owner(state: &AppState, headers: &HeaderMap) -> bool {
    state
        .auth
        .bearer_name(headers)
        .is_none_or(|name| state.auth.token_may_control(&name))
}

#[derive(Serialize)]
struct Listing {
    #[serde(flatten)]
    status: StatusView,
    may_delete: bool,
    clips: Vec<ClipInfo>,
}

pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let dir = state.record.dir.clone();
    let clips = tokio::task::spawn_blocking(move || disk::list(&dir))
        .await
        .unwrap_or_default();
    axum::Json(Listing {
        status: state.record.status.view(),
        may_delete: owner(&state, &headers),
        clips,
    })
    .into_response()
}

#[derive(Deserialize)]
pub struct FileQuery {
    download: Option<String>,
}

pub async fn file(
    State(state): State<AppState>,
    Path(file): Path<String>,
    Query(q): Query<FileQuery>,
    headers: HeaderMap,
) -> Response {
    let Some((id, ext)) = file
        .rsplit_once('.')
        .and_then(|(id, ext)| Some((ClipId::parse(id)?, ext)))
    else {
        return text(StatusCode::NOT_FOUND, "no such recording");
    };
    let dir = &state.record.dir;
    match ext {
        "jpg" => match tokio::fs::read(dir.join(format!("{id}.jpg"))).await {
            Ok(jpeg) => jpeg_response(jpeg),
            Err(_) => text(StatusCode::NOT_FOUND, "no thumbnail for this recording"),
        },
        "mp4" => {
            let done = dir.join(format!("{id}.mp4"));
            let path = if done.exists() {
                done
            } else {
                dir.join(format!("{id}.mp4.part"))
            };
            let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
            serve_mp4(&path, &id, range, q.download.is_some()).await
        }
        _ => text(StatusCode::NOT_FOUND, "no such recording"),
    }
}

fn jpeg_response(jpeg: impl Into<Body>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=3600"),
            ),
        ],
        jpeg.into(),
    )
        .into_response()
}

/// A Range header that no part of the file satisfies (416).
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// One byte range of a `len`-byte file: `bytes=a-b`, `bytes=a-`,
/// `bytes=-n`. `None`: the whole file.
pub fn parse_range(value: &str, len: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None); // another unit: ignored, as RFC 9110 allows
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: the whole file is a valid answer
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| Unsatisfiable)?;
            if n == 0 {
                return Err(Unsatisfiable);
            }
            (
                len.saturating_sub(n),
                len.checked_sub(1).ok_or(Unsatisfiable)?,
            )
        }
        (false, _) => {
            let start: u64 = a.parse().map_err(|_| Unsatisfiable)?;
            let end = if b.is_empty() {
                len.saturating_sub(1)
            } else {
                b.parse::<u64>()
                    .map_err(|_| Unsatisfiable)?
                    .min(len.saturating_sub(1))
            };
            (start, end)
        }
        (true, true) => return Err(Unsatisfiable),
    };
    if start >= len || start > end {
        return Err(Unsatisfiable);
    }
    Ok(Some((start, end)))
}

async fn serve_mp4(
    path: &std::path::Path,
    id: &ClipId,
    range: Option<&str>,
    download: bool,
) -> Response {
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return text(StatusCode::NOT_FOUND, "no such recording");
    };
    let len = f.metadata().await.map_or(0, |m| m.len());
    let (status, start, end) = match range.map(|r| parse_range(r, len)) {
        None | Some(Ok(None)) => (StatusCode::OK, 0, len.saturating_sub(1)),
        Some(Ok(Some((a, b)))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Some(Err(Unsatisfiable)) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response();
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    if f.seek(SeekFrom::Start(start)).await.is_err() {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot read the recording",
        );
    }
    let body = Body::from_stream(futures_util::stream::unfold(
        (f, count),
        |(mut f, left)| async move {
            if left == 0 {
                return None;
            }
            let mut buf = vec![0; CHUNK.min(left as usize)];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(buf), (f, left - n as u64)))
                }
                Err(e) => Some((Err(e), (f, 0))),
            }
        },
    ));
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    if download
        && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"rtcam-{id}.mp4\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

pub async fn delete(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !owner(&state, &headers) {
        return text(StatusCode::FORBIDDEN, "only the owner deletes recordings");
    }
    let Some(id) = ClipId::parse(file.trim_end_matches(".mp4")) else {
        return text(StatusCode::NOT_FOUND, "no such recording");
    };
    let dir = state.record.dir.clone();
    if dir.join(format!("{id}.mp4.part")).exists() {
        return text(
            StatusCode::CONFLICT,
            "this recording is being written; delete it once it ends",
        );
    }
    if !dir.join(format!("{id}.mp4")).exists() {
        return text(StatusCode::NOT_FOUND, "no such recording");
    }
    let _ = tokio::task::spawn_blocking(move || disk::remove(&dir, &id)).await;
    StatusCode::NO_CONTENT.into_response()
}

pub async fn events(State(state): State<AppState>) -> Response {
    axum::Json(state.record.events.list()).into_response()
}

pub async fn event_snapshot(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let jpeg = file
        .strip_suffix(".jpg")
        .and_then(|n| n.parse::<u64>().ok())
        .and_then(|n| state.record.events.snapshot(n));
    match jpeg {
        Some(j) => jpeg_response(j.to_vec()),
        None => text(
            StatusCode::NOT_FOUND,
            "no such event picture (the newest 100 are kept)",
        ),
    }
}

#[derive(Serialize, Deserialize)]
pub struct ZonesBody {
    zones: Vec<ZoneJson>,
    #[serde(default, skip_deserializing)]
    may_set: bool,
}

pub async fn zones(State(state): State<AppState>, headers: HeaderMap) -> Response {
    axum::Json(ZonesBody {
        zones: state.record.zones.get().1,
        may_set: owner(&state, &headers),
    })
    .into_response()
}

pub async fn set_zones(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !owner(&state, &headers) {
        return text(StatusCode::FORBIDDEN, "only the owner sets motion zones");
    }
    let Ok(z) = serde_json::from_slice::<ZonesBody>(&body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected {\"zones\":[{\"x\":..,\"y\":..,\"w\":..,\"h\":..,\"kind\":\"watch\"|\"ignore\"}]}",
        );
    };
    let zones = state.record.zones.clone();
    match tokio::task::spawn_blocking(move || zones.set(z.zones)).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(crate::record::watch::SetZonesError::Invalid(e))) => {
            text(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "the zones were not kept"),
    }
}

#[cfg(test)]
mod tests {
    use super::{Unsatisfiable, parse_range};

    #[test]
    fn byte_ranges_parse_as_browsers_send_them() {
        assert_eq!(parse_range("bytes=0-", 1000), Ok(Some((0, 999))));
        assert_eq!(parse_range("bytes=100-199", 1000), Ok(Some((100, 199))));
        assert_eq!(parse_range("bytes=900-5000", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=-5000", 1000), Ok(Some((0, 999))));
        assert_eq!(parse_range("bytes=0-1,5-9", 1000), Ok(None));
        assert_eq!(parse_range("items=0-1", 1000), Ok(None));
        assert_eq!(parse_range("bytes=1000-", 1000), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=5-4", 1000), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=-0", 1000), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=x-", 1000), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=0-", 0), Err(Unsatisfiable));
    }
}
