//! Goose's `config.yaml`: the `mcp-chat` entry under `extensions`.
//!
//! No Rust YAML library writes a file back with its comments, so the edit is line-based and
//! narrow: only the lines of our own entry are replaced, added or removed, in the block style
//! Goose itself writes. A YAML parser (`yaml-rust2`) reads the file before the edit and the
//! result after it, and the result is written only if it holds exactly the entry asked for and
//! everything else parses to the same values as before.
//!
//! Shape checked against `ExtensionConfig::Stdio` in `crates/goose/src/agents/extension.rs`
//! (aaif-goose/goose) and https://block.github.io/goose/docs/guides/config-files.

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use super::{Action, EditError, Outcome, Plan, merged_entry, read_optional, split_bom};
use crate::clients::{ENTRY_NAME, Target};

pub(super) fn plan(target: &Target, action: &Action) -> Result<Plan, EditError> {
    let before = read_optional(&target.path)?;
    let (bom, body) = split_bom(before.as_deref().unwrap_or(""));
    let root = load(target, body)?;
    let existing = entry_of(&root, target.servers_key);
    let (wanted, outcome) = match (action, &existing) {
        (Action::Install(ours), Some(existing)) => {
            let wanted = merged_entry(existing, ours);
            let outcome = if &wanted == existing {
                Outcome::Unchanged
            } else {
                Outcome::Updated
            };
            (Some(wanted), outcome)
        }
        (Action::Install(ours), None) => (Some(ours.clone()), Outcome::Added),
        (Action::Uninstall, Some(_)) => (None, Outcome::Removed),
        (Action::Uninstall, None) => (None, Outcome::Absent),
    };
    let after = if matches!(outcome, Outcome::Unchanged | Outcome::Absent) {
        before.clone().unwrap_or_default()
    } else {
        let present =
            matches!(&root, Yaml::Hash(top) if top.contains_key(&key(target.servers_key)));
        let text = format!("{bom}{}", edit(target, body, wanted.as_ref(), present)?);
        verify(target, &root, split_bom(&text).1, wanted.as_ref())?;
        text
    };
    Ok(Plan {
        path: target.path.clone(),
        before,
        after,
        outcome,
    })
}

pub(super) fn read_entry(target: &Target, body: &str) -> Result<Option<Value>, EditError> {
    Ok(entry_of(&load(target, body)?, target.servers_key))
}

/// The file's one document (`Null` when it is empty); refuses anything but a mapping.
fn load(target: &Target, text: &str) -> Result<Yaml, EditError> {
    let mut docs = YamlLoader::load_from_str(text).map_err(|e| EditError::Malformed {
        path: target.path.clone(),
        dialect: "YAML",
        reason: e.to_string(),
    })?;
    let shape = |what: &str| EditError::Shape {
        path: target.path.clone(),
        what: what.to_owned(),
    };
    if docs.len() > 1 {
        return Err(shape(
            "the file holds several YAML documents; Goose reads one",
        ));
    }
    let root = docs.pop().unwrap_or(Yaml::Null);
    match &root {
        Yaml::Null => {}
        Yaml::Hash(top) => match top.get(&key(target.servers_key)) {
            None | Some(Yaml::Null | Yaml::Hash(_)) => {}
            Some(_) => {
                return Err(shape(&format!(
                    "\"{}\" is not a mapping",
                    target.servers_key
                )));
            }
        },
        _ => return Err(shape("the top level is not a mapping")),
    }
    Ok(root)
}

fn key(name: &str) -> Yaml {
    Yaml::String(name.to_owned())
}

fn entry_of(root: &Yaml, servers_key: &str) -> Option<Value> {
    match &root[servers_key][ENTRY_NAME] {
        Yaml::BadValue => None,
        entry => Some(to_json(entry)),
    }
}

/// `root` without our entry: what must not change.
fn without_entry(root: &Yaml, servers_key: &str) -> Yaml {
    let mut root = root.clone();
    if let Yaml::Hash(top) = &mut root {
        match top.get_mut(&key(servers_key)) {
            Some(Yaml::Hash(servers)) => {
                servers.remove(&key(ENTRY_NAME));
                // `extensions:` with nothing under it is null; we write `{}`. The same.
                if servers.is_empty() {
                    top.remove(&key(servers_key));
                }
            }
            Some(Yaml::Null) => {
                top.remove(&key(servers_key));
            }
            _ => {}
        }
        if top.is_empty() {
            return Yaml::Null;
        }
    }
    root
}

/// The edited text must parse, hold `wanted` as our entry, and equal the old file elsewhere.
fn verify(
    target: &Target,
    before: &Yaml,
    text: &str,
    wanted: Option<&Value>,
) -> Result<(), EditError> {
    let after = load(target, text)?;
    let entry = entry_of(&after, target.servers_key);
    if entry.as_ref() != wanted
        || without_entry(&after, target.servers_key) != without_entry(before, target.servers_key)
    {
        return Err(EditError::Shape {
            path: target.path.clone(),
            what: format!(
                "its layout is one the installer cannot edit safely; add the entry to \
                 \"{}\" by hand",
                target.servers_key
            ),
        });
    }
    Ok(())
}

/// How the line that opens the servers mapping looks.
enum Header {
    /// `extensions:`, the entries on the lines below.
    Block,
    /// `extensions: {}`, `extensions: null` or `extensions: ~`.
    Empty,
}

fn header(line: &str, servers_key: &str) -> Option<Header> {
    let rest = line.strip_prefix(servers_key)?.trim_start();
    let rest = rest.strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let value = rest.split(" #").next().unwrap_or("").trim();
    match value {
        "" => Some(Header::Block),
        "{}" | "null" | "~" => Some(Header::Empty),
        _ if value.starts_with('#') => Some(Header::Block),
        _ => None,
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim();
    !trimmed.is_empty() && !trimmed.starts_with('#')
}

/// Whether `line` (at the entries' indentation) opens the entry named `name`.
fn opens_entry(line: &str, name: &str) -> bool {
    let line = line.trim_start();
    [
        format!("{name}:"),
        format!("\"{name}\":"),
        format!("'{name}':"),
    ]
    .iter()
    .any(|start| {
        line.strip_prefix(start.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    })
}

/// The text with our entry set to `wanted` (or removed, for `None`). `present`: the file has the
/// servers key.
fn edit(
    target: &Target,
    body: &str,
    wanted: Option<&Value>,
    present: bool,
) -> Result<String, EditError> {
    let eol = if body.contains("\r\n") { "\r\n" } else { "\n" };
    let servers_key = target.servers_key;
    let mut lines: Vec<String> = body.lines().map(str::to_owned).collect();
    let cannot = || EditError::Shape {
        path: target.path.clone(),
        what: format!(
            "\"{servers_key}\" is written in a form the installer does not edit (flow style or \
             a quoted key); add the entry by hand"
        ),
    };
    let header_at = lines.iter().position(|l| header(l, servers_key).is_some());
    let Some(h) = header_at else {
        if present {
            return Err(cannot());
        }
        // No servers yet: a new block at the end.
        if let Some(wanted) = wanted {
            lines.push(format!("{servers_key}:"));
            lines.extend(render(wanted, 2));
        }
        return Ok(join(&lines, eol));
    };
    // The block: every line after the header up to the next one at the left margin.
    let end = (h + 1..lines.len())
        .find(|&i| !lines[i].trim().is_empty() && indent(&lines[i]) == 0)
        .unwrap_or(lines.len());
    let children: Vec<usize> = (h + 1..end).filter(|&i| is_content(&lines[i])).collect();
    let child_indent = children.first().map_or(2, |&i| indent(&lines[i]));
    if children.iter().any(|&i| indent(&lines[i]) < child_indent) {
        return Err(cannot());
    }
    if matches!(header(&lines[h], servers_key), Some(Header::Empty)) && !children.is_empty() {
        return Err(cannot());
    }
    let ours = children
        .iter()
        .copied()
        .find(|&i| indent(&lines[i]) == child_indent && opens_entry(&lines[i], ENTRY_NAME));
    let span = ours.map(|start| {
        let stop = (start + 1..end)
            .find(|&i| !lines[i].trim().is_empty() && indent(&lines[i]) <= child_indent)
            .unwrap_or(end);
        // Blank lines before the next entry stay where they are.
        let stop = (start + 1..stop)
            .rev()
            .find(|&i| !lines[i].trim().is_empty())
            .map_or(start + 1, |i| i + 1);
        start..stop
    });
    let new_lines = wanted.map(|w| render(w, child_indent)).unwrap_or_default();
    match span {
        Some(span) => {
            lines.splice(span, new_lines);
        }
        None => {
            let last = (h..end)
                .rev()
                .find(|&i| !lines[i].trim().is_empty())
                .unwrap_or(h);
            lines.splice(last + 1..last + 1, new_lines);
        }
    }
    let remaining = (h + 1..lines.len())
        .take_while(|&i| lines[i].trim().is_empty() || indent(&lines[i]) > 0)
        .any(|i| is_content(&lines[i]));
    lines[h] = if remaining {
        format!("{servers_key}:")
    } else {
        // Goose reads the servers as a map: no entries is `{}`, not null.
        format!("{servers_key}: {{}}")
    };
    Ok(join(&lines, eol))
}

fn join(lines: &[String], eol: &str) -> String {
    let mut text = lines.join(eol);
    if !text.is_empty() {
        text.push_str(eol);
    }
    text
}

/// Our entry as block-style lines at `indent`; values in flow style (JSON is valid YAML).
fn render(entry: &Value, indent: usize) -> Vec<String> {
    let step = if indent == 0 { 2 } else { indent };
    let pad = " ".repeat(indent);
    let inner = " ".repeat(indent + step);
    let mut lines = vec![format!("{pad}{ENTRY_NAME}:")];
    const FIRST: [&str; 9] = [
        "type",
        "name",
        "description",
        "cmd",
        "args",
        "enabled",
        "envs",
        "env_keys",
        "timeout",
    ];
    let rank = |k: &str| FIRST.iter().position(|f| *f == k).unwrap_or(FIRST.len());
    let mut fields: Vec<_> = entry.as_object().into_iter().flatten().collect();
    fields.sort_by_key(|(k, _)| rank(k));
    for (k, v) in fields {
        lines.push(format!("{inner}{}: {}", flow_key(k), flow(v)));
    }
    lines
}

fn flow_key(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        key.to_owned()
    } else {
        Value::from(key).to_string()
    }
}

fn flow(value: &Value) -> String {
    match value {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(flow).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        scalar => scalar.to_string(),
    }
}

fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::from(text.as_str()), Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::from(s.as_str()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Null | Yaml::Alias(_) | Yaml::BadValue => Value::Null,
    }
}
