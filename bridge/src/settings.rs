//! Where the bridge's settings come from, resolved into one validated [`Settings`].
//!
//! Precedence: command-line flags > environment (`MCP_CHAT_*`) > `config.toml` in the platform
//! config directory > defaults. Secrets (the relay's access token, extra headers) never come from
//! the command line, which other local users can read: only from the environment or files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Relay used when nothing else is configured: one on this machine.
pub const DEFAULT_RELAY_URL: &str = "http://127.0.0.1:8080/mcp";

/// Environment variable: relay URL.
pub const ENV_RELAY: &str = "MCP_CHAT_RELAY";
/// Environment variable: default display name.
pub const ENV_DISPLAY_NAME: &str = "MCP_CHAT_DISPLAY_NAME";
/// Environment variable: bearer token for a private relay.
pub const ENV_ACCESS_TOKEN: &str = "MCP_CHAT_ACCESS_TOKEN";
/// Environment variable: extra request headers, `Name: value` pairs separated by newlines or `;`.
pub const ENV_HEADERS: &str = "MCP_CHAT_HEADERS";
/// Environment variable: PEM file of extra CA certificates to trust.
pub const ENV_CA_BUNDLE: &str = "MCP_CHAT_CA_BUNDLE";
/// Environment variable: use a fresh in-memory identity (`1`/`true`).
pub const ENV_EPHEMERAL: &str = "MCP_CHAT_EPHEMERAL";
/// Environment variable: overrides the config directory (config.toml and the identity file).
pub const ENV_CONFIG_DIR: &str = "MCP_CHAT_CONFIG_DIR";
/// Environment variable: overrides the directory of the log file.
pub const ENV_LOG_DIR: &str = "MCP_CHAT_LOG_DIR";
/// Environment variable: what the bridge logs, a `tracing` filter (default `info`).
pub const ENV_LOG: &str = "MCP_CHAT_LOG";
/// Environment variable: seconds between pings to the relay (default 30).
pub const ENV_PING_SECS: &str = "MCP_CHAT_PING_SECS";
/// Environment variable: seconds a tool call waits for an unreachable relay (default 10).
pub const ENV_CONNECT_WAIT_SECS: &str = "MCP_CHAT_CONNECT_WAIT_SECS";
/// Environment variable: seconds between progress notifications of a long call (default 10).
pub const ENV_PROGRESS_SECS: &str = "MCP_CHAT_PROGRESS_SECS";
/// Environment variable: seconds the relay may take to answer a chat tool call other than the
/// waits (default 20); past that the host gets a tool error. Tests shorten it.
pub const ENV_CALL_DEADLINE_SECS: &str = "MCP_CHAT_CALL_DEADLINE_SECS";

/// Environment variable: seconds a ping may go unanswered before the connection counts as lost
/// (default 10); the bridge's own requests get half as long again to be accepted. Tests shorten
/// it.
pub const ENV_PING_TIMEOUT_SECS: &str = "MCP_CHAT_PING_TIMEOUT_SECS";

/// Default of [`ENV_PING_TIMEOUT_SECS`].
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ENV_PING_SECS`].
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Default of [`ENV_CONNECT_WAIT_SECS`].
pub const DEFAULT_CONNECT_WAIT: Duration = Duration::from_secs(10);
/// Default of [`ENV_PROGRESS_SECS`].
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// How long `tools/list` waits for the first connection before answering from the contract.
pub const DEFAULT_LIST_WAIT: Duration = Duration::from_secs(1);
/// Default of [`ENV_CALL_DEADLINE_SECS`]. The relay answers its chat tools in milliseconds; the
/// bound is there because an answer can be lost for good on the way (a POST response cut inside
/// its SSE body: rmcp's server keeps no replay of a request it has answered).
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(20);
/// Longest any of the durations above may be set to (a day).
const MAX_SECONDS: f64 = 86_400.0;

/// What the command line said (only non-secret settings are flags).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `--relay`.
    pub relay: Option<String>,
    /// `--display-name`.
    pub display_name: Option<String>,
    /// `--ephemeral`.
    pub ephemeral: bool,
}

/// The optional `config.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Relay URL.
    pub relay: Option<String>,
    /// Default display name.
    pub display_name: Option<String>,
    /// Use a fresh identity each run.
    pub ephemeral: Option<bool>,
    /// File holding the relay's access token (first line).
    pub access_token_file: Option<PathBuf>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// PEM file of extra CA certificates.
    pub ca_bundle: Option<PathBuf>,
}

/// Settings that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The relay URL does not parse or is not http(s).
    #[error(
        "relay URL {0:?} must be an http:// or https:// URL without a user:password@ part, \
         e.g. {DEFAULT_RELAY_URL}"
    )]
    RelayUrl(String),
    /// config.toml is unreadable or malformed.
    #[error("cannot use {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A header is malformed.
    #[error("header {0:?} must look like `Name: value` with a valid name and value")]
    Header(String),
    /// A header the bridge sets itself.
    #[error("header {0:?} is set by the bridge and cannot be overridden")]
    ReservedHeader(String),
    /// No platform directory could be found (no home directory).
    #[error("cannot find a config directory; set {ENV_CONFIG_DIR}")]
    NoConfigDir,
    /// The token file is unreadable or empty.
    #[error(transparent)]
    TokenFile(#[from] mcp_chat::secrets::TokenFileError),
    /// An environment variable holds a value the bridge cannot use (never silently ignored).
    #[error("{name}={value:?} is not valid: expected {expected}")]
    BadValue {
        /// The variable.
        name: &'static str,
        /// What it holds.
        value: String,
        /// What it may hold.
        expected: &'static str,
    },
}

/// Where the bridge keeps its files.
#[derive(Debug, Clone, PartialEq)]
pub struct Paths {
    /// Directory of `config.toml` and the identity file.
    pub config_dir: PathBuf,
    /// Directory of the log file.
    pub log_dir: PathBuf,
}

impl Paths {
    /// The platform's directories (e.g. `~/.config/mcp-chat` on Linux), or the overrides from the
    /// environment.
    pub fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let dirs = directories::ProjectDirs::from("", "", "mcp-chat");
        let config_dir = env(ENV_CONFIG_DIR)
            .map(PathBuf::from)
            .or_else(|| dirs.as_ref().map(|d| d.config_dir().to_path_buf()))
            .ok_or(SettingsError::NoConfigDir)?;
        let log_dir = env(ENV_LOG_DIR)
            .map(PathBuf::from)
            .or_else(|| {
                dirs.as_ref()
                    .map(|d| d.state_dir().unwrap_or(d.data_local_dir()).join("logs"))
            })
            .unwrap_or_else(|| config_dir.join("logs"));
        Ok(Self {
            config_dir,
            log_dir,
        })
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// The anonymous identity token.
    pub fn identity_file(&self) -> PathBuf {
        self.config_dir.join("identity")
    }

    /// The log file.
    pub fn log_file(&self) -> PathBuf {
        self.log_dir.join("mcp-chat-bridge.log")
    }
}

/// Everything the bridge needs, resolved and checked.
#[derive(Clone)]
pub struct Settings {
    /// The relay's MCP endpoint (the first of `relay_urls`): names the relay in messages, and
    /// the identity token sent to every node is derived from its origin, so all nodes of one
    /// relay know the participant by the same token.
    pub relay_url: String,
    /// Every node of the relay, tried in turn when one cannot be reached (failover).
    pub relay_urls: Vec<String>,
    /// Where each setting of `relay_url` came from, for `mcp-chat-bridge config`.
    pub relay_source: &'static str,
    /// Display name added to `enter_queue`/`join_room` calls that give none.
    pub display_name: Option<String>,
    /// Use a fresh in-memory identity instead of the stored one.
    pub ephemeral: bool,
    /// Bearer token for the relay.
    pub access_token: Option<String>,
    /// Extra request headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Extra CA certificates (PEM) to trust.
    pub ca_bundle: Option<PathBuf>,
    /// Files and directories.
    pub paths: Paths,
    /// Time between pings to the relay (keeps the session alive and notices a restart).
    pub ping_interval: Duration,
    /// Longest a ping may go unanswered (for time its answer could have been read).
    pub ping_timeout: Duration,
    /// Longest a tool call waits for a connection before failing.
    pub connect_wait: Duration,
    /// Longest `tools/list` waits for the first connection before answering from the contract.
    pub list_wait: Duration,
    /// Time between progress notifications during a long call.
    pub progress_interval: Duration,
    /// Longest the relay may take to answer a chat tool call other than the waits.
    pub chat_call_deadline: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("relay_url", &self.relay_url)
            .field("display_name", &self.display_name)
            .field("ephemeral", &self.ephemeral)
            .field("access_token", &self.access_token.as_ref().map(|_| "<set>"))
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("paths", &self.paths)
            .finish()
    }
}

impl Settings {
    /// The defaults, for the relay nodes `relay_urls` (at least one, unchecked) and `paths`: no
    /// display name, token or extra headers, the stored identity, default timers. For callers
    /// that build settings in code (tests, the fuzz target) and change what they need.
    pub fn defaults(relay_urls: &[&str], paths: Paths) -> Self {
        let relay_urls: Vec<String> = relay_urls.iter().map(|u| (*u).to_owned()).collect();
        Self {
            relay_url: relay_urls.first().cloned().unwrap_or_default(),
            relay_urls,
            relay_source: "code",
            display_name: None,
            ephemeral: false,
            access_token: None,
            headers: Vec::new(),
            ca_bundle: None,
            paths,
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            connect_wait: DEFAULT_CONNECT_WAIT,
            list_wait: DEFAULT_LIST_WAIT,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            chat_call_deadline: DEFAULT_CALL_DEADLINE,
        }
    }

    /// Resolves settings from flags, an environment lookup and the config file in `paths`.
    pub fn resolve(
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
        paths: Paths,
    ) -> Result<Self, SettingsError> {
        let file = load_config_file(&paths.config_file())?;
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());

        let (relay_url, relay_source) = if let Some(url) = nonempty(flags.relay.clone()) {
            (url, "--relay")
        } else if let Some(url) = nonempty(env(ENV_RELAY)) {
            (url, ENV_RELAY)
        } else if let Some(url) = nonempty(file.relay.clone()) {
            (url, "config.toml")
        } else {
            (DEFAULT_RELAY_URL.to_owned(), "default")
        };
        let relay_urls = check_relay_list(&relay_url)?;
        let relay_url = relay_urls[0].clone();

        let display_name = nonempty(flags.display_name.clone())
            .or_else(|| nonempty(env(ENV_DISPLAY_NAME)))
            .or_else(|| nonempty(file.display_name.clone()));
        let ephemeral = flags.ephemeral
            || boolean(env, ENV_EPHEMERAL)?
                .or(file.ephemeral)
                .unwrap_or(false);

        let access_token = match nonempty(env(ENV_ACCESS_TOKEN)) {
            Some(token) => Some(token.trim().to_owned()),
            None => match &file.access_token_file {
                Some(path) => Some(mcp_chat::secrets::read_token_file(path)?),
                None => None,
            },
        };

        let mut headers = Vec::new();
        for (name, value) in &file.headers {
            headers.push(parse_header(name, value)?);
        }
        if let Some(raw) = env(ENV_HEADERS) {
            for pair in raw.split(['\n', ';']).filter(|p| !p.trim().is_empty()) {
                let (name, value) = pair
                    .split_once(':')
                    .ok_or_else(|| SettingsError::Header(pair.trim().to_owned()))?;
                headers.push(parse_header(name, value)?);
            }
        }

        let ca_bundle = env(ENV_CA_BUNDLE)
            .map(PathBuf::from)
            .or(file.ca_bundle.clone());

        Ok(Self {
            relay_url,
            relay_urls,
            relay_source,
            display_name,
            ephemeral,
            access_token,
            headers,
            ca_bundle,
            paths,
            ping_interval: seconds(env, ENV_PING_SECS)?.unwrap_or(DEFAULT_PING_INTERVAL),
            ping_timeout: seconds(env, ENV_PING_TIMEOUT_SECS)?.unwrap_or(DEFAULT_PING_TIMEOUT),
            connect_wait: seconds(env, ENV_CONNECT_WAIT_SECS)?.unwrap_or(DEFAULT_CONNECT_WAIT),
            list_wait: DEFAULT_LIST_WAIT,
            progress_interval: seconds(env, ENV_PROGRESS_SECS)?
                .unwrap_or(DEFAULT_PROGRESS_INTERVAL),
            chat_call_deadline: seconds(env, ENV_CALL_DEADLINE_SECS)?
                .unwrap_or(DEFAULT_CALL_DEADLINE),
        })
    }
}

/// Most relay URLs in one setting.
pub const MAX_RELAY_URLS: usize = 8;

/// A comma-separated list of relay URLs (nodes of one relay, for failover), each checked by
/// [`check_relay_url`].
pub fn check_relay_list(raw: &str) -> Result<Vec<String>, SettingsError> {
    let urls = raw
        .split(',')
        .filter(|part| !part.trim().is_empty())
        .map(check_relay_url)
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() || urls.len() > MAX_RELAY_URLS {
        return Err(SettingsError::RelayUrl(raw.trim().to_owned()));
    }
    Ok(urls)
}

/// The relay URL, trimmed, if it is an absolute `http://` or `https://` URL without a
/// `user:password@` part (credentials belong in the access token, not in a URL that ends up in
/// process arguments and logs).
pub fn check_relay_url(raw: &str) -> Result<String, SettingsError> {
    let url = raw.trim().to_owned();
    let parsed: http::Uri = url
        .parse()
        .map_err(|_| SettingsError::RelayUrl(url.clone()))?;
    let has_userinfo = parsed.authority().is_some_and(|a| a.as_str().contains('@'));
    if !matches!(parsed.scheme_str(), Some("http" | "https"))
        || parsed.host().is_none()
        || has_userinfo
    {
        return Err(SettingsError::RelayUrl(url));
    }
    Ok(url)
}

fn load_config_file(path: &Path) -> Result<ConfigFile, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(e) => {
            return Err(SettingsError::ConfigFile {
                path: path.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    toml::from_str(&text).map_err(|e| SettingsError::ConfigFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// A duration in seconds from the environment variable `name` (fractions allowed); `None`
/// when unset or blank. Anything else that is not a number of seconds above 0 and up to a day is
/// an error: a typo must not quietly become the default.
fn seconds(
    env: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<Duration>, SettingsError> {
    let Some(raw) = env(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match raw.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= MAX_SECONDS => {
            Ok(Some(Duration::from_secs_f64(secs)))
        }
        _ => Err(SettingsError::BadValue {
            name,
            value: raw,
            expected: "a number of seconds above 0 and at most 86400, e.g. 30 or 0.5",
        }),
    }
}

/// A yes/no from the environment variable `name`; `None` when unset or blank.
fn boolean(
    env: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<bool>, SettingsError> {
    let Some(raw) = env(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" => Ok(Some(false)),
        _ => Err(SettingsError::BadValue {
            name,
            value: raw,
            expected: "1, true, yes or on, or 0, false, no or off",
        }),
    }
}

fn parse_header(
    name: &str,
    value: &str,
) -> Result<(http::HeaderName, http::HeaderValue), SettingsError> {
    let bad = || SettingsError::Header(format!("{}: {}", name.trim(), value.trim()));
    let name = http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
    let value = http::HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
    let reserved = [
        mcp_chat::protocol::IDENTITY_HEADER,
        mcp_chat::protocol::LAST_SEQ_HEADER,
        "accept",
        "mcp-session-id",
        "last-event-id",
        "content-type",
    ];
    if reserved.contains(&name.as_str()) {
        return Err(SettingsError::ReservedHeader(name.as_str().to_owned()));
    }
    Ok((name, value))
}

/// Whether an environment value is an MCP Bundle placeholder its host left unfilled: Claude
/// Desktop passes an optional `user_config` field the user left blank as the literal text
/// `${user_config.KEY}` (modelcontextprotocol/mcpb #250). Such a value means "not set".
pub fn unfilled_placeholder(value: &str) -> bool {
    let value = value.trim();
    value.starts_with("${user_config.") && value.ends_with('}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths {
            config_dir: dir.to_owned(),
            log_dir: dir.join("logs"),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("mcp-chat-settings-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn flags_beat_env_beat_file_beat_default() {
        let dir = temp_dir("precedence");
        let none = |_: &str| None;
        let s = Settings::resolve(&Flags::default(), &none, paths(&dir)).unwrap();
        assert_eq!(
            (s.relay_url.as_str(), s.relay_source),
            (DEFAULT_RELAY_URL, "default")
        );

        std::fs::write(
            dir.join("config.toml"),
            "relay = \"https://file.example/mcp\"\n",
        )
        .unwrap();
        let s = Settings::resolve(&Flags::default(), &none, paths(&dir)).unwrap();
        assert_eq!(s.relay_url, "https://file.example/mcp");

        let env = |k: &str| (k == ENV_RELAY).then(|| "https://env.example/mcp".to_owned());
        let s = Settings::resolve(&Flags::default(), &env, paths(&dir)).unwrap();
        assert_eq!(s.relay_url, "https://env.example/mcp");

        let flags = Flags {
            relay: Some("http://flag.example:9/mcp".into()),
            ..Flags::default()
        };
        let s = Settings::resolve(&flags, &env, paths(&dir)).unwrap();
        assert_eq!(
            (s.relay_url.as_str(), s.relay_source),
            ("http://flag.example:9/mcp", "--relay")
        );
    }

    #[test]
    fn several_relay_urls_are_nodes_of_one_relay() {
        let dir = temp_dir("failover");
        let env = |k: &str| {
            (k == ENV_RELAY).then(|| " http://a.example/mcp, https://b.example/mcp ,".to_owned())
        };
        let s = Settings::resolve(&Flags::default(), &env, paths(&dir)).unwrap();
        assert_eq!(s.relay_url, "http://a.example/mcp");
        assert_eq!(
            s.relay_urls,
            ["http://a.example/mcp", "https://b.example/mcp"]
        );
        let bad = |k: &str| (k == ENV_RELAY).then(|| "http://a.example/mcp,ftp://b".to_owned());
        assert!(Settings::resolve(&Flags::default(), &bad, paths(&dir)).is_err());
    }

    #[test]
    fn bad_settings_are_refused_clearly() {
        let dir = temp_dir("bad");
        let flags = Flags {
            relay: Some("ftp://x".into()),
            ..Flags::default()
        };
        assert!(matches!(
            Settings::resolve(&flags, &|_| None, paths(&dir)),
            Err(SettingsError::RelayUrl(_))
        ));
        for header in ["Mcp-Chat-Identity: x", "Mcp-Chat-Last-Seq: 7"] {
            let env = |k: &str| (k == ENV_HEADERS).then(|| header.to_owned());
            assert!(matches!(
                Settings::resolve(&Flags::default(), &env, paths(&dir)),
                Err(SettingsError::ReservedHeader(_))
            ));
        }
        std::fs::write(dir.join("config.toml"), "relay = [").unwrap();
        assert!(matches!(
            Settings::resolve(&Flags::default(), &|_| None, paths(&dir)),
            Err(SettingsError::ConfigFile { .. })
        ));
    }

    #[test]
    fn secrets_come_from_env_or_files() {
        let dir = temp_dir("secrets");
        std::fs::write(dir.join("token"), "file-token\n").unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "access_token_file = {:?}\n[headers]\nX-Team = \"blue\"\n",
                dir.join("token")
            ),
        )
        .unwrap();
        let s = Settings::resolve(&Flags::default(), &|_| None, paths(&dir)).unwrap();
        assert_eq!(s.access_token.as_deref(), Some("file-token"));
        assert_eq!(s.headers[0].0.as_str(), "x-team");
        let env = |k: &str| (k == ENV_ACCESS_TOKEN).then(|| "env-token".to_owned());
        let s = Settings::resolve(&Flags::default(), &env, paths(&dir)).unwrap();
        assert_eq!(s.access_token.as_deref(), Some("env-token"));
        assert!(
            !format!("{s:?}").contains("env-token"),
            "secrets stay out of debug output"
        );
    }

    #[test]
    fn bad_environment_values_are_errors_not_defaults() {
        let dir = temp_dir("bad-values");
        let with = |name: &'static str, value: &'static str| {
            move |k: &str| (k == name).then(|| value.to_owned())
        };
        for (name, value) in [
            (ENV_PING_SECS, "thirty"),
            (ENV_PING_SECS, "0"),
            (ENV_CONNECT_WAIT_SECS, "-1"),
            (ENV_PROGRESS_SECS, "inf"),
            (ENV_CALL_DEADLINE_SECS, "100000"),
            (ENV_EPHEMERAL, "maybe"),
        ] {
            let env = with(name, value);
            let error = Settings::resolve(&Flags::default(), &env, paths(&dir)).unwrap_err();
            assert!(
                matches!(&error, SettingsError::BadValue { name: n, .. } if *n == name),
                "{name}={value}: {error}"
            );
            assert!(error.to_string().contains(name), "{error}");
        }
        let env = with(ENV_PING_SECS, " 0.5 ");
        let s = Settings::resolve(&Flags::default(), &env, paths(&dir)).unwrap();
        assert_eq!(s.ping_interval, Duration::from_millis(500));
        let env = with(ENV_EPHEMERAL, "Off");
        let s = Settings::resolve(&Flags::default(), &env, paths(&dir)).unwrap();
        assert!(!s.ephemeral);
        let env = with(ENV_CALL_DEADLINE_SECS, "");
        let s = Settings::resolve(&Flags::default(), &env, paths(&dir)).unwrap();
        assert_eq!(s.chat_call_deadline, DEFAULT_CALL_DEADLINE);
    }

    #[test]
    fn the_token_file_follows_the_contracts_rule() {
        let dir = temp_dir("token-file");
        let token = dir.join("token");
        std::fs::write(&token, "\u{feff}  file-token \r\n").unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!("access_token_file = {:?}\n", token.display().to_string()),
        )
        .unwrap();
        let none = |_: &str| None;
        let s = Settings::resolve(&Flags::default(), &none, paths(&dir)).unwrap();
        assert_eq!(s.access_token.as_deref(), Some("file-token"));
        std::fs::write(&token, "\n").unwrap();
        let error = Settings::resolve(&Flags::default(), &none, paths(&dir)).unwrap_err();
        assert!(matches!(error, SettingsError::TokenFile(_)), "{error}");
    }

    #[test]
    fn unfilled_bundle_placeholders_count_as_unset() {
        assert!(unfilled_placeholder("${user_config.display_name}"));
        assert!(unfilled_placeholder(" ${user_config.access_token} "));
        assert!(!unfilled_placeholder("Ada"));
        assert!(!unfilled_placeholder("${HOME}"));
        assert!(!unfilled_placeholder("${user_config.x} and more text"));
    }
}
