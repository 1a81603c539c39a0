//! Which `Host` and `Origin` headers the MCP endpoint accepts (DNS rebinding protection).
//!
//! A web page on another site can make a browser send requests to a relay on the user's own
//! machine; the browser then says where the page came from (`Origin`), and a rebound DNS name
//! shows in `Host`. So the endpoint serves only the host names it is meant to be reached by
//! (loopback, plus `--allowed-host`, or any with `--any-host`) and only the origins configured
//! (`--allowed-origin`; the relay's own page is let through by `page::strip_same_origin`).

use http::HeaderMap;
use http::header::{HOST, ORIGIN};

use crate::RelayConfig;

/// Host names a relay always accepts in the `Host` header.
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why a request was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refusal {
    /// The `Host` header names a host this relay is not served as.
    #[error(
        "Forbidden: Host {0:?} is not one this relay is served as (start it with --allowed-host)"
    )]
    Host(String),
    /// The `Origin` header names a site that may not call this relay.
    #[error("Forbidden: Origin {0:?} may not call this relay (start it with --allowed-origin)")]
    Origin(String),
}

/// Checks `Host` and `Origin`. A request without `Origin` is not from a browser page (or from
/// the relay's own page, whose same-origin header was removed) and passes that part.
pub fn check(config: &RelayConfig, headers: &HeaderMap) -> Result<(), Refusal> {
    if !config.any_host {
        let host = headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let allowed = parse_authority(host).is_some_and(|(name, port)| {
            LOOPBACK_HOSTS.contains(&name.as_str())
                || config
                    .allowed_hosts
                    .iter()
                    .filter_map(|entry| parse_authority(entry))
                    .any(|(allowed, allowed_port)| {
                        allowed == name && allowed_port.is_none_or(|p| Some(p) == port)
                    })
        });
        if !allowed {
            return Err(Refusal::Host(host.to_owned()));
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let text = origin.to_str().unwrap_or("");
        let allowed = parse_origin(text).is_some_and(|origin| {
            config
                .allowed_origins
                .iter()
                .any(|entry| origin_matches(entry, &origin))
        });
        if !allowed {
            return Err(Refusal::Origin(text.to_owned()));
        }
    }
    Ok(())
}

/// `host[:port]` (IPv6 in brackets) as a lower-case name and an optional port.
fn parse_authority(text: &str) -> Option<(String, Option<u16>)> {
    let authority: http::uri::Authority = text.trim().parse().ok()?;
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Some((name, authority.port_u16()))
}

/// An origin as scheme, host and port (the scheme's default port when none is written), or
/// `None` for `null` and anything unreadable.
#[derive(Debug, PartialEq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn parse_origin(text: &str) -> Option<Origin> {
    let uri: http::Uri = text.trim().parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let (host, port) = parse_authority(uri.authority()?.as_str())?;
    let port = port.or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    });
    Some(Origin { scheme, host, port })
}

/// Whether a configured origin (`scheme://host[:port]`, `:*` for any port; `null` for opaque
/// origins) admits `origin`. An entry without a port admits any port.
fn origin_matches(entry: &str, origin: &Origin) -> bool {
    let entry = entry.trim();
    let (base, any_port) = match entry.strip_suffix(":*") {
        Some(base) => (base, true),
        None => (entry, false),
    };
    let Ok(uri) = base.parse::<http::Uri>() else {
        return false;
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return false;
    };
    let Some((host, port)) = parse_authority(authority.as_str()) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(&origin.scheme) || host != origin.host {
        return false;
    }
    if any_port || authority.port_u16().is_none() {
        return true;
    }
    port == origin.port
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hosts: &[&str], origins: &[&str]) -> RelayConfig {
        RelayConfig {
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..RelayConfig::default()
        }
    }

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(ORIGIN, origin.parse().unwrap());
        }
        headers
    }

    #[test]
    fn loopback_and_configured_hosts_pass() {
        let c = config(&["chat.example.org", "other.example:8443"], &[]);
        for host in [
            "127.0.0.1:9",
            "localhost",
            "[::1]:80",
            "CHAT.example.org:443",
        ] {
            assert_eq!(check(&c, &headers(host, None)), Ok(()), "{host}");
        }
        assert!(check(&c, &headers("other.example:8443", None)).is_ok());
        for host in [
            "attacker.example",
            "other.example:8444",
            "",
            "127.0.0.1.evil",
        ] {
            assert!(check(&c, &headers(host, None)).is_err(), "{host}");
        }
    }

    #[test]
    fn origins_need_an_entry_that_names_them() {
        let c = config(
            &[],
            &[
                "https://app.example:443",
                "http://localhost:*",
                "http://x.example",
            ],
        );
        for origin in [
            "https://app.example",
            "http://localhost:5173",
            "http://x.example:8080",
        ] {
            assert_eq!(
                check(&c, &headers("localhost", Some(origin))),
                Ok(()),
                "{origin}"
            );
        }
        for origin in [
            "https://app.example:8443",
            "http://app.example",
            "null",
            "garbage",
        ] {
            assert!(
                check(&c, &headers("localhost", Some(origin))).is_err(),
                "{origin}"
            );
        }
    }
}
