//! The embedded files under `/console/assets/`: the console's own modules and
//! stylesheet (`web/app`) and the third-party bundles (`vendor/…`, from
//! `web/dist`). See build.rs.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::ConsoleError;

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The embedded file at `path`, if there is one.
pub fn find(path: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS.iter().find(|(name, _, _)| *name == path).map(|(_, mime, bytes)| (*mime, *bytes))
}

pub async fn asset(Path(path): Path<String>) -> Response {
    let Some((mime, bytes)) = find(&path) else {
        let hint = if path.starts_with("vendor/") && !VENDOR_BUILT {
            format!("{path} (the console's libraries were not built into this binary: run scripts/console_assets.sh, then rebuild)")
        } else {
            path
        };
        return ConsoleError::NotFound(hint).into_response();
    };
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    // The files change only with the binary; revalidate cheaply on reload.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, HeaderValue::from_static(concat!("\"", env!("CARGO_PKG_VERSION"), "\"")));
    resp
}
