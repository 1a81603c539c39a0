//! Codex's `config.toml`: the `[mcp_servers.mcp-chat]` table, edited in place with `toml_edit`
//! so every other table, comment and the author's formatting stay as they were.
//!
//! Shape checked against https://developers.openai.com/codex/mcp/ and `docs/config.md` in
//! openai/codex: a stdio server is `command`, optional `args`, `env`, `env_vars`, `cwd`; a
//! remote one `url` with `bearer_token_env_var`, `http_headers`, `env_http_headers`.

use serde_json::Value;
use toml_edit::{DocumentMut, Item, Table, TableLike};

use super::{Action, EditError, Outcome, Plan, USER_KEYS, is_remote_key, read_optional, split_bom};
use crate::clients::{ENTRY_NAME, Target};

pub(super) fn plan(target: &Target, action: &Action) -> Result<Plan, EditError> {
    let before = read_optional(&target.path)?;
    let (bom, body) = split_bom(before.as_deref().unwrap_or(""));
    let mut doc = parse(target, body)?;
    let outcome = match action {
        Action::Install(entry) => install(target, &mut doc, entry)?,
        Action::Uninstall => uninstall(target, &mut doc)?,
    };
    let after = if matches!(outcome, Outcome::Unchanged | Outcome::Absent) {
        before.clone().unwrap_or_default()
    } else {
        let mut text = format!("{bom}{doc}");
        if !text.is_empty() && !text.ends_with('\n') {
            text.push_str(if body.contains("\r\n") { "\r\n" } else { "\n" });
        }
        // Never write what Codex could not read back.
        parse(target, split_bom(&text).1)?;
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
    let doc = parse(target, body)?;
    Ok(doc
        .get(target.servers_key)
        .and_then(Item::as_table_like)
        .and_then(|servers| servers.get(ENTRY_NAME))
        .and_then(to_json))
}

fn parse(target: &Target, text: &str) -> Result<DocumentMut, EditError> {
    text.parse::<DocumentMut>()
        .map_err(|e| EditError::Malformed {
            path: target.path.clone(),
            dialect: "TOML",
            reason: e.to_string().trim().replace('\n', " "),
        })
}

fn not_a_table(target: &Target, key: &str) -> EditError {
    EditError::Shape {
        path: target.path.clone(),
        what: format!("\"{key}\" is not a table"),
    }
}

fn install(target: &Target, doc: &mut DocumentMut, entry: &Value) -> Result<Outcome, EditError> {
    let key = target.servers_key;
    if !doc.contains_key(key) {
        // `[mcp_servers.mcp-chat]` alone, without an empty `[mcp_servers]` above it.
        let mut table = Table::new();
        table.set_implicit(true);
        doc.insert(key, Item::Table(table));
    }
    let inline = doc[key].is_inline_table();
    let servers = doc[key]
        .as_table_like_mut()
        .ok_or_else(|| not_a_table(target, key))?;
    let ours = entry.as_object().cloned().unwrap_or_default();
    if !servers.contains_key(ENTRY_NAME) {
        // A table of its own where the servers are tables; inline where they are inline.
        let item = if inline || servers.is_dotted() {
            Item::Value(toml_edit::Value::InlineTable(to_inline_table(&ours)))
        } else {
            Item::Table(to_table(&ours))
        };
        servers.insert(ENTRY_NAME, item);
        return Ok(Outcome::Added);
    }
    let existing = servers.get_mut(ENTRY_NAME).expect("checked above");
    let Some(existing) = existing.as_table_like_mut() else {
        *existing = Item::Table(to_table(&ours));
        return Ok(Outcome::Updated);
    };
    let mut changed = false;
    let stale: Vec<String> = existing
        .iter()
        .filter(|(k, item)| is_remote_key(k, to_json(item).as_ref(), &ours))
        .map(|(k, _)| k.to_owned())
        .collect();
    for key in stale {
        existing.remove(&key);
        changed = true;
    }
    for (key, value) in &ours {
        match existing.get(key) {
            Some(_) if USER_KEYS.contains(&key.as_str()) => {}
            Some(current) if to_json(current).as_ref() == Some(value) => {}
            _ => {
                let Some(value) = to_toml(value) else {
                    continue;
                };
                // `insert` keeps the key where it was, with its comment.
                existing.insert(key, Item::Value(value));
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

fn uninstall(target: &Target, doc: &mut DocumentMut) -> Result<Outcome, EditError> {
    let key = target.servers_key;
    let Some(servers) = doc.get_mut(key) else {
        return Ok(Outcome::Absent);
    };
    let servers = servers
        .as_table_like_mut()
        .ok_or_else(|| not_a_table(target, key))?;
    Ok(match servers.remove(ENTRY_NAME) {
        Some(_) => Outcome::Removed,
        None => Outcome::Absent,
    })
}

/// A TOML item as JSON, for comparing and reporting (dates become strings).
fn to_json(item: &Item) -> Option<Value> {
    match item {
        Item::None => None,
        Item::Value(value) => Some(value_to_json(value)),
        Item::Table(table) => Some(table_to_json(table)),
        Item::ArrayOfTables(tables) => Some(Value::Array(
            tables.iter().map(|t| table_to_json(t)).collect(),
        )),
    }
}

fn table_to_json(table: &dyn TableLike) -> Value {
    Value::Object(
        table
            .iter()
            .filter_map(|(k, item)| Some((k.to_owned(), to_json(item)?)))
            .collect(),
    )
}

fn value_to_json(value: &toml_edit::Value) -> Value {
    use toml_edit::Value as T;
    match value {
        T::String(s) => Value::from(s.value().as_str()),
        T::Integer(i) => Value::from(*i.value()),
        T::Float(f) => Value::from(*f.value()),
        T::Boolean(b) => Value::from(*b.value()),
        T::Datetime(d) => Value::from(d.value().to_string()),
        T::Array(items) => Value::Array(items.iter().map(value_to_json).collect()),
        T::InlineTable(table) => table_to_json(table),
    }
}

/// A JSON value as TOML (`null` has no TOML form).
fn to_toml(value: &Value) -> Option<toml_edit::Value> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64()?.into(),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => {
            let array: toml_edit::Array = items.iter().filter_map(to_toml).collect();
            toml_edit::Value::Array(array)
        }
        Value::Object(map) => toml_edit::Value::InlineTable(to_inline_table(map)),
    })
}

fn to_inline_table(map: &serde_json::Map<String, Value>) -> toml_edit::InlineTable {
    let mut table = toml_edit::InlineTable::new();
    for (key, value) in ordered(map) {
        if let Some(value) = to_toml(value) {
            table.insert(key, value);
        }
    }
    table
}

fn to_table(map: &serde_json::Map<String, Value>) -> Table {
    let mut table = Table::new();
    for (key, value) in ordered(map) {
        if let Some(value) = to_toml(value) {
            table.insert(key, Item::Value(value));
        }
    }
    table
}

/// `command` before `args`, as people write them (serde_json sorts keys).
fn ordered(map: &serde_json::Map<String, Value>) -> Vec<(&str, &Value)> {
    const FIRST: [&str; 3] = ["command", "args", "env"];
    let rank = |k: &str| FIRST.iter().position(|f| *f == k).unwrap_or(FIRST.len());
    let mut entries: Vec<_> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
    entries.sort_by_key(|(k, _)| rank(k));
    entries
}
