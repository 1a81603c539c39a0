//! `install --client`, `uninstall` and `doctor`, run as the built binary against fixture files in
//! a private home directory (the per-OS paths are unit-tested in `clients.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::common::{Relay, temp_dir};

/// A throwaway home directory, bridge config directory and project directory.
struct Home {
    root: PathBuf,
}

impl Home {
    fn new(name: &str) -> Self {
        let root = temp_dir(name);
        for dir in ["home", "cfg", "project"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        Self { root }
    }

    fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    fn project(&self) -> PathBuf {
        self.root.join("project")
    }

    /// Runs the bridge binary with this home, nothing else from the environment.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    /// Runs the bridge binary with this home and `env`, nothing else from the environment.
    fn run_with(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mcp-chat-bridge"))
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("MCP_CHAT_CONFIG_DIR", self.root.join("cfg"))
            .env("MCP_CHAT_LOG_DIR", self.root.join("logs"))
            .current_dir(self.project())
            .output()
            .expect("run the bridge")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.home().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Files next to `path` whose names start with its name (backups, stray temporaries).
    fn siblings(path: &Path) -> Vec<String> {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut found: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != &name && n.contains(&name))
            .collect();
        found.sort();
        found
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn bridge_path() -> String {
    std::fs::canonicalize(env!("CARGO_BIN_EXE_mcp-chat-bridge"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Each client's user file on Linux, its servers key, and an entry field only that shape has.
const CLIENTS: [(&str, &str, &str); 8] = [
    (
        "claude-desktop",
        ".config/Claude/claude_desktop_config.json",
        "mcpServers",
    ),
    ("claude-code", ".claude.json", "mcpServers"),
    ("cursor", ".cursor/mcp.json", "mcpServers"),
    ("vscode", ".config/Code/User/mcp.json", "servers"),
    (
        "windsurf",
        ".codeium/windsurf/mcp_config.json",
        "mcpServers",
    ),
    ("zed", ".config/zed/settings.json", "context_servers"),
    ("lmstudio", ".lmstudio/mcp.json", "mcpServers"),
    ("gemini", ".gemini/settings.json", "mcpServers"),
];

#[test]
fn install_keeps_everything_else_backs_up_and_is_idempotent() {
    let home = Home::new("install-merge");
    for (client, rel, key) in CLIENTS {
        let original = format!(
            "{{\n  \"theme\": \"dark\",\n  \"{key}\": {{\n    \"other\": {{ \"command\": \"/usr/bin/other\", \"args\": [\"-x\"] }}\n  }},\n  \"numbers\": [1, 2.50, 3e2]\n}}\n"
        );
        let path = home.write(rel, &original);
        let out = home.ok(&["install", "--client", client]);
        assert!(out.contains("added mcp-chat"), "{client}: {out}");

        let after = std::fs::read_to_string(&path).unwrap();
        let value: Value = serde_json::from_str(&after).unwrap();
        assert_eq!(value["theme"], "dark", "{client}");
        assert_eq!(
            value[key]["other"],
            json!({"command": "/usr/bin/other", "args": ["-x"]}),
            "{client}"
        );
        // Untouched parts keep their exact text, number spellings included.
        assert!(
            after.contains("\"numbers\": [1, 2.50, 3e2]"),
            "{client}: {after}"
        );
        let entry = &value[key]["mcp-chat"];
        assert_eq!(entry["command"], bridge_path().as_str(), "{client}");
        assert_eq!(entry["args"], json!([]), "{client}");
        match client {
            "vscode" | "claude-code" => assert_eq!(entry["type"], "stdio"),
            "zed" => assert_eq!(entry["source"], "custom"),
            _ => assert!(entry.get("type").is_none(), "{client}: {entry}"),
        }

        let backups = Home::siblings(&path);
        assert_eq!(backups.len(), 1, "{client}: {backups:?}");
        assert!(backups[0].contains("mcp-chat-backup-"), "{backups:?}");
        let backup = path.with_file_name(&backups[0]);
        assert_eq!(std::fs::read_to_string(backup).unwrap(), original);

        // Twice is once: no change, no second backup.
        let out = home.ok(&["install", "--client", client]);
        assert!(out.contains("already set up"), "{client}: {out}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), after);
        assert_eq!(Home::siblings(&path).len(), 1, "{client}");
    }
}

#[test]
fn install_creates_a_missing_file_and_uninstall_removes_only_the_entry() {
    let home = Home::new("install-create");
    let path = home.home().join(".cursor/mcp.json");
    home.ok(&[
        "install",
        "--client",
        "cursor",
        "--relay",
        "https://chat.example.org/mcp",
        "--name",
        "Quiet Fox",
    ]);
    let value = read_json(&path);
    assert_eq!(
        value["mcpServers"]["mcp-chat"]["args"],
        json!([
            "--relay",
            "https://chat.example.org/mcp",
            "--display-name",
            "Quiet Fox"
        ])
    );
    assert!(Home::siblings(&path).is_empty(), "no backup of nothing");

    // An upgrade re-runs install without the flags: the entry keeps its relay and name.
    let out = home.ok(&["install", "--client", "cursor"]);
    assert!(out.contains("already set up"), "{out}");
    assert_eq!(read_json(&path), value);

    // Someone adds another server by hand; uninstall leaves it.
    let mut edited = value.clone();
    edited["mcpServers"]["other"] = json!({"command": "other"});
    std::fs::write(&path, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    let out = home.ok(&["uninstall", "--client", "cursor"]);
    assert!(out.contains("removed mcp-chat"), "{out}");
    assert_eq!(
        read_json(&path),
        json!({"mcpServers": {"other": {"command": "other"}}})
    );
    assert_eq!(Home::siblings(&path).len(), 1, "a backup before removing");

    let out = home.ok(&["uninstall", "--client", "cursor"]);
    assert!(out.contains("nothing to change"), "{out}");
    assert_eq!(Home::siblings(&path).len(), 1);
}

#[test]
fn comments_and_trailing_commas_survive_in_jsonc_clients() {
    let home = Home::new("install-jsonc");
    let zed = "// Zed settings\n//\n// see https://zed.dev/docs\n{\n  \"theme\": \"One Dark\", // keep me\n  /* block */\n  \"context_servers\": {\n    \"other\": { \"source\": \"custom\", \"command\": \"x\", \"args\": [], },\n  },\n}\n";
    let path = home.write(".config/zed/settings.json", zed);
    home.ok(&["install", "--client", "zed"]);
    let after = std::fs::read_to_string(&path).unwrap();
    for line in zed.lines().filter(|l| !l.trim().is_empty()) {
        assert!(after.contains(line), "lost {line:?} in:\n{after}");
    }
    assert!(after.contains("\"mcp-chat\""), "{after}");
    home.ok(&["uninstall", "--client", "zed"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), zed);
}

#[test]
fn a_malformed_or_misshapen_file_is_never_written() {
    let home = Home::new("install-malformed");
    let cases = [
        // Truncated.
        "{\"mcpServers\": {\"other\": {\"command\": \"x\"}",
        // Comments: fine for VS Code, but Claude Desktop's parser rejects them.
        "{\n  // a comment\n  \"mcpServers\": {}\n}\n",
        // Valid JSON, wrong shape.
        "{\"mcpServers\": [\"x\"]}",
        "[1, 2]",
    ];
    for text in cases {
        let path = home.write(".config/Claude/claude_desktop_config.json", text);
        for args in [
            &["install", "--client", "claude-desktop"][..],
            &["uninstall", "--client", "claude-desktop"][..],
        ] {
            let out = home.run(args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
            assert!(stderr.contains("nothing was written"), "{stderr}");
            assert!(stderr.contains("claude_desktop_config.json"), "{stderr}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
            assert!(
                Home::siblings(&path).is_empty(),
                "{:?}",
                Home::siblings(&path)
            );
        }
    }
}

#[test]
fn byte_order_mark_line_endings_and_permissions_are_kept() {
    let home = Home::new("install-bom");
    let original =
        "\u{feff}{\r\n  \"mcpServers\": {\r\n    \"other\": { \"command\": \"x\" }\r\n  }\r\n}";
    let path = home.write(".lmstudio/mcp.json", original);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    home.ok(&["install", "--client", "lmstudio"]);
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(after.starts_with('\u{feff}'), "{after:?}");
    assert!(after.contains("\"mcp-chat\""), "{after:?}");
    assert_eq!(
        after.matches('\n').count(),
        after.matches("\r\n").count(),
        "mixed line endings: {after:?}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

/// Issue 16, item 4: Claude Code creates `~/.claude.json` 0600 (it holds account data); so does
/// the installer, whatever the umask. A file that exists keeps the mode its owner gave it.
#[test]
fn created_files_are_private_and_existing_files_keep_their_mode() {
    let home = Home::new("install-modes");
    let path = home.home().join(".claude.json");
    home.ok(&["install", "--client", "claude-code"]);
    assert_eq!(mode(&path), 0o600);

    let cursor = home.write(".cursor/mcp.json", "{\"mcpServers\": {}}\n");
    std::fs::set_permissions(&cursor, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    home.ok(&["install", "--client", "cursor"]);
    assert!(read_json(&cursor)["mcpServers"]["mcp-chat"].is_object());
    assert_eq!(mode(&cursor), 0o640);
    home.ok(&["uninstall", "--client", "cursor"]);
    assert_eq!(mode(&cursor), 0o640);
}

#[test]
fn duplicate_keys_and_read_only_files_are_refused() {
    let home = Home::new("install-dup");
    let duplicate =
        r#"{"mcpServers": {"a": {"command": "a"}}, "mcpServers": {"b": {"command": "b"}}}"#;
    let path = home.write(".cursor/mcp.json", duplicate);
    let out = home.run(&["install", "--client", "cursor"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("appears 2 times"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), duplicate);

    let readonly = "{\"mcpServers\": {}}\n";
    std::fs::write(&path, readonly).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
    let out = home.run(&["install", "--client", "cursor"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), readonly);
    assert!(Home::siblings(&path).is_empty());
}

#[test]
fn a_remote_entry_becomes_a_bridge_entry() {
    let home = Home::new("install-remote");
    let path = home.write(
        ".codeium/windsurf/mcp_config.json",
        r#"{"mcpServers": {"mcp-chat": {"serverUrl": "https://relay.example/mcp", "headers": {"Authorization": "Bearer x"}, "disabled": false}}}"#,
    );
    home.ok(&["install", "--client", "windsurf"]);
    let entry = read_json(&path)["mcpServers"]["mcp-chat"].clone();
    assert_eq!(
        entry,
        json!({"command": bridge_path(), "args": [], "disabled": false})
    );
}

#[test]
fn dry_run_shows_the_change_and_writes_nothing() {
    let home = Home::new("install-dry-run");
    let original = "{\n  \"servers\": {\n    \"other\": { \"type\": \"http\", \"url\": \"https://x\" }\n  }\n}\n";
    let path = home.write(".config/Code/User/mcp.json", original);
    let out = home.ok(&["install", "--client", "vscode", "--dry-run"]);
    assert!(out.contains("would add mcp-chat"), "{out}");
    assert!(out.contains("+     \"mcp-chat\": {"), "{out}");
    assert!(
        out.contains(&format!("\"command\": \"{}\"", bridge_path())),
        "{out}"
    );
    // The one removed line is the last server, which gains a comma.
    let removed: Vec<&str> = out.lines().filter(|l| l.starts_with("- ")).collect();
    assert_eq!(removed.len(), 1, "{out}");
    assert!(removed[0].contains("\"other\""), "{out}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    assert!(Home::siblings(&path).is_empty());

    let missing = home.home().join(".lmstudio/mcp.json");
    let out = home.ok(&["install", "--client", "lmstudio", "--dry-run"]);
    assert!(out.contains("new file"), "{out}");
    assert!(!missing.exists());
}

#[test]
fn reinstall_updates_the_command_but_keeps_the_users_env() {
    let home = Home::new("install-update");
    let path = home.write(
        ".claude.json",
        r#"{"numStartups": 3, "mcpServers": {"mcp-chat": {"type": "stdio", "command": "/old/mcp-chat-bridge", "args": [], "env": {"MCP_CHAT_ACCESS_TOKEN": "s3cret"}, "timeout": 5}}}"#,
    );
    let out = home.ok(&["install", "--client", "claude-code"]);
    assert!(out.contains("updated mcp-chat"), "{out}");
    let value = read_json(&path);
    let entry = &value["mcpServers"]["mcp-chat"];
    assert_eq!(entry["command"], bridge_path().as_str());
    assert_eq!(entry["env"], json!({"MCP_CHAT_ACCESS_TOKEN": "s3cret"}));
    assert_eq!(entry["timeout"], 5);
    assert_eq!(value["numStartups"], 3);
}

#[test]
fn project_scope_writes_in_the_current_directory() {
    let home = Home::new("install-project");
    home.ok(&["install", "--client", "claude-code", "--scope", "project"]);
    let value = read_json(&home.project().join(".mcp.json"));
    assert_eq!(value["mcpServers"]["mcp-chat"]["type"], "stdio");
    home.ok(&["install", "--client", "vscode", "--scope", "project"]);
    assert!(home.project().join(".vscode/mcp.json").exists());

    let out = home.run(&[
        "install",
        "--client",
        "claude-desktop",
        "--scope",
        "project",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no project scope"));
}

#[test]
fn a_symlinked_config_stays_a_symlink() {
    let home = Home::new("install-symlink");
    let real = home.write("dotfiles/claude.json", "{\"mcpServers\": {}}\n");
    let link = home
        .home()
        .join(".config/Claude/claude_desktop_config.json");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    home.ok(&["install", "--client", "claude-desktop"]);
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert!(read_json(&real)["mcpServers"]["mcp-chat"].is_object());
}

#[test]
fn secrets_and_bad_values_stay_out_of_the_entry() {
    let home = Home::new("install-args");
    for (flag, value) in [
        ("--relay", "https://user:password@chat.example.org/mcp"),
        ("--relay", "ftp://chat.example.org/mcp"),
        ("--name", "a\u{7}bell"),
        ("--name", "a name far longer than thirty-two characters"),
    ] {
        let out = home.run(&["install", "--client", "cursor", flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        assert!(!home.home().join(".cursor/mcp.json").exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_problems_with_fixes_and_a_reachable_relay() {
    let relay = Relay::start().await;
    let home = Home::new("doctor");
    let url = relay.url.clone();
    home.ok(&["install", "--client", "claude-desktop", "--relay", &url]);
    home.write(
        ".codeium/windsurf/mcp_config.json",
        r#"{"mcpServers": {"mcp-chat": {"command": "/gone/mcp-chat-bridge", "args": []}}}"#,
    );
    home.write(".cursor/mcp.json", "{ not json");
    home.write(
        ".lmstudio/mcp.json",
        r#"{"mcpServers": {"mcp-chat": {"command": "/gone/mcp-chat-bridge", "args": ["--relay", "http://127.0.0.1:9/mcp"]}}}"#,
    );
    // A cloned repository's project file: reported, its relay not contacted.
    std::fs::write(
        home.project().join(".mcp.json"),
        r#"{"mcpServers": {"mcp-chat": {"command": "/gone/b", "args": ["--relay", "http://127.0.0.1:10/mcp"]}}}"#,
    )
    .unwrap();
    let identity = home.root.join("cfg/identity");
    std::fs::write(&identity, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(
        &identity,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();

    // Blocks this worker thread; the relay runs on the other one.
    let out = home.run(&["doctor"]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{report}");
    let line = |needle: &str| {
        report
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{report}"))
            .to_owned()
    };
    assert!(line("Claude Desktop").starts_with("[ok]"), "{report}");
    assert!(line("Windsurf").starts_with("[FAIL]"), "{report}");
    assert!(
        report.contains("fix: mcp-chat-bridge install --client windsurf"),
        "{report}"
    );
    assert!(line("Cursor").starts_with("[FAIL]"), "{report}");
    assert!(line("identity").starts_with("[FAIL]"), "{report}");
    assert!(report.contains("fix: chmod 600"), "{report}");
    assert!(
        line("Claude Code (this project)").starts_with("[FAIL]"),
        "{report}"
    );
    // The relay the Claude Desktop entry names answers; LM Studio's does not. Windsurf's entry
    // names none, so the default is probed for it.
    let reachable = line(&format!("relay {url}"));
    assert!(reachable.starts_with("[ok]"), "{report}");
    assert!(reachable.contains("mcp-chat-relay"), "{report}");
    assert!(
        line("relay http://127.0.0.1:9/mcp").starts_with("[FAIL]"),
        "{report}"
    );
    assert!(
        line("relay http://127.0.0.1:8080/mcp").starts_with("[FAIL]"),
        "{report}"
    );
    assert!(!report.contains("127.0.0.1:10"), "{report}");
    relay.stop().await;
}

/// The key of the test's project directory in `~/.claude.json`'s `projects`, as Claude Code
/// (and the bridge, run there) sees the directory.
fn claude_project_key(home: &Home) -> String {
    std::fs::canonicalize(home.project())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Runs `doctor` and returns its report.
fn doctor_report(home: &Home) -> String {
    String::from_utf8(home.run(&["doctor"]).stdout).unwrap()
}

fn report_line(report: &str, needle: &str) -> String {
    report
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{report}"))
        .to_owned()
}

/// The report's line about `subject` (a client, by its name).
fn subject_line(report: &str, subject: &str) -> String {
    report
        .lines()
        .find(|l| {
            l.get(7..)
                .and_then(|rest| rest.strip_prefix(subject))
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .unwrap_or_else(|| panic!("no line about {subject:?} in:\n{report}"))
        .to_owned()
}

/// Issue 16, item 3: Claude Code's default (local) scope is `projects[<dir>].mcpServers` in
/// `~/.claude.json`. With only such an entry, doctor used to say there was none.
#[test]
fn doctor_finds_an_entry_in_claude_codes_local_scope() {
    let home = Home::new("doctor-local");
    let path = home.write(
        ".claude.json",
        r#"{"numStartups": 7, "projects": {"/elsewhere": {"allowedTools": []}}}"#,
    );
    let out = home.ok(&[
        "install",
        "--client",
        "claude-code",
        "--scope",
        "local",
        "--relay",
        "http://127.0.0.1:9/mcp",
    ]);
    assert!(out.contains("added mcp-chat"), "{out}");
    let value = read_json(&path);
    let key = claude_project_key(&home);
    let entry = &value["projects"][&key]["mcpServers"]["mcp-chat"];
    assert_eq!(entry["command"], bridge_path().as_str(), "{value}");
    assert!(value.get("mcpServers").is_none(), "{value}");
    assert_eq!(value["numStartups"], 7);
    assert_eq!(value["projects"]["/elsewhere"], json!({"allowedTools": []}));

    let report = doctor_report(&home);
    let local = report_line(&report, "Claude Code (local, this folder)");
    assert!(local.starts_with("[ok]"), "{report}");
    assert!(local.contains("launches this bridge"), "{report}");
    assert!(local.contains(&format!("projects[{key:?}]")), "{report}");
    assert!(!report.contains("entries named mcp-chat"), "{report}");

    // Uninstall from the local scope removes the entry and nothing else.
    home.ok(&["uninstall", "--client", "claude-code", "--scope", "local"]);
    let value = read_json(&path);
    assert_eq!(value["projects"][&key]["mcpServers"], json!({}));
    assert_eq!(value["projects"]["/elsewhere"], json!({"allowedTools": []}));
    let report = doctor_report(&home);
    assert!(!report.contains("(local, this folder)"), "{report}");
}

/// Issue 16, item 3: with a local and a user entry, Claude Code reports conflicting scopes and
/// uses the local one; doctor used to say `[ok]` about the user one only.
#[test]
fn doctor_reports_that_the_local_entry_shadows_the_user_entry() {
    let home = Home::new("doctor-shadow");
    let key = claude_project_key(&home);
    let claude = json!({
        "mcpServers": {"mcp-chat": {"type": "stdio", "command": "/gone/mcp-chat-bridge", "args": []}},
        "projects": {key.clone(): {"mcpServers": {"mcp-chat": {
            "type": "stdio", "command": bridge_path(), "args": ["--relay", "http://127.0.0.1:9/mcp"]
        }}}},
    });
    home.write(".claude.json", &claude.to_string());
    let report = doctor_report(&home);
    assert!(
        report_line(&report, "Claude Code (local, this folder)").starts_with("[ok]"),
        "{report}"
    );
    let conflict = report_line(&report, "two entries named mcp-chat");
    assert!(conflict.starts_with("[warn]"), "{report}");
    assert!(conflict.contains("(local, user)"), "{report}");
    assert!(conflict.contains("the local one wins"), "{report}");
    assert!(conflict.contains(&format!("projects[{key:?}]")), "{report}");
    assert!(
        report.contains("`mcp-chat-bridge uninstall --client claude-code` removes the user one"),
        "{report}"
    );

    // A project entry too: three places, still the local one.
    std::fs::write(
        home.project().join(".mcp.json"),
        r#"{"mcpServers": {"mcp-chat": {"command": "/gone/b", "args": []}}}"#,
    )
    .unwrap();
    let report = doctor_report(&home);
    let conflict = report_line(&report, "entries named mcp-chat");
    assert!(conflict.contains("3 entries"), "{report}");
    assert!(conflict.contains("(local, project, user)"), "{report}");
    assert!(conflict.contains("the local one wins"), "{report}");
}

/// The same entry in two places of one client: said, not warned about. In VS Code, whose
/// user and workspace servers both start, it is a warning.
#[test]
fn doctor_tells_equal_and_doubled_entries_apart() {
    let home = Home::new("doctor-equal");
    home.ok(&[
        "install",
        "--client",
        "cursor",
        "--relay",
        "http://127.0.0.1:9/mcp",
    ]);
    home.ok(&[
        "install",
        "--client",
        "cursor",
        "--scope",
        "project",
        "--relay",
        "http://127.0.0.1:9/mcp",
    ]);
    let report = doctor_report(&home);
    let overlap = report_line(&report, "two entries named mcp-chat (project, user)");
    assert!(overlap.starts_with("[--]"), "{report}");
    assert!(overlap.contains("the project one wins"), "{report}");
    assert!(overlap.contains("others launch the same"), "{report}");

    home.ok(&["install", "--client", "vscode"]);
    home.ok(&["install", "--client", "vscode", "--scope", "project"]);
    let report = doctor_report(&home);
    let doubled = report
        .lines()
        .find(|l| l.contains("VS Code") && l.contains("entries named mcp-chat"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(doubled.starts_with("[warn]"), "{report}");
    assert!(doubled.contains("appears twice"), "{report}");
}

/// A JSON-with-comments text as a value.
fn jsonc_value(text: &str) -> Value {
    let options = jsonc_parser::ParseOptions::default();
    let root = jsonc_parser::cst::CstRootNode::parse(text, &options).unwrap();
    root.value().and_then(|v| v.to_serde_value()).unwrap()
}

/// Every line of `original` is still in `after`, in order.
fn assert_lines_kept(original: &str, after: &str) {
    let mut rest = after;
    for line in original.lines().filter(|l| !l.trim().is_empty()) {
        match rest.find(line) {
            Some(at) => rest = &rest[at + line.len()..],
            None => panic!("lost {line:?} in:\n{after}"),
        }
    }
}

/// Issue 16, item 5: opencode keeps local servers under `mcp` as `{"type": "local", "command":
/// [...], "enabled": true}`, in JSON with comments.
#[test]
fn opencode_gets_its_own_shape_and_keeps_comments() {
    let home = Home::new("install-opencode");
    let original = "{\n  // my opencode\n  \"$schema\": \"https://opencode.ai/config.json\",\n  \"mcp\": {\n    \"other\": { \"type\": \"remote\", \"url\": \"https://x\", \"enabled\": true },\n  },\n}\n";
    let path = home.write(".config/opencode/opencode.json", original);
    let relay = "http://127.0.0.1:9/mcp";
    home.ok(&["install", "--client", "opencode", "--relay", relay]);
    let after = std::fs::read_to_string(&path).unwrap();
    assert_lines_kept(original, &after);
    let entry = jsonc_value(&after)["mcp"]["mcp-chat"].clone();
    assert_eq!(
        entry,
        json!({"type": "local", "command": [bridge_path(), "--relay", relay], "enabled": true})
    );
    // A re-install without --relay keeps it (read from the command list).
    let out = home.ok(&["install", "--client", "opencode"]);
    assert!(out.contains("already set up"), "{out}");

    let report = doctor_report(&home);
    assert!(
        subject_line(&report, "opencode").starts_with("[ok]"),
        "{report}"
    );
    assert!(report.contains(&format!("relay {relay}")), "{report}");

    home.ok(&["uninstall", "--client", "opencode"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
}

/// Issue 16, item 5: Codex's `config.toml` gains `[mcp_servers.mcp-chat]`; its comments,
/// other tables and formatting stay as they were, and `$CODEX_HOME` moves the file.
#[test]
fn codex_config_toml_is_edited_in_place() {
    let home = Home::new("install-codex");
    let original = "# Codex settings\nmodel = \"o4-mini\" # my model\n\n[mcp_servers.other]\ncommand = \"other\"\nargs = [ \"-x\" ]  # keep\n\n[projects.\"/tmp\"]\ntrust_level = \"trusted\"\n";
    let path = home.write(".codex/config.toml", original);
    let out = home.ok(&[
        "install",
        "--client",
        "codex",
        "--relay",
        "http://127.0.0.1:9/mcp",
    ]);
    assert!(out.contains("added mcp-chat"), "{out}");
    let after = std::fs::read_to_string(&path).unwrap();
    assert_lines_kept(original, &after);
    assert!(after.contains("[mcp_servers.mcp-chat]\n"), "{after}");
    let value: toml::Table = toml::from_str(&after).unwrap();
    let entry = &value["mcp_servers"]["mcp-chat"];
    assert_eq!(entry["command"].as_str(), Some(bridge_path().as_str()));
    assert_eq!(entry["args"].as_array().unwrap().len(), 2, "{after}");
    assert_eq!(
        value["mcp_servers"]["other"]["command"].as_str(),
        Some("other")
    );
    assert_eq!(Home::siblings(&path).len(), 1, "a backup");

    let out = home.ok(&["install", "--client", "codex"]);
    assert!(out.contains("already set up"), "{out}");
    let report = doctor_report(&home);
    assert!(
        subject_line(&report, "Codex").starts_with("[ok]"),
        "{report}"
    );

    home.ok(&["uninstall", "--client", "codex"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);

    // A remote entry becomes a bridge entry; the user's env table stays.
    let codex_home = home.root.join("codex-home");
    std::fs::create_dir_all(&codex_home).unwrap();
    let remote = "[mcp_servers.mcp-chat]\nurl = \"https://relay.example/mcp\"\nbearer_token_env_var = \"TOKEN\"\n\n[mcp_servers.mcp-chat.env]\nMCP_CHAT_ACCESS_TOKEN = \"s3cret\" # mine\n";
    std::fs::write(codex_home.join("config.toml"), remote).unwrap();
    let out = home.run_with(
        &["install", "--client", "codex"],
        &[("CODEX_HOME", &codex_home)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read_to_string(codex_home.join("config.toml")).unwrap();
    assert!(
        after.contains("MCP_CHAT_ACCESS_TOKEN = \"s3cret\" # mine"),
        "{after}"
    );
    let value: toml::Table = toml::from_str(&after).unwrap();
    let entry = value["mcp_servers"]["mcp-chat"].as_table().unwrap();
    assert!(
        !entry.contains_key("url") && !entry.contains_key("bearer_token_env_var"),
        "{after}"
    );
    assert_eq!(entry["command"].as_str(), Some(bridge_path().as_str()));

    let broken = "[mcp_servers\ncommand = 1\n";
    std::fs::write(&path, broken).unwrap();
    let out = home.run(&["install", "--client", "codex"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid TOML"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
}

/// Issue 16, item 5: Goose's `config.yaml` gains an `extensions` entry of type stdio; the rest
/// of the file, comments included, is left as it was.
#[test]
fn goose_config_yaml_keeps_everything_else() {
    let home = Home::new("install-goose");
    let original = "# goose config\nGOOSE_PROVIDER: anthropic\nextensions:\n  developer:\n    bundled: true\n    enabled: true\n    name: developer\n    timeout: 300\n    type: builtin\n  # my github server\n  github:\n    args:\n    - -y\n    - '@modelcontextprotocol/server-github'\n    cmd: npx\n    enabled: true\n    envs: {}\n    name: github\n    type: stdio\n\nGOOSE_MODE: smart_approve\n";
    let path = home.write(".config/goose/config.yaml", original);
    home.ok(&[
        "install",
        "--client",
        "goose",
        "--relay",
        "http://127.0.0.1:9/mcp",
    ]);
    let after = std::fs::read_to_string(&path).unwrap();
    assert_lines_kept(original, &after);
    let docs = yaml_rust2::YamlLoader::load_from_str(&after).unwrap();
    let entry = &docs[0]["extensions"]["mcp-chat"];
    assert_eq!(entry["type"].as_str(), Some("stdio"), "{after}");
    assert_eq!(entry["name"].as_str(), Some("mcp-chat"));
    assert_eq!(entry["cmd"].as_str(), Some(bridge_path().as_str()));
    assert_eq!(entry["args"][1].as_str(), Some("http://127.0.0.1:9/mcp"));
    assert_eq!(entry["enabled"].as_bool(), Some(true));
    assert_eq!(docs[0]["extensions"]["github"]["cmd"].as_str(), Some("npx"));
    assert_eq!(docs[0]["GOOSE_MODE"].as_str(), Some("smart_approve"));

    let out = home.ok(&["install", "--client", "goose"]);
    assert!(out.contains("already set up"), "{out}");
    let report = doctor_report(&home);
    assert!(
        subject_line(&report, "Goose").starts_with("[ok]"),
        "{report}"
    );

    // The user's environment and switch stay through a re-install.
    let edited = after.replace(
        "envs: {}\n    env_keys",
        "envs: {\"MCP_CHAT_ACCESS_TOKEN\": \"t\"}\n    env_keys",
    );
    let edited = edited.replace(
        "enabled: true\n    envs: {\"MCP",
        "enabled: false\n    envs: {\"MCP",
    );
    assert_ne!(edited, after);
    std::fs::write(&path, &edited).unwrap();
    home.ok(&["install", "--client", "goose", "--name", "Quiet Fox"]);
    let docs =
        yaml_rust2::YamlLoader::load_from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let entry = &docs[0]["extensions"]["mcp-chat"];
    assert_eq!(entry["envs"]["MCP_CHAT_ACCESS_TOKEN"].as_str(), Some("t"));
    assert_eq!(entry["enabled"].as_bool(), Some(false));
    assert_eq!(entry["args"][3].as_str(), Some("Quiet Fox"));
    let report = doctor_report(&home);
    assert!(
        subject_line(&report, "Goose").starts_with("[warn]"),
        "disabled: {report}"
    );

    home.ok(&["uninstall", "--client", "goose"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);

    // No extensions yet, or an empty map: one is written, and uninstall leaves `{}`.
    for (text, back) in [
        (
            "GOOSE_PROVIDER: openai\n",
            "GOOSE_PROVIDER: openai\nextensions: {}\n",
        ),
        (
            "GOOSE_PROVIDER: openai\nextensions: {}\n",
            "GOOSE_PROVIDER: openai\nextensions: {}\n",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        home.ok(&["install", "--client", "goose"]);
        let docs = yaml_rust2::YamlLoader::load_from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap();
        assert_eq!(
            docs[0]["extensions"]["mcp-chat"]["type"].as_str(),
            Some("stdio")
        );
        home.ok(&["uninstall", "--client", "goose"]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), back);
    }

    // Flow style is not edited line by line: refused, nothing written.
    let flow = "extensions: {developer: {type: builtin, name: developer, enabled: true}}\n";
    std::fs::write(&path, flow).unwrap();
    let out = home.run(&["install", "--client", "goose"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("by hand"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), flow);
}

/// Issue 16, item 5: Gemini CLI disables MCP servers in folders it does not trust; doctor
/// says whether it trusts this one.
#[test]
fn doctor_says_whether_gemini_trusts_this_folder() {
    let home = Home::new("doctor-gemini");
    home.ok(&[
        "install",
        "--client",
        "gemini",
        "--relay",
        "http://127.0.0.1:9/mcp",
    ]);
    let entry = &read_json(&home.home().join(".gemini/settings.json"))["mcpServers"]["mcp-chat"];
    assert_eq!(entry["command"], bridge_path().as_str());
    let report = doctor_report(&home);
    let trust = report
        .lines()
        .find(|l| l.contains("Gemini CLI") && l.contains("trust"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(trust.starts_with("[--]"), "{report}");
    assert!(trust.contains("only in folders you trust"), "{report}");

    let key = claude_project_key(&home);
    let rules = home.home().join(".gemini/trustedFolders.json");
    std::fs::write(&rules, json!({ key.clone(): "DO_NOT_TRUST" }).to_string()).unwrap();
    let report = doctor_report(&home);
    assert!(
        report_line(&report, "marked untrusted").starts_with("[warn]"),
        "{report}"
    );

    let parent = Path::new(&key).parent().unwrap().join("sibling");
    std::fs::write(
        &rules,
        json!({ parent.to_str().unwrap(): "TRUST_PARENT" }).to_string(),
    )
    .unwrap();
    let report = doctor_report(&home);
    assert!(
        report_line(&report, "trusts this folder").starts_with("[ok]"),
        "{report}"
    );

    // Folder trust switched off: nothing to say.
    home.write(
        ".gemini/settings.json",
        &json!({"security": {"folderTrust": {"enabled": false}}, "mcpServers": {"mcp-chat": entry}})
            .to_string(),
    );
    let report = doctor_report(&home);
    assert!(!report.contains("trusts this folder"), "{report}");
    assert!(!report.contains("only in folders you trust"), "{report}");
}
