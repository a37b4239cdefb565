//! Admin routes need `Authorization: Bearer $ADMIN_TOKEN` (compared in constant time). With no
//! token configured they answer only requests that are local in every respect a browser or a
//! DNS trick could fake: the peer is a loopback address (IPv4-mapped IPv6 included), the `Host`
//! is a loopback name or address (not DNS rebinding), and the request is not cross-site (no
//! foreign `Origin`, no `Sec-Fetch-Site: cross-site/same-site`), so that a web page cannot POST
//! a sync. A reverse proxy on the same host forwards from loopback with its own `Host`, so it
//! needs a token (docs/operations.md, "Security model").

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use subtle::ConstantTimeEq;

use crate::http::AppState;

pub async fn require_admin(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let token = &state.services.config.http.admin_token;
    if token.is_empty() {
        return match tokenless_refusal(peer, request.headers()) {
            None => next.run(request).await,
            Some(reason) => refuse(StatusCode::FORBIDDEN, reason),
        };
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
        next.run(request).await
    } else {
        let mut response = refuse(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        response
    }
}

/// Why a request without a configured token is refused, if it is.
fn tokenless_refusal(peer: SocketAddr, headers: &HeaderMap) -> Option<&'static str> {
    if !canonical_ip(peer.ip()).is_loopback() {
        return Some("admin routes answer only loopback clients unless ADMIN_TOKEN is set");
    }
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    if !text(header::HOST).is_some_and(is_local_host) {
        return Some(
            "the Host header is not a loopback name; without ADMIN_TOKEN only local clients may use \
             admin routes (behind a reverse proxy, set ADMIN_TOKEN)",
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !origin.to_str().is_ok_and(is_local_origin) {
            return Some("cross-site request refused: the Origin is not a loopback address");
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.to_str(), Ok("same-origin" | "none")) {
            return Some("cross-site request refused (Sec-Fetch-Site)");
        }
    }
    None
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, what a dual-stack socket reports for an
/// IPv4 client) as the IPv4 address it is; any other address unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// `localhost`, `*.localhost`, or a loopback address, with an optional port.
fn is_local_host(value: &str) -> bool {
    let host = if let Some(bracketed) = value.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((host, rest)) if rest.is_empty() || is_port(rest) => host,
            _ => return false,
        }
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) if is_port(&format!(":{port}")) => host,
            Some(_) => return false,
            None => value,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| canonical_ip(ip).is_loopback())
}

fn is_port(text: &str) -> bool {
    text.strip_prefix(':')
        .is_some_and(|port| !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()))
}

/// `http(s)://<local host>[:port]`; `null` and every other origin are foreign.
fn is_local_origin(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once("://") else {
        return false;
    };
    matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") && !rest.contains('/') && is_local_host(rest)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 50000)
    }

    #[test]
    fn ipv4_mapped_loopback_is_loopback_and_mapped_outsiders_are_not() {
        assert_eq!(
            canonical_ip("::ffff:127.0.0.1".parse().unwrap()),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert!(canonical_ip("::ffff:127.0.0.1".parse().unwrap()).is_loopback());
        assert!(!canonical_ip("::ffff:10.1.2.3".parse().unwrap()).is_loopback());
        assert!(canonical_ip("::1".parse().unwrap()).is_loopback());
    }

    #[test]
    fn local_host_values() {
        for host in [
            "localhost",
            "localhost:3000",
            "LOCALHOST.:3000",
            "app.localhost:8080",
            "127.0.0.1:3000",
            "127.1.2.3",
            "[::1]:3000",
            "[::1]",
            "[::ffff:127.0.0.1]:3000",
        ] {
            assert!(is_local_host(host), "{host} is local");
        }
        for host in [
            "attacker.example",
            "attacker.example:3000",
            "localhost.attacker.example",
            "0.0.0.0:3000",
            "10.0.0.5:3000",
            "[::]:3000",
            "127.0.0.1:3000:1",
            "[::1]junk",
            "localhost:",
            "",
        ] {
            assert!(!is_local_host(host), "{host} is not local");
        }
    }

    #[test]
    fn tokenless_requests_must_be_local_in_every_respect() {
        let local = peer("127.0.0.1");
        assert_eq!(tokenless_refusal(local, &headers(&[("host", "127.0.0.1:3000")])), None);
        assert_eq!(
            tokenless_refusal(peer("::ffff:127.0.0.1"), &headers(&[("host", "localhost:3000")])),
            None
        );
        assert_eq!(
            tokenless_refusal(
                local,
                &headers(&[
                    ("host", "localhost:3000"),
                    ("origin", "http://localhost:3000"),
                    ("sec-fetch-site", "same-origin")
                ])
            ),
            None
        );
        assert_eq!(
            tokenless_refusal(local, &headers(&[("host", "localhost"), ("sec-fetch-site", "none")])),
            None
        );

        let refused =
            |peer_ip: &str, pairs: &[(&'static str, &str)]| tokenless_refusal(peer(peer_ip), &headers(pairs)).is_some();
        assert!(refused("192.0.2.7", &[("host", "localhost:3000")]), "remote peer");
        assert!(
            refused("::ffff:192.0.2.7", &[("host", "localhost:3000")]),
            "mapped remote peer"
        );
        assert!(refused("127.0.0.1", &[]), "no Host");
        assert!(
            refused("127.0.0.1", &[("host", "attacker.example:3000")]),
            "DNS rebinding"
        );
        assert!(
            refused(
                "127.0.0.1",
                &[("host", "localhost:3000"), ("origin", "https://attacker.example")]
            ),
            "foreign Origin"
        );
        assert!(
            refused("127.0.0.1", &[("host", "localhost:3000"), ("origin", "null")]),
            "opaque Origin"
        );
        assert!(
            refused(
                "127.0.0.1",
                &[("host", "localhost:3000"), ("sec-fetch-site", "cross-site")]
            ),
            "cross-site"
        );
        assert!(
            refused(
                "127.0.0.1",
                &[("host", "localhost:3000"), ("sec-fetch-site", "same-site")]
            ),
            "same-site"
        );
    }
}
