//! Endpoint and resource addresses: what WHIP needs of URLs (RFC 3986
//! reference resolution for `Location`), without a URL crate.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// An absolute `http` or `https` URL, split as a client uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// `host` or `host:port` (IPv6 in brackets), as written.
    pub authority: String,
    /// Starts with `/`; the query, if any, included.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not an http:// or https:// URL: {0}")]
    Scheme(String),
    #[error("no host in {0}")]
    NoHost(String),
    #[error("bad port in {0}")]
    Port(String),
    #[error("unprintable characters in a URL")]
    Unprintable,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, UrlError> {
        let text = text.trim();
        if text.chars().any(|c| c.is_control() || c == ' ') {
            return Err(UrlError::Unprintable);
        }
        let (scheme, rest) = if let Some(rest) = strip_prefix_ci(text, "https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = strip_prefix_ci(text, "http://") {
            (Scheme::Http, rest)
        } else {
            return Err(UrlError::Scheme(text.into()));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let authority = authority.rsplit('@').next().unwrap_or("");
        if authority.is_empty() || authority.starts_with(':') {
            return Err(UrlError::NoHost(text.into()));
        }
        let url = Url {
            scheme,
            authority: authority.into(),
            path: normalize_path(path),
        };
        url.host_port().map_err(|_| UrlError::Port(text.into()))?;
        Ok(url)
    }

    /// Where a `Location` header (absolute, network-path, absolute-path or
    /// relative) points, read against this URL (RFC 3986 section 5.2).
    pub fn join(&self, reference: &str) -> Result<Url, UrlError> {
        let reference = reference.trim();
        if reference.chars().any(|c| c.is_control() || c == ' ') {
            return Err(UrlError::Unprintable);
        }
        let lower = reference.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Url::parse(reference);
        }
        if reference.contains("://") {
            return Err(UrlError::Scheme(reference.into()));
        }
        if let Some(rest) = reference.strip_prefix("//") {
            let scheme = match self.scheme {
                Scheme::Http => "http://",
                Scheme::Https => "https://",
            };
            return Url::parse(&format!("{scheme}{rest}"));
        }
        let path = if reference.starts_with('/') {
            reference.to_string()
        } else if let Some(query) = reference.strip_prefix('?') {
            let base = self.path.split('?').next().unwrap_or("/");
            format!("{base}?{query}")
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{reference}")
        };
        Ok(Url {
            scheme: self.scheme,
            authority: self.authority.clone(),
            path: remove_dot_segments(&normalize_path(&path)),
        })
    }

    /// The host (brackets taken off an IPv6 address) and the port.
    pub fn host_port(&self) -> Result<(&str, u16), UrlError> {
        let bad = || UrlError::Port(self.to_string());
        if let Some(rest) = self.authority.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => self.scheme.default_port(),
                None => return Err(bad()),
            };
            return Ok((host, port));
        }
        match self.authority.rsplit_once(':') {
            Some((host, port)) => Ok((host, port.parse().map_err(|_| bad())?)),
            None => Ok((&self.authority, self.scheme.default_port())),
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.authority, self.path)
    }
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The path with its fragment dropped, never empty.
fn normalize_path(path: &str) -> String {
    let path = path.split('#').next().unwrap_or("");
    match path.chars().next() {
        None => "/".into(),
        Some('?') => format!("/{path}"),
        _ => path.into(),
    }
}

/// `.` and `..` segments resolved, as RFC 3986 section 5.2.4 does.
fn remove_dot_segments(path: &str) -> String {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." if last => out.push(""),
            "." => {}
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut joined = format!("/{}", out.join("/"));
    if let Some(q) = query {
        joined.push('?');
        joined.push_str(q);
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn parses_what_receivers_hand_out() {
        let u = url("https://whip.example.com/whip/endpoint/cam?x=1");
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.host_port().unwrap(), ("whip.example.com", 443));
        assert_eq!(u.path, "/whip/endpoint/cam?x=1");
        let u = url("http://10.9.0.1:7080");
        assert_eq!(u.host_port().unwrap(), ("10.9.0.1", 7080));
        assert_eq!(u.path, "/");
        let u = url("HTTP://[fd00::1]:8080/w");
        assert_eq!(u.host_port().unwrap(), ("fd00::1", 8080));
        assert_eq!(u.to_string(), "http://[fd00::1]:8080/w");
    }

    #[test]
    fn refuses_what_is_not_an_http_url() {
        assert!(matches!(Url::parse("ftp://x/y"), Err(UrlError::Scheme(_))));
        assert!(matches!(
            Url::parse("whip.example.com/w"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(Url::parse("http:///w"), Err(UrlError::NoHost(_))));
        assert!(matches!(
            Url::parse("http://h:port/w"),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            Url::parse("http://h/a b"),
            Err(UrlError::Unprintable)
        ));
    }

    #[test]
    fn location_resolves_against_the_endpoint() {
        let base = url("https://sfu.example:8443/whip/endpoint/cam");
        for (location, want) in [
            (
                "/whip/resource/42",
                "https://sfu.example:8443/whip/resource/42",
            ),
            (
                "resource/42",
                "https://sfu.example:8443/whip/endpoint/resource/42",
            ),
            (
                "../resource/42",
                "https://sfu.example:8443/whip/resource/42",
            ),
            ("./42", "https://sfu.example:8443/whip/endpoint/42"),
            ("//other.example/r/1", "https://other.example/r/1"),
            ("http://10.0.0.2:7080/r/1", "http://10.0.0.2:7080/r/1"),
            ("?id=7", "https://sfu.example:8443/whip/endpoint/cam?id=7"),
        ] {
            assert_eq!(base.join(location).unwrap().to_string(), want, "{location}");
        }
        assert!(base.join("javascript://x").is_err());
        assert!(base.join("/a\r\nb").is_err());
    }
}
