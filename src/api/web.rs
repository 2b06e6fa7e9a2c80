//! The operator page (`web/`): static files embedded in the binary, open to everyone (the
//! page logs in itself), cacheable with an `ETag` and revalidated (`no-cache`) so a new
//! gateway's page is picked up at once. A restrictive Content-Security-Policy: the page loads
//! only its own scripts and talks only to this gateway.

use crate::http::Response;

pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/app.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/style.css"),
    },
    Asset {
        path: "/vendor/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/vendor/uPlot.iife.min.js"),
    },
    Asset {
        path: "/vendor/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/vendor/uPlot.min.css"),
    },
];

/// The asset a path names (`/index.html` is the page too).
pub fn find(path: &str) -> Option<usize> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().position(|a| a.path == path)
}

/// The assets' ETags, computed once (the files are fixed for the binary's life).
fn etags() -> &'static [String] {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| ASSETS.iter().map(|a| etag(a.body)).collect())
}

/// A strong validator: FNV-1a of the bytes.
fn etag(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The asset, or 304 when the client's copy (`If-None-Match`) is current.
pub fn serve(index: usize, if_none_match: Option<&str>) -> Response {
    let a = &ASSETS[index];
    let tag = etags()[index].clone();
    let fresh = if_none_match.is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().trim_start_matches("W/") == tag)
    });
    let mut r = if fresh {
        Response::json(304, Vec::new())
    } else {
        Response::json(200, a.body.to_vec())
    };
    r.content_type = a.content_type;
    r = r
        .with_header("ETag", tag)
        .with_header("Cache-Control", "no-cache")
        .with_header("X-Content-Type-Options", "nosniff");
    if a.path == "/" {
        r = r
            .with_header("Content-Security-Policy", CSP)
            .with_header("X-Frame-Options", "DENY")
            .with_header("Referrer-Policy", "no-referrer");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_found_and_revalidated() {
        let i = find("/").unwrap();
        assert_eq!(find("/index.html"), Some(i));
        assert_eq!(find("/nope.js"), None);
        let r = serve(i, None);
        assert_eq!(r.status, 200);
        assert!(r.body.starts_with(b"<!doctype html>"));
        let tag = r
            .headers
            .iter()
            .find(|(k, _)| *k == "ETag")
            .unwrap()
            .1
            .clone();
        assert_eq!(serve(i, Some(&tag)).status, 304);
        assert_eq!(serve(i, Some(&format!("W/{tag}, \"x\""))).status, 304);
        assert_eq!(serve(i, Some("\"other\"")).status, 200);
        assert!(r
            .headers
            .iter()
            .any(|(k, _)| *k == "Content-Security-Policy"));
    }
}
