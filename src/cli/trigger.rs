use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config::Config;

/// Where to reach a worker listening on `listen` from this machine: a wildcard address
/// (`0.0.0.0`, `[::]`, as in containers) is reached on loopback, which is also what the
/// token-less admin mode accepts.
fn local_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

/// Exit 0 accepted, 1 a sync is already running, 2 anything else.
pub async fn run(config: Config, url: Option<String>) -> anyhow::Result<i32> {
    let base = url.unwrap_or_else(|| format!("http://{}", local_address(config.http.listen)));
    let endpoint = format!("{}/api/admin/sync-models", base.trim_end_matches('/'));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let mut request = client.post(&endpoint);
    if !config.http.admin_token.is_empty() {
        request = request.bearer_auth(config.http.admin_token.expose());
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            eprintln!("cannot reach the worker at {endpoint}: {error} (is `model-lens-sync serve` running?)");
            return Ok(2);
        }
    };
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    match status {
        202 => {
            println!("sync {} started", body["sync_id"]);
            Ok(0)
        }
        409 => {
            println!("a sync is already running (id {})", body["sync_id"]);
            Ok(1)
        }
        401 | 403 => {
            eprintln!(
                "refused ({status}): {}; set ADMIN_TOKEN to the worker's token",
                body["error"]
            );
            Ok(2)
        }
        _ => {
            eprintln!("the worker answered {status}: {}", body["error"]);
            Ok(2)
        }
    }
}
