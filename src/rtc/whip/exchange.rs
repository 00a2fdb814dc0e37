//! What the WHIP client and its HTTP shell exchange: requests, what came
//! back, and why publishing failed.

use super::url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// A request for the shell to send; its response comes back with `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<String>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the shell read of a response (the body bounded by the shell).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Transport {
    #[error("connection refused")]
    Refused,
    #[error("no response in time")]
    Timeout,
    #[error("cannot resolve the host: {0}")]
    Resolve(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(String),
}

/// Why publishing to a target failed, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhipError {
    #[error("the receiver refused the token ({0})")]
    Unauthorized(u16),
    #[error("no such WHIP endpoint (404)")]
    NotFound,
    #[error("the receiver is busy or failing ({0})")]
    Server(u16),
    #[error("the receiver answered the offer with status {0}")]
    Status(u16),
    #[error("201 without a Location header")]
    NoLocation,
    #[error("bad Location header: {0}")]
    BadLocation(String),
    #[error("redirected more than once")]
    TooManyRedirects,
    #[error("the answer is not SDP (Content-Type: {0})")]
    NotSdp(String),
    #[error(
        "the receiver refused our video codec (its answer's video section is inactive or port 0)"
    )]
    CodecRefused,
    #[error("the answer did not apply: {0}")]
    BadAnswer(String),
    #[error("cannot reach the receiver: {0}")]
    Transport(#[from] Transport),
    #[error("the media connection ended: {0}")]
    Media(String),
    #[error("could not make an offer: {0}")]
    Offer(String),
}
