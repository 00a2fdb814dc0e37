//! The page from `web/`, embedded at build time: the appliance serves it
//! with no files on disk, and a flashed binary cannot lose its page.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        mime: "text/html; charset=utf-8",
        body: include_bytes!("../../web/index.html"),
    },
    Asset {
        path: "/login",
        mime: "text/html; charset=utf-8",
        body: include_bytes!("../../web/login.html"),
    },
    Asset {
        path: "/login.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/login.js"),
    },
    Asset {
        path: "/app.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/app.js"),
    },
    Asset {
        path: "/stripe.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/stripe.js"),
    },
    Asset {
        path: "/camera.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/camera.js"),
    },
    Asset {
        path: "/publish.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/publish.js"),
    },
    Asset {
        path: "/peers.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/peers.js"),
    },
    Asset {
        path: "/recordings.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/recordings.js"),
    },
    Asset {
        path: "/chat.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/chat.js"),
    },
    Asset {
        path: "/controls.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/controls.js"),
    },
    Asset {
        path: "/serial.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/serial.js"),
    },
    Asset {
        path: "/talk.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/talk.js"),
    },
    Asset {
        path: "/style.css",
        mime: "text/css; charset=utf-8",
        body: include_bytes!("../../web/style.css"),
    },
];

/// Serves `path` if it is one of the page's files.
pub fn serve(path: &str) -> Response {
    let path = if path == "/index.html" { "/" } else { path };
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(a.mime)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            a.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    /// Every module a page script imports is served (a missing one left
    /// the whole page dead once: app.js failed to load).
    #[test]
    fn every_imported_module_is_served() {
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for line in text.lines() {
                let Some(from) = line.split("from './").nth(1) else {
                    continue;
                };
                let module = format!("/{}", from.split('\'').next().unwrap());
                assert!(
                    ASSETS.iter().any(|a| a.path == module),
                    "{} imports {module}, which is not served",
                    asset.path
                );
            }
        }
    }
}
