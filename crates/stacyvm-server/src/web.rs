//! The web dashboard, served at `/`.
//!
//! The files in `crates/stacyvm-server/web/` are plain HTML, CSS and
//! JavaScript ES modules (no front-end build step, no CDN); they are embedded
//! into the binary with `include_bytes!`, so `cargo build` alone produces a
//! server with the dashboard inside. The dashboard talks only to the public
//! API under `/api/v1` and routes on the URL fragment (`#/sandboxes/...`), so
//! the only page the server needs to know is `/`.
//!
//! Caching: our own files have stable names, so they are served with
//! `Cache-Control: no-cache` and a content `ETag` (the browser revalidates
//! and gets `304 Not Modified`); after an upgrade the new modules are picked
//! up at once and never mixed with old ones. Vendored files live under a
//! versioned directory and are cached as immutable.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file: its path under `web/` and its bytes.
#[derive(Debug)]
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset {
            path: $path,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)),
        }),*]
    };
}

/// Every file of `web/`. A test fails when this list and the directory
/// disagree, so a new file cannot be forgotten.
static ASSETS: &[Asset] = assets![
    "index.html",
    "style.css",
    "favicon.svg",
    "app.js",
    "api.js",
    "ui.js",
    "charts.js",
    "terminal.js",
    "pages/overview.js",
    "pages/sandboxes.js",
    "pages/sandbox.js",
    "pages/files.js",
    "pages/templates.js",
    "pages/providers.js",
    "pages/events.js",
    "pages/diagnostics.js",
    "vendor/xterm-6.0.0/xterm.mjs",
    "vendor/xterm-6.0.0/xterm.css",
    "vendor/xterm-6.0.0/addon-fit.mjs",
    "vendor/xterm-6.0.0/LICENSE-xterm",
    "vendor/xterm-6.0.0/LICENSE-addon-fit",
    "vendor/xterm-6.0.0/README.md",
];

const INDEX: &str = "index.html";

/// What the dashboard may load: only this origin (plus WebSocket/SSE to it).
/// Inline styles are allowed because xterm.js sets element styles.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data: blob:; connect-src 'self' ws: wss:; object-src 'none'; \
     base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// Routes for the dashboard: `/` (the page) and one route per embedded file.
///
/// No wildcard route is registered, so this merges with the API router
/// without overlapping `/api/v1/...` or its 404 fallback.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let mut router = Router::new();
    for asset in ASSETS {
        let served = Served::new(asset);
        let handler = move |headers: HeaderMap| {
            let served = served.clone();
            async move { served.respond(&headers) }
        };
        if asset.path == INDEX {
            router = router.route("/", get(handler.clone()));
        }
        router = router.route(&format!("/{}", asset.path), get(handler));
    }
    router
}

/// An asset with its response headers worked out once.
#[derive(Debug, Clone)]
struct Served {
    bytes: &'static [u8],
    content_type: HeaderValue,
    cache_control: HeaderValue,
    etag: HeaderValue,
    is_page: bool,
}

impl Served {
    fn new(asset: &'static Asset) -> Self {
        let cache = if asset.path.starts_with("vendor/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        let etag = format!("\"{:016x}\"", fnv1a(asset.bytes));
        Self {
            bytes: asset.bytes,
            content_type: HeaderValue::from_static(content_type(asset.path)),
            cache_control: HeaderValue::from_static(cache),
            etag: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\"")),
            is_page: asset.path.ends_with(".html"),
        }
    }

    fn respond(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim() == self.etag || t.trim() == "*")
            });
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut r = Response::new(Body::from(self.bytes));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, self.content_type.clone());
            r
        };
        let h = response.headers_mut();
        h.insert(header::CACHE_CONTROL, self.cache_control.clone());
        h.insert(header::ETAG, self.etag.clone());
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if self.is_page {
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
        }
        response
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        Some("md") => "text/markdown; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    }
}

/// FNV-1a, 64 bit: a stable content fingerprint for ETags (not security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};
    use tower::ServiceExt;

    fn web_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
    }

    fn files_under(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read web dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                files_under(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).expect("under base");
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    async fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        router::<()>()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    async fn body_text(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[test]
    fn every_file_in_web_dir_is_embedded_and_nothing_else() {
        let mut on_disk = BTreeSet::new();
        files_under(&web_dir(), &web_dir(), &mut on_disk);
        let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        assert_eq!(on_disk, embedded, "update ASSETS in src/web.rs");
    }

    #[test]
    fn every_relative_module_import_resolves_to_an_embedded_file() {
        let embedded: BTreeSet<&str> = ASSETS.iter().map(|a| a.path).collect();
        let mut checked = 0;
        for asset in ASSETS
            .iter()
            .filter(|a| a.path.ends_with(".js") && !a.path.starts_with("vendor/"))
        {
            let text = std::str::from_utf8(asset.bytes).expect("utf-8 js");
            let dir = asset.path.rsplit_once('/').map_or("", |(d, _)| d);
            for spec in text
                .split(" from '")
                .skip(1)
                .filter_map(|s| s.split('\'').next())
            {
                assert!(
                    spec.starts_with("./") || spec.starts_with("../"),
                    "{}: import {spec} is not relative (no CDN, no bare specifiers)",
                    asset.path
                );
                let resolved = resolve(dir, spec);
                assert!(
                    embedded.contains(resolved.as_str()),
                    "{}: import {spec} resolves to {resolved}, which is not embedded",
                    asset.path
                );
                checked += 1;
            }
        }
        assert!(
            checked > 10,
            "expected to check the page imports, saw {checked}"
        );
    }

    fn resolve(dir: &str, spec: &str) -> String {
        let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        for seg in spec.split('/') {
            match seg {
                "." => {}
                ".." => {
                    parts.pop();
                }
                s => parts.push(s),
            }
        }
        parts.join("/")
    }

    #[test]
    fn index_loads_nothing_from_other_origins() {
        let index = ASSETS.iter().find(|a| a.path == INDEX).expect("index");
        let html = std::str::from_utf8(index.bytes).expect("utf-8");
        for attr in ["src=\"", "href=\""] {
            for value in html.split(attr).skip(1).filter_map(|s| s.split('"').next()) {
                assert!(
                    !value.contains("//"),
                    "index.html references another origin: {value}"
                );
            }
        }
    }

    #[tokio::test]
    async fn root_serves_the_page_uncached_with_a_strict_policy() {
        let r = get("/", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert!(
            h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("default-src 'self'")
        );
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let text = body_text(r).await;
        assert!(text.contains("<script type=\"module\" src=\"app.js\">"));
    }

    #[tokio::test]
    async fn modules_have_javascript_type_and_revalidate_with_etag() {
        let r = get("/pages/overview.js", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        let etag = r.headers()[header::ETAG].to_str().unwrap().to_string();

        let again = get("/pages/overview.js", &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(body_text(again).await.is_empty());

        let stale = get("/pages/overview.js", &[("if-none-match", "\"other\"")]).await;
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn vendored_files_are_immutable_and_typed() {
        let r = get("/vendor/xterm-6.0.0/xterm.css", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert!(
            r.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        let svg = get("/favicon.svg", &[]).await;
        assert_eq!(svg.headers()[header::CONTENT_TYPE], "image/svg+xml");
    }

    #[tokio::test]
    async fn unknown_paths_are_not_answered_with_the_page() {
        for path in ["/sandboxes", "/nope.js", "/api/v1/health", "/../Cargo.toml"] {
            let r = get(path, &[]).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[tokio::test]
    async fn head_requests_get_headers_without_a_body() {
        let r = router::<()>()
            .oneshot(
                Request::head("/app.js")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().contains_key(header::ETAG));
        assert!(body_text(r).await.is_empty());
    }
}
