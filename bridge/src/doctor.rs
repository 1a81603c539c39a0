//! `mcp-chat-bridge doctor`: checks what stands between the user and a chat, and says how to fix
//! each problem: client entries, the binary they launch, the bridge's own files, the relay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

use crate::clients::{self, ALL_CLIENTS, Client, HostDirs, Overlap, Scope, Target};
use crate::identity;
use crate::install;
use crate::settings::{
    DEFAULT_RELAY_URL, ENV_ACCESS_TOKEN, ENV_RELAY, Paths, Settings, SettingsError,
};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Worth knowing; nothing to fix.
    Info,
    /// Works, but probably not as intended.
    Warn,
    /// Broken: chatting will not work this way.
    Fail,
}

impl Status {
    /// Fixed-width tag for the report.
    pub fn tag(self) -> &'static str {
        match self {
            Status::Ok => "[ok]  ",
            Status::Info => "[--]  ",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// Outcome.
    pub status: Status,
    /// What was checked.
    pub subject: String,
    /// What was found.
    pub detail: String,
    /// What to do about it, when there is something to do.
    pub fix: Option<String>,
}

impl Check {
    fn new(status: Status, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status,
            subject: subject.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Runs every check. `exe` is this bridge's own path; `settings` is what a client launching it
/// with no arguments would get.
pub async fn run(
    exe: Option<&Path>,
    settings: Result<Settings, SettingsError>,
    paths: &Paths,
    dirs: &HostDirs<'_>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    match exe {
        Some(exe) => checks.push(Check::new(
            Status::Ok,
            "bridge",
            format!("{} (version {})", exe.display(), env!("CARGO_PKG_VERSION")),
        )),
        None => checks.push(Check::new(
            Status::Warn,
            "bridge",
            "cannot tell where this executable is",
        )),
    }

    let mut user_entries = Vec::new();
    for client in ALL_CLIENTS {
        // Every place the client reads, the one that wins a name clash first.
        let mut found = Vec::new();
        for target in client.places(dirs) {
            let reported = match target.scope {
                Scope::User => true,
                // A project file is only of interest where the user has one.
                Scope::Project => target.path.exists(),
                // The local scope lives in the user's file, whose line already says whether
                // it parses: only an entry there is news.
                Scope::Local => install::read_entry(&target).is_ok_and(|e| e.is_some()),
            };
            if !reported {
                continue;
            }
            let (check, entry) = check_client(&target, exe);
            checks.push(check);
            if let Some(entry) = entry {
                found.push((target, entry));
            }
        }
        checks.extend(check_overlap(client, &found));
        if client == Client::Gemini && !found.is_empty() {
            checks.extend(check_gemini_trust(dirs));
        }
        for (target, entry) in found {
            // Relays named in a project's files (a cloned repository's) are not contacted:
            // the user has not approved them, and the probe would carry the access token.
            if target.scope != Scope::Project {
                user_entries.push(entry);
            }
        }
    }

    match &settings {
        Ok(_) => {
            let file = paths.config_file();
            let detail = if file.exists() {
                format!("{} is valid", file.display())
            } else {
                format!("no {} (defaults apply)", file.display())
            };
            checks.push(Check::new(Status::Ok, "settings", detail));
        }
        Err(error) => checks.push(
            Check::new(Status::Fail, "settings", error.to_string())
                .fix("correct the setting; `mcp-chat-bridge config` shows where each comes from"),
        ),
    }

    checks.extend(check_identity(&paths.config_dir));

    if let Ok(settings) = &settings {
        // Each relay as the bridge an entry launches would reach it: the entry's --relay or
        // environment over the user's settings, and the access token that bridge would send.
        let mut relays = BTreeMap::new();
        for entry in &user_entries {
            let url = clients::entry_relay(entry)
                .map(str::to_owned)
                .or_else(|| entry_env(entry, ENV_RELAY))
                .unwrap_or_else(|| settings.relay_url.clone());
            let token = entry_env(entry, ENV_ACCESS_TOKEN).or(settings.access_token.clone());
            // Every node of a failover list.
            for node in url.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                relays.entry(node.to_owned()).or_insert(token.clone());
            }
        }
        if relays.is_empty() {
            for node in &settings.relay_urls {
                relays.insert(node.clone(), settings.access_token.clone());
            }
        }
        for (relay, token) in relays {
            let mut settings = settings.clone();
            settings.access_token = token;
            checks.push(check_relay(settings, &relay).await);
        }
    }
    checks
}

/// How the report names one place of a client.
fn place_subject(target: &Target) -> String {
    let name = target.client.display_name();
    match target.scope {
        Scope::User => name.to_owned(),
        Scope::Project => format!("{name} (this project)"),
        Scope::Local => format!("{name} (local, this folder)"),
    }
}

/// The file of one place, and where in it when that is not the top level.
fn place_path(target: &Target) -> String {
    let path = target.path.display();
    match target.within.as_slice() {
        [] => path.to_string(),
        [outer, inner] => format!("{path} ({outer}[{inner:?}])"),
        keys => format!("{path} ({})", keys.join(".")),
    }
}

/// The command that (re)installs the entry in one place.
fn install_command(target: &Target, verb: &str) -> String {
    let client = target.client.flag_value();
    match target.scope {
        Scope::User => format!("mcp-chat-bridge {verb} --client {client}"),
        scope => format!(
            "mcp-chat-bridge {verb} --client {client} --scope {}",
            scope.label()
        ),
    }
}

/// Entries named `mcp-chat` in more than one place of a client (`found`, in the client's order
/// of precedence): which one the client uses, and whether the others differ from it.
fn check_overlap(client: Client, found: &[(Target, Value)]) -> Option<Check> {
    let [(winner, used), rest @ ..] = found else {
        return None;
    };
    if rest.is_empty() {
        return None;
    }
    let subject = client.display_name();
    let places: Vec<&str> = found.iter().map(|(t, _)| t.scope.label()).collect();
    let count = match found.len() {
        2 => "two".to_owned(),
        n => n.to_string(),
    };
    let where_ = places.join(", ");
    // Which entry to keep is the user's call; say how to remove each.
    let removals = format!(
        "keep one: {}",
        found
            .iter()
            .map(|(t, _)| format!(
                "`{}` removes the {} one",
                install_command(t, "uninstall"),
                t.scope.label()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let check = match client.overlap() {
        Overlap::Both => Check::new(
            Status::Warn,
            subject,
            format!(
                "{count} entries named mcp-chat ({where_}): {subject} starts each of them, \
                 so every chat tool appears twice"
            ),
        )
        .fix(removals),
        Overlap::FirstWins => {
            let same = rest.iter().all(|(_, other)| same_launch(used, other));
            let detail = format!(
                "{count} entries named mcp-chat ({where_}): the {} one wins, {} uses {}{}",
                winner.scope.label(),
                subject,
                place_path(winner),
                if same {
                    " (the others launch the same)"
                } else {
                    "; the others are ignored"
                },
            );
            if same {
                Check::new(Status::Info, subject, detail)
            } else {
                Check::new(Status::Warn, subject, detail).fix(removals)
            }
        }
    };
    Some(check)
}

/// Gemini CLI starts no MCP server in a folder it does not trust (its "safe mode"); whether it
/// trusts the current one. Rules from https://geminicli.com/docs/cli/trusted-folders and
/// `packages/cli/src/config/trustedFolders.ts` (google-gemini/gemini-cli): the file maps a path
/// to `TRUST_FOLDER` (it and everything below it), `TRUST_PARENT` (its parent and everything
/// below that) or `DO_NOT_TRUST`; the feature is off only with `security.folderTrust.enabled`
/// false in the user's settings.
fn check_gemini_trust(dirs: &HostDirs<'_>) -> Option<Check> {
    let subject = "Gemini CLI";
    let gemini_dir = dirs.home.as_ref()?.join(".gemini");
    let read = |path: &Path| install::read_jsonc(path);
    let settings = read(&gemini_dir.join("settings.json")).unwrap_or_default();
    if settings["security"]["folderTrust"]["enabled"] == Value::Bool(false) {
        return None;
    }
    let file = (dirs.env)("GEMINI_CLI_TRUSTED_FOLDERS_PATH")
        .filter(|p| !p.trim().is_empty())
        .map_or_else(|| gemini_dir.join("trustedFolders.json"), PathBuf::from);
    let rules = read(&file).unwrap_or_default();
    let cwd = &dirs.cwd;
    let mut trusted = false;
    let mut distrusted = false;
    for (path, level) in rules.as_object().into_iter().flatten() {
        let path = Path::new(path);
        match level.as_str() {
            Some("TRUST_FOLDER") => trusted |= cwd.starts_with(path),
            Some("TRUST_PARENT") => {
                trusted |= path.parent().is_some_and(|parent| cwd.starts_with(parent));
            }
            Some("DO_NOT_TRUST") => distrusted |= cwd == path,
            _ => {}
        }
    }
    let here = cwd.display();
    Some(if trusted {
        Check::new(
            Status::Ok,
            subject,
            format!("trusts this folder ({here}), so it starts MCP servers here"),
        )
    } else if distrusted {
        Check::new(
            Status::Warn,
            subject,
            format!(
                "{here} is marked untrusted in {}: Gemini CLI starts no MCP server here",
                file.display()
            ),
        )
        .fix("run `gemini` in the folder and trust it with `/permissions`, or edit that file")
    } else {
        Check::new(
            Status::Info,
            subject,
            format!(
                "starts MCP servers only in folders you trust; {here} is not trusted yet                  ({} has no rule for it)",
                file.display()
            ),
        )
        .fix("run `gemini` in a folder you work in and choose \"Trust folder\"")
    })
}

/// Whether two entries start the same bridge the same way.
fn same_launch(a: &Value, b: &Value) -> bool {
    clients::entry_command(a) == clients::entry_command(b)
        && clients::entry_args(a) == clients::entry_args(b)
}

/// The entry of one client: present, launching an existing bridge, this one. Also returns the
/// entry.
fn check_client(target: &Target, exe: Option<&Path>) -> (Check, Option<Value>) {
    let subject = place_subject(target);
    let install_cmd = install_command(target, "install");
    let path = place_path(target);
    let entry = match install::read_entry(target) {
        Ok(Some(entry)) => entry,
        Ok(None) if !target.path.exists() => {
            let check = Check::new(Status::Info, subject, format!("not set up (no {path})"));
            return (check, None);
        }
        Ok(None) => {
            let check = Check::new(
                Status::Info,
                subject,
                format!("{path} has no mcp-chat entry"),
            )
            .fix(install_cmd);
            return (check, None);
        }
        Err(error) => {
            let check = Check::new(Status::Fail, subject, error.to_string())
                .fix("repair the file by hand; install refuses to edit a file that does not parse");
            return (check, None);
        }
    };
    let Some(command) = clients::entry_command(&entry) else {
        let check = Check::new(
            Status::Fail,
            subject,
            format!("{path}: the entry has no command"),
        )
        .fix(install_cmd);
        return (check, Some(entry));
    };
    let check = if clients::entry_disabled(&entry) {
        Check::new(
            Status::Warn,
            subject,
            format!("{path}: the entry is disabled"),
        )
        .fix("enable mcp-chat in the client's MCP settings")
    } else if !command.is_file() {
        Check::new(
            Status::Fail,
            subject,
            format!("launches {}, which does not exist", command.display()),
        )
        .fix(install_cmd)
    } else if !is_executable(command) {
        Check::new(
            Status::Fail,
            subject,
            format!("launches {}, which is not executable", command.display()),
        )
        .fix(format!("chmod +x {}", command.display()))
    } else if exe.is_some_and(|exe| !same_file(exe, command)) {
        Check::new(
            Status::Warn,
            subject,
            format!("launches another copy of the bridge: {}", command.display()),
        )
        .fix(format!("{install_cmd}   (to launch this one instead)"))
    } else {
        Check::new(Status::Ok, subject, format!("{path} launches this bridge"))
    };
    (check, Some(entry))
}

fn entry_env(entry: &Value, key: &str) -> Option<String> {
    clients::entry_env(entry, key)
        .filter(|v| !v.trim().is_empty())
        .map(str::to_owned)
}

/// Identity files: readable by their owner only, and holding a usable token.
fn check_identity(dir: &Path) -> Vec<Check> {
    let slots: Vec<PathBuf> = (1..=identity::MAX_SLOTS)
        .map(|slot| identity::slot_path(dir, slot))
        .filter(|path| path.exists())
        .collect();
    if slots.is_empty() {
        return vec![Check::new(
            Status::Info,
            "identity",
            format!(
                "none yet; the first run creates {}",
                dir.join("identity").display()
            ),
        )];
    }
    slots
        .into_iter()
        .map(|path| {
            let shown = path.display().to_string();
            let token = std::fs::read_to_string(&path).map(|t| t.trim().to_owned());
            match token {
                Err(error) => Check::new(Status::Fail, "identity", format!("{shown}: {error}"))
                    .fix(format!("make {shown} readable by you, or delete it")),
                Ok(token) if !identity::is_valid_token(&token) => Check::new(
                    Status::Warn,
                    "identity",
                    format!("{shown} holds no usable token; the next run replaces it"),
                ),
                Ok(_) => match group_or_world_access(&path) {
                    Some(mode) => Check::new(
                        Status::Fail,
                        "identity",
                        format!("{shown} can be read by other users (mode {mode:o})"),
                    )
                    .fix(format!("chmod 600 {shown}")),
                    None => Check::new(Status::Ok, "identity", format!("{shown} is private")),
                },
            }
        })
        .collect()
}

async fn check_relay(mut settings: Settings, relay: &str) -> Check {
    let subject = format!("relay {relay}");
    settings.relay_url = match crate::settings::check_relay_url(relay) {
        Ok(url) => {
            settings.relay_urls = vec![url.clone()];
            url
        }
        Err(error) => {
            return Check::new(Status::Fail, subject, error.to_string())
                .fix("use the relay's full MCP URL, e.g. https://chat.example.org/mcp");
        }
    };
    let started = Instant::now();
    match crate::upstream::probe(&settings).await {
        Ok(server) => {
            let elapsed = started.elapsed().as_millis();
            let info = &server["serverInfo"];
            let name = info["name"].as_str().unwrap_or("?");
            let version = info["version"].as_str().unwrap_or("?");
            let protocol = server["protocolVersion"].as_str().unwrap_or("?");
            let detail = format!("{name} {version}, protocol {protocol}, answered in {elapsed} ms");
            if name != "mcp-chat-relay" {
                Check::new(Status::Warn, subject, detail)
                    .fix("this MCP server is not an mcp-chat relay; check the URL")
            } else if minor_version(version) != minor_version(env!("CARGO_PKG_VERSION")) {
                Check::new(Status::Warn, subject, detail).fix(format!(
                    "the bridge is {}; update the older of the two if tools misbehave",
                    env!("CARGO_PKG_VERSION")
                ))
            } else {
                Check::new(Status::Ok, subject, detail)
            }
        }
        Err(cause) => {
            let fix = if relay == DEFAULT_RELAY_URL {
                "start a relay here (`mcp-chat-relay`), or point the bridge at one with \
                 `install --relay URL` or MCP_CHAT_RELAY"
                    .to_owned()
            } else {
                "check the URL, your network and proxy (HTTPS_PROXY), and for a private relay \
                 MCP_CHAT_ACCESS_TOKEN; the bridge log has details"
                    .to_owned()
            };
            Check::new(Status::Fail, subject, cause.to_string()).fix(fix)
        }
    }
}

/// `major.minor` of a version; the contract changes only with these.
fn minor_version(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// The file's mode when its group or others have any access to it.
#[cfg(unix)]
fn group_or_world_access(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Windows: the profile directory's ACL keeps other users out; nothing to check by mode.
#[cfg(not(unix))]
fn group_or_world_access(_path: &Path) -> Option<u32> {
    None
}
