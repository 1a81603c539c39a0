//! Adding the bridge to a client's configuration file, and removing it, without harming anything
//! else in the file.
//!
//! The file is edited as a concrete syntax tree, so every other server, key, comment and the
//! author's formatting stay byte for byte as they were; only the `mcp-chat` entry changes. A file
//! that does not parse is never written. Before a change the old file is copied to a backup, and
//! the new one replaces it atomically (temporary file in the same directory, then rename), so a
//! crash or a full disk leaves either the old file or the new one, never half of each.
//!
//! JSON and JSON with comments are edited here; Codex's TOML in `toml_config`, Goose's YAML in
//! `yaml_config`.

mod toml_config;
mod yaml_config;

use std::io::Write;
use std::path::{Path, PathBuf};

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstInputValue, CstObject, CstRootNode};
use serde_json::Value;

use crate::clients::{Dialect, ENTRY_NAME, Target};

/// What to do with the `mcp-chat` entry.
#[derive(Debug, Clone)]
pub enum Action {
    /// Add the entry, or bring an existing one up to date.
    Install(Value),
    /// Remove the entry.
    Uninstall,
}

/// What a planned change does to the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The entry is new.
    Added,
    /// An existing entry was changed.
    Updated,
    /// The entry is already as asked; nothing to write.
    Unchanged,
    /// The entry was removed.
    Removed,
    /// There was no entry to remove; nothing to write.
    Absent,
}

/// A change to one file, computed but not yet written.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The file.
    pub path: PathBuf,
    /// Its text now (`None`: the file does not exist).
    pub before: Option<String>,
    /// Its text after the change.
    pub after: String,
    /// What happens to the entry.
    pub outcome: Outcome,
}

/// Why a file was not changed.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid JSON (or JSONC, for clients that allow comments).
    #[error("{path} is not valid {dialect} ({reason}); the client cannot read it either")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// `JSON` or `JSON with comments`.
        dialect: &'static str,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// The file parses, but not in the shape the client uses.
    #[error("{path}: {what}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is unexpected.
        what: String,
    },
    /// Writing the backup or the new file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file changed between reading and writing (the client itself may have saved it).
    #[error("{0} changed while it was being edited (by the client?); run this again")]
    Concurrent(PathBuf),
}

/// Reads `target`'s file and computes what `action` changes in it.
pub fn plan(target: &Target, action: &Action) -> Result<Plan, EditError> {
    match target.dialect {
        Dialect::Json | Dialect::Jsonc => plan_json(target, action),
        Dialect::Toml => toml_config::plan(target, action),
        Dialect::Yaml => yaml_config::plan(target, action),
    }
}

fn plan_json(target: &Target, action: &Action) -> Result<Plan, EditError> {
    let before = read_optional(&target.path)?;
    let (bom, body) = split_bom(before.as_deref().unwrap_or(""));
    // A missing or blank file is an empty configuration.
    let source = if body.trim().is_empty() { "{}\n" } else { body };
    let root = parse(&target.path, target.dialect, source)?;
    let root_object = match root.value() {
        Some(value) => value.as_object().ok_or_else(|| EditError::Shape {
            path: target.path.clone(),
            what: "the top level is not an object".to_owned(),
        })?,
        None => root.object_value_or_set(),
    };
    // The object that holds the servers: the top level, or one inside it (Claude Code's local
    // scope). Install creates the way there; uninstall finds nothing to do without it.
    let mut holder = Some(root_object);
    for key in &target.within {
        let Some(object) = holder else { break };
        // JSON.parse keeps the last of duplicate keys, the syntax tree edits the first: refuse.
        check_unique(target, &object, key)?;
        holder = match action {
            Action::Install(_) => Some(
                object
                    .object_value_or_create(key)
                    .ok_or_else(|| not_an_object(target, key))?,
            ),
            Action::Uninstall => match object.get(key) {
                Some(prop) => Some(
                    prop.value()
                        .and_then(|v| v.as_object())
                        .ok_or_else(|| not_an_object(target, key))?,
                ),
                None => None,
            },
        };
    }
    if let Some(holder) = &holder {
        check_unique(target, holder, target.servers_key)?;
        if let Some(servers) = holder.object_value(target.servers_key) {
            check_unique(target, &servers, ENTRY_NAME)?;
        }
    }
    let outcome = match (action, &holder) {
        (Action::Install(entry), Some(holder)) => install_entry(target, holder, entry)?,
        (Action::Uninstall, Some(holder)) => uninstall_entry(target, holder)?,
        (_, None) => Outcome::Absent,
    };
    let after = if matches!(outcome, Outcome::Unchanged | Outcome::Absent) {
        before.clone().unwrap_or_default()
    } else {
        let mut text = format!("{bom}{root}");
        if !text.ends_with('\n') {
            text.push_str(if body.contains("\r\n") { "\r\n" } else { "\n" });
        }
        // Belt and braces: never write what the client could not read back.
        parse(&target.path, target.dialect, split_bom(&text).1)?;
        text
    };
    Ok(Plan {
        path: target.path.clone(),
        before,
        after,
        outcome,
    })
}

/// The entry currently in `target`'s file, if the file exists and has one.
pub fn read_entry(target: &Target) -> Result<Option<Value>, EditError> {
    let Some(text) = read_optional(&target.path)? else {
        return Ok(None);
    };
    let body = split_bom(&text).1;
    if body.trim().is_empty() {
        return Ok(None);
    }
    match target.dialect {
        Dialect::Json | Dialect::Jsonc => {}
        Dialect::Toml => return toml_config::read_entry(target, body),
        Dialect::Yaml => return yaml_config::read_entry(target, body),
    }
    let root = parse(&target.path, target.dialect, body)?;
    let mut holder = root.object_value();
    for key in &target.within {
        holder = holder.and_then(|o| o.object_value(key));
    }
    Ok(holder
        .and_then(|o| o.object_value(target.servers_key))
        .and_then(|servers| servers.get(ENTRY_NAME))
        .and_then(|prop| prop.value())
        .and_then(|value| value.to_serde_value()))
}

/// The whole of a JSON-with-comments file, if it exists and parses (doctor reads clients' other
/// settings with it).
pub fn read_jsonc(path: &Path) -> Option<Value> {
    let text = read_optional(path).ok()??;
    let root = parse(path, Dialect::Jsonc, split_bom(&text).1).ok()?;
    root.value()?.to_serde_value()
}

fn check_unique(target: &Target, object: &CstObject, key: &str) -> Result<(), EditError> {
    let count = object
        .properties()
        .iter()
        .filter(|p| p.decoded_name().as_deref() == Some(key))
        .count();
    if count > 1 {
        return Err(EditError::Shape {
            path: target.path.clone(),
            what: format!("\"{key}\" appears {count} times; keep one"),
        });
    }
    Ok(())
}

/// Keys of a remote (HTTP) server entry. An entry switched to launching the bridge loses them:
/// left in place, a client could go on using the remote transport. (Codex: `url` and its
/// `bearer_token_env_var`, `http_headers`, `env_http_headers`; Goose: `uri`, `headers`,
/// `socket`.)
const REMOTE_KEYS: [&str; 10] = [
    "url",
    "serverUrl",
    "httpUrl",
    "headers",
    "transport",
    "bearer_token_env_var",
    "http_headers",
    "env_http_headers",
    "uri",
    "socket",
];

/// Keys of an existing entry that are the user's once there, even where our entry has them too:
/// the bridge's environment (an access token), and whether and how long the client runs it.
const USER_KEYS: [&str; 7] = [
    "env",
    "environment",
    "envs",
    "env_keys",
    "enabled",
    "timeout",
    "description",
];

/// Whether an existing entry's key goes: a remote transport's, or a `type` other than stdio
/// when our entry names none.
fn is_remote_key(key: &str, value: Option<&Value>, ours: &serde_json::Map<String, Value>) -> bool {
    REMOTE_KEYS.contains(&key)
        || (key == "type" && !ours.contains_key("type") && value != Some(&Value::from("stdio")))
}

/// `existing` brought up to date with `ours` by the rules of [`install_entry`], as a value.
fn merged_entry(existing: &Value, ours: &Value) -> Value {
    let ours = ours.as_object().cloned().unwrap_or_default();
    let Some(existing) = existing.as_object() else {
        return Value::Object(ours);
    };
    let mut merged: serde_json::Map<String, Value> = existing
        .iter()
        .filter(|(k, v)| !is_remote_key(k, Some(v), &ours))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in ours {
        if !(merged.contains_key(&key) && USER_KEYS.contains(&key.as_str())) {
            merged.insert(key, value);
        }
    }
    Value::Object(merged)
}

/// Adds the entry, or brings an existing one up to date while keeping what the user added to it
/// (an `env` with their access token, `disabled`, ...).
fn install_entry(target: &Target, root: &CstObject, entry: &Value) -> Result<Outcome, EditError> {
    let servers = servers_object(target, root)?;
    let Some(prop) = servers.get(ENTRY_NAME) else {
        servers.append(ENTRY_NAME, to_input(entry));
        return Ok(Outcome::Added);
    };
    let Some(existing) = prop.value().and_then(|v| v.as_object()) else {
        prop.set_value(to_input(entry));
        return Ok(Outcome::Updated);
    };
    let mut changed = false;
    let ours = entry.as_object().cloned().unwrap_or_default();
    for prop in existing.properties() {
        let Some(name) = prop.decoded_name() else {
            continue;
        };
        let value = prop.value().and_then(|v| v.to_serde_value());
        if is_remote_key(&name, value.as_ref(), &ours) {
            prop.remove();
            changed = true;
        }
    }
    for (key, value) in &ours {
        match existing.get(key) {
            // The user's own environment for the bridge is theirs, and so on.
            Some(_) if USER_KEYS.contains(&key.as_str()) => {}
            Some(current)
                if current.value().and_then(|v| v.to_serde_value()).as_ref() == Some(value) => {}
            Some(current) => {
                current.set_value(to_input(value));
                changed = true;
            }
            None => {
                existing.append(key, to_input(value));
                changed = true;
            }
        }
    }
    Ok(if changed {
        Outcome::Updated
    } else {
        Outcome::Unchanged
    })
}

fn uninstall_entry(target: &Target, root: &CstObject) -> Result<Outcome, EditError> {
    let Some(servers) = root.get(target.servers_key) else {
        return Ok(Outcome::Absent);
    };
    let servers = servers
        .value()
        .and_then(|v| v.as_object())
        .ok_or_else(|| not_an_object(target, target.servers_key))?;
    match servers.get(ENTRY_NAME) {
        Some(prop) => {
            prop.remove();
            Ok(Outcome::Removed)
        }
        None => Ok(Outcome::Absent),
    }
}

fn servers_object(target: &Target, root: &CstObject) -> Result<CstObject, EditError> {
    root.object_value_or_create(target.servers_key)
        .ok_or_else(|| not_an_object(target, target.servers_key))
}

fn not_an_object(target: &Target, key: &str) -> EditError {
    EditError::Shape {
        path: target.path.clone(),
        what: format!("\"{key}\" is not an object"),
    }
}

/// Writes `plan` (unless it changes nothing) and returns the backup of the old file, if there was
/// one.
pub fn apply(plan: &Plan) -> Result<Option<PathBuf>, EditError> {
    if matches!(plan.outcome, Outcome::Unchanged | Outcome::Absent) {
        return Ok(None);
    }
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| EditError::Write { path, source }
    };
    // Follow a symlinked config (dotfile managers): replace the file it points to, not the link.
    let real = match &plan.before {
        Some(_) => std::fs::canonicalize(&plan.path).map_err(write_error(&plan.path))?,
        None => plan.path.clone(),
    };
    if read_optional(&real)? != plan.before {
        return Err(EditError::Concurrent(plan.path.clone()));
    }
    if plan.before.is_some() && std::fs::metadata(&real).is_ok_and(|m| m.permissions().readonly()) {
        return Err(EditError::Shape {
            path: plan.path.clone(),
            what: "the file is read-only; make it writable if it may be changed".to_owned(),
        });
    }
    let dir = real
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    let backup = match &plan.before {
        Some(_) => {
            let backup = backup_path(&real);
            std::fs::copy(&real, &backup).map_err(write_error(&backup))?;
            Some(backup)
        }
        None => None,
    };
    let file_name = real.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{file_name}.mcp-chat-{}.tmp", std::process::id()));
    let result = write_new(&temp, &real, plan.after.as_bytes(), plan.before.is_some())
        .and_then(|()| std::fs::rename(&temp, &real));
    if let Err(source) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(EditError::Write { path: real, source });
    }
    Ok(backup)
}

/// Creates `temp` with `bytes`, flushed to disk, with the permissions of `original` if it exists.
/// A new file is private (0600 on Unix): client configs hold account data and tokens, and the
/// rename carries the temporary file's mode over to the real one.
fn write_new(temp: &Path, original: &Path, bytes: &[u8], keep_mode: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(temp)?;
    if keep_mode {
        file.set_permissions(std::fs::metadata(original)?.permissions())?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

/// `<file>.mcp-chat-backup-<UTC date and time>` next to the file; a counter if that exists.
fn backup_path(real: &Path) -> PathBuf {
    let stamp = utc_stamp(std::time::SystemTime::now());
    let base = format!(
        "{}.mcp-chat-backup-{stamp}",
        real.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut candidate = real.with_file_name(&base);
    let mut n = 2;
    while candidate.exists() {
        candidate = real.with_file_name(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = mcp_chat::render::civil_date(days as i64);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A line diff of a plan: unchanged lines around the change as context, `-` before, `+` after.
pub fn diff(plan: &Plan) -> String {
    const CONTEXT: usize = 3;
    let before: Vec<&str> = plan.before.as_deref().unwrap_or("").lines().collect();
    let after: Vec<&str> = plan.after.lines().collect();
    let prefix = before
        .iter()
        .zip(&after)
        .take_while(|(a, b)| a == b)
        .count();
    let suffix = before[prefix..]
        .iter()
        .rev()
        .zip(after[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = String::new();
    let old_name = match plan.before {
        Some(_) => plan.path.display().to_string(),
        None => "/dev/null (new file)".to_owned(),
    };
    out.push_str(&format!("--- {old_name}\n+++ {}\n", plan.path.display()));
    for line in &before[prefix.saturating_sub(CONTEXT)..prefix] {
        out.push_str(&format!("  {line}\n"));
    }
    for line in &before[prefix..before.len() - suffix] {
        out.push_str(&format!("- {line}\n"));
    }
    for line in &after[prefix..after.len() - suffix] {
        out.push_str(&format!("+ {line}\n"));
    }
    let tail = before.len() - suffix;
    for line in &before[tail..(tail + CONTEXT).min(before.len())] {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

fn read_optional(path: &Path) -> Result<Option<String>, EditError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| EditError::Malformed {
                path: path.to_owned(),
                dialect: "UTF-8 text",
                reason: "it contains bytes that are not UTF-8".to_owned(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EditError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A UTF-8 byte-order mark (Windows editors write one) and the rest.
fn split_bom(text: &str) -> (&'static str, &str) {
    match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    }
}

fn parse(path: &Path, dialect: Dialect, text: &str) -> Result<CstRootNode, EditError> {
    let jsonc = dialect == Dialect::Jsonc;
    // Only what each client itself accepts: strict JSON, or JSON with comments and trailing
    // commas (VS Code, Zed). Anything looser would be "fixed" into a file the client rejects.
    let options = ParseOptions {
        allow_comments: jsonc,
        allow_trailing_commas: jsonc,
        allow_loose_object_property_names: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    let malformed = |reason: String| EditError::Malformed {
        path: path.to_owned(),
        dialect: if jsonc { "JSON with comments" } else { "JSON" },
        reason,
    };
    // The syntax tree keeps comments whatever the options say; strict JSON is what serde_json
    // accepts.
    if !jsonc && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Err(malformed(e.to_string()));
    }
    CstRootNode::parse(text, &options).map_err(|e| malformed(e.to_string()))
}

fn to_input(value: &Value) -> CstInputValue {
    match value {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(s.clone()),
        Value::Array(items) => CstInputValue::Array(items.iter().map(to_input).collect()),
        Value::Object(map) => {
            // serde_json sorts keys; write entries the way people write them by hand.
            const FIRST: [&str; 5] = ["type", "source", "command", "args", "env"];
            let rank = |k: &str| FIRST.iter().position(|f| *f == k).unwrap_or(FIRST.len());
            let mut props: Vec<_> = map.iter().collect();
            props.sort_by_key(|(k, _)| rank(k));
            CstInputValue::Object(
                props
                    .into_iter()
                    .map(|(k, v)| (k.clone(), to_input(v)))
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        let at = |secs| utc_stamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "19700101-000000");
        assert_eq!(at(951_782_400), "20000229-000000");
        assert_eq!(at(1_795_305_600 + 3_723), "20261122-010203");
    }
}
