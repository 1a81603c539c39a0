//! The desktop clients the bridge can install itself into: where each keeps its MCP servers and
//! in which shape it wants an entry.
//!
//! Path resolution is a pure function of the operating system, the home directory and a few
//! environment variables, so every client's layout on every OS is testable on any machine.
//! Sources for each path are in the README's install section.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Name of the bridge's entry in every client's server list.
pub const ENTRY_NAME: &str = "mcp-chat";

/// A desktop client with an MCP configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    /// Claude Desktop (macOS, Windows classic and MSIX installs, Linux community builds).
    ClaudeDesktop,
    /// Claude Code (`~/.claude.json`; project scope: `.mcp.json`).
    ClaudeCode,
    /// Cursor (`~/.cursor/mcp.json`; project scope: `.cursor/mcp.json`).
    Cursor,
    /// VS Code (user `mcp.json`; project scope: `.vscode/mcp.json`; key `servers`).
    Vscode,
    /// Windsurf (`~/.codeium/windsurf/mcp_config.json`).
    Windsurf,
    /// Zed (`settings.json`, key `context_servers`; project scope: `.zed/settings.json`).
    Zed,
    /// LM Studio (`~/.lmstudio/mcp.json`).
    Lmstudio,
    /// Gemini CLI (`~/.gemini/settings.json`; project scope: `.gemini/settings.json`).
    Gemini,
    /// Codex CLI (`~/.codex/config.toml` or `$CODEX_HOME/config.toml`, table `mcp_servers`;
    /// project scope: `.codex/config.toml`).
    Codex,
    /// Goose (`~/.config/goose/config.yaml`, key `extensions`).
    Goose,
    /// opencode (`~/.config/opencode/opencode.json`, key `mcp`; project scope: `opencode.json`).
    Opencode,
}

/// Every client, in the order `doctor` reports them.
pub const ALL_CLIENTS: [Client; 11] = [
    Client::ClaudeDesktop,
    Client::ClaudeCode,
    Client::Cursor,
    Client::Vscode,
    Client::Windsurf,
    Client::Zed,
    Client::Lmstudio,
    Client::Gemini,
    Client::Codex,
    Client::Goose,
    Client::Opencode,
];

/// Which configuration of a client: the user's own, or the project in the current directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Scope {
    /// For every project of this user.
    #[default]
    User,
    /// Only for the project in the current directory (a file meant to be committed).
    Project,
    /// Only for this user in the current directory, kept in the user's own file (Claude Code's
    /// default scope: `projects[<dir>].mcpServers` in `~/.claude.json`).
    Local,
}

impl Scope {
    /// The scope's name as the clients' documentation and `--scope` spell it.
    pub fn label(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Project => "project",
            Scope::Local => "local",
        }
    }
}

/// What a client does with entries of the same name in several of its places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// The first place (in [`Client::places`] order) that has the name wins; the others are
    /// ignored whole, not merged.
    FirstWins,
    /// Each place's entry is a server of its own: both start, and the tools appear twice.
    Both,
}

/// The operating system whose layout to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    /// Linux and other Unix desktops following XDG.
    Linux,
    /// macOS.
    MacOs,
    /// Windows.
    Windows,
}

impl Os {
    /// The system this binary runs on.
    pub fn current() -> Self {
        if cfg!(target_os = "macos") {
            Os::MacOs
        } else if cfg!(windows) {
            Os::Windows
        } else {
            Os::Linux
        }
    }
}

/// Whether a file may hold comments and trailing commas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Strict JSON: the client refuses anything else, so we refuse to edit anything else.
    Json,
    /// JSON with comments (VS Code, Zed): comments and formatting are kept as they are.
    Jsonc,
    /// TOML (Codex): comments and formatting are kept as they are.
    Toml,
    /// YAML (Goose): everything but the `mcp-chat` entry is kept as it is, comments included.
    Yaml,
}

/// Where one client's configuration lives on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The client.
    pub client: Client,
    /// Which of the client's configurations this is.
    pub scope: Scope,
    /// The configuration file.
    pub path: PathBuf,
    /// Keys of the objects around the servers object, outermost first; empty when the servers
    /// are at the top level (Claude Code's local scope: `projects`, then the directory).
    pub within: Vec<String>,
    /// The key holding the servers (`mcpServers`, `servers`, `context_servers`).
    pub servers_key: &'static str,
    /// The file's syntax.
    pub dialect: Dialect,
}

/// Why a client's configuration cannot be located.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// The client has no configuration of this scope.
    #[error("{client} has no {scope} scope; use --scope user")]
    NoScope {
        /// The client.
        client: &'static str,
        /// The scope asked for.
        scope: &'static str,
    },
    /// A directory the layout depends on is unknown.
    #[error("cannot find {client}'s configuration: {missing} is not set")]
    MissingDir {
        /// The client.
        client: &'static str,
        /// The environment variable or directory that is missing.
        missing: &'static str,
    },
}

/// What a client's path depends on: the OS, the user's directories and the current directory.
pub struct HostDirs<'a> {
    /// Layout to use.
    pub os: Os,
    /// The user's home directory, if known.
    pub home: Option<PathBuf>,
    /// The current directory (project scope).
    pub cwd: PathBuf,
    /// Environment lookup (`APPDATA`, `XDG_CONFIG_HOME`, `CLAUDE_CONFIG_DIR`, ...).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl HostDirs<'_> {
    fn var(&self, key: &str) -> Option<PathBuf> {
        (self.env)(key)
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
    }

    fn home(&self, client: Client) -> Result<PathBuf, LocateError> {
        self.home.clone().ok_or(LocateError::MissingDir {
            client: client.display_name(),
            missing: "the home directory",
        })
    }

    fn windows_var(&self, client: Client, key: &'static str) -> Result<PathBuf, LocateError> {
        self.var(key).ok_or(LocateError::MissingDir {
            client: client.display_name(),
            missing: key,
        })
    }

    /// `~/.config` or `$XDG_CONFIG_HOME` (Linux, and Zed on macOS).
    fn xdg_config(&self, client: Client) -> Result<PathBuf, LocateError> {
        match self.var("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
            Some(dir) => Ok(dir),
            None => Ok(self.home(client)?.join(".config")),
        }
    }

    /// The per-user application data directory of an Electron app named `app`.
    fn app_data(&self, client: Client, app: &str) -> Result<PathBuf, LocateError> {
        Ok(match self.os {
            Os::MacOs => self
                .home(client)?
                .join("Library")
                .join("Application Support")
                .join(app),
            Os::Windows => self.windows_var(client, "APPDATA")?.join(app),
            Os::Linux => self.xdg_config(client)?.join(app),
        })
    }
}

/// The package directory of the Microsoft Store (MSIX) build of Claude Desktop. Its file-system
/// virtualisation redirects `%APPDATA%\Claude` into this package's `LocalCache\Roaming`.
const CLAUDE_MSIX_PACKAGE: &str = "Claude_pzs8sxrjxfjjc";

impl Client {
    /// The name people know the client by.
    pub fn display_name(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "Claude Desktop",
            Client::ClaudeCode => "Claude Code",
            Client::Cursor => "Cursor",
            Client::Vscode => "VS Code",
            Client::Windsurf => "Windsurf",
            Client::Zed => "Zed",
            Client::Lmstudio => "LM Studio",
            Client::Gemini => "Gemini CLI",
            Client::Codex => "Codex",
            Client::Goose => "Goose",
            Client::Opencode => "opencode",
        }
    }

    /// The value of `--client` that selects this client.
    pub fn flag_value(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "claude-desktop",
            Client::ClaudeCode => "claude-code",
            Client::Cursor => "cursor",
            Client::Vscode => "vscode",
            Client::Windsurf => "windsurf",
            Client::Zed => "zed",
            Client::Lmstudio => "lmstudio",
            Client::Gemini => "gemini",
            Client::Codex => "codex",
            Client::Goose => "goose",
            Client::Opencode => "opencode",
        }
    }

    /// What the user does after a change so the client picks it up.
    pub fn reload_hint(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => {
                "Quit Claude Desktop completely (not just its window) and open it again."
            }
            Client::ClaudeCode => "Start a new Claude Code session; `/mcp` lists the server.",
            Client::Cursor => "Open Cursor Settings > MCP and check that mcp-chat is enabled.",
            Client::Vscode => {
                "Run \"MCP: List Servers\" in VS Code and start mcp-chat (it asks to trust it)."
            }
            Client::Windsurf => "Press refresh in Windsurf's MCP panel (Cascade > MCP servers).",
            Client::Zed => "Zed reloads settings by itself; see the Agent panel's settings.",
            Client::Lmstudio => "Restart LM Studio or reload its MCP servers (Program > Install).",
            Client::Gemini => {
                "Start a new Gemini CLI session in a folder you trust; `/mcp` lists the server."
            }
            Client::Codex => "Start a new Codex session; `/mcp` lists the server.",
            Client::Goose => "Restart Goose; mcp-chat is listed under its extensions.",
            Client::Opencode => "Restart opencode; `opencode mcp list` shows the server.",
        }
    }

    /// Every place this client reads servers from on the host described by `dirs`, the one
    /// that wins a name clash first (see [`Client::overlap`]).
    pub fn places(self, dirs: &HostDirs<'_>) -> Vec<Target> {
        // Claude Code: "local-scoped servers take precedence, followed by project-scoped
        // servers, and finally user-scoped ones"; the whole entry of that scope is used
        // (https://code.claude.com/docs/en/mcp, "Scope hierarchy and precedence").
        // The editors and the CLIs with a project file let it override the user's.
        [Scope::Local, Scope::Project, Scope::User]
            .into_iter()
            .filter_map(|scope| self.locate(scope, dirs).ok())
            .collect()
    }

    /// What the client does with an entry named `mcp-chat` in more than one of its places.
    pub fn overlap(self) -> Overlap {
        match self {
            // VS Code keeps each file's servers as a collection of their own and lists
            // them side by side (https://code.visualstudio.com/docs/agents/reference/mcp-configuration).
            Client::Vscode => Overlap::Both,
            _ => Overlap::FirstWins,
        }
    }

    /// Where this client's configuration for `scope` is on the host described by `dirs`.
    pub fn locate(self, scope: Scope, dirs: &HostDirs<'_>) -> Result<Target, LocateError> {
        let target = |path: PathBuf, servers_key, dialect| Target {
            client: self,
            scope,
            path,
            within: Vec::new(),
            servers_key,
            dialect,
        };
        let no_scope = || LocateError::NoScope {
            client: self.display_name(),
            scope: scope.label(),
        };
        if scope == Scope::Local {
            if self != Client::ClaudeCode {
                return Err(no_scope());
            }
            let mut local = self.locate(Scope::User, dirs)?;
            local.scope = Scope::Local;
            local.within = vec!["projects".to_owned(), claude_project_key(&dirs.cwd)];
            return Ok(local);
        }
        if scope == Scope::Project {
            let project = |rel: &[&str], key, dialect| {
                let path = rel.iter().fold(dirs.cwd.clone(), |p, part| p.join(part));
                Ok(target(path, key, dialect))
            };
            return match self {
                Client::ClaudeCode => project(&[".mcp.json"], "mcpServers", Dialect::Json),
                Client::Cursor => project(&[".cursor", "mcp.json"], "mcpServers", Dialect::Json),
                Client::Vscode => project(&[".vscode", "mcp.json"], "servers", Dialect::Jsonc),
                Client::Zed => project(
                    &[".zed", "settings.json"],
                    "context_servers",
                    Dialect::Jsonc,
                ),
                Client::Gemini => {
                    project(&[".gemini", "settings.json"], "mcpServers", Dialect::Jsonc)
                }
                // Read only in projects the user trusts (`[projects."<dir>"]` in the user's file).
                Client::Codex => project(&[".codex", "config.toml"], "mcp_servers", Dialect::Toml),
                Client::Opencode => {
                    let file = opencode_file(&dirs.cwd);
                    project(&[file], "mcp", Dialect::Jsonc)
                }
                Client::ClaudeDesktop | Client::Windsurf | Client::Lmstudio | Client::Goose => {
                    Err(no_scope())
                }
            };
        }
        let home = || dirs.home(self);
        Ok(match self {
            Client::ClaudeDesktop => {
                let file = "claude_desktop_config.json";
                let path = match dirs.os {
                    Os::Windows => {
                        let classic = dirs.app_data(self, "Claude")?.join(file);
                        let package = dirs
                            .var("LOCALAPPDATA")
                            .map(|local| local.join("Packages").join(CLAUDE_MSIX_PACKAGE));
                        // The current installer is MSIX, whose app reads a virtualised copy of
                        // %APPDATA%: its own file when there is one, else the real one (kept
                        // from a classic install). So: an existing MSIX file, else an existing
                        // classic file, else the MSIX location when that app is installed.
                        match package {
                            Some(package) if package.is_dir() => {
                                let msix = package
                                    .join("LocalCache")
                                    .join("Roaming")
                                    .join("Claude")
                                    .join(file);
                                if msix.exists() || !classic.exists() {
                                    msix
                                } else {
                                    classic
                                }
                            }
                            _ => classic,
                        }
                    }
                    _ => dirs.app_data(self, "Claude")?.join(file),
                };
                target(path, "mcpServers", Dialect::Json)
            }
            Client::ClaudeCode => {
                // Claude Code keeps its state file inside CLAUDE_CONFIG_DIR when that is set.
                let dir = dirs.var("CLAUDE_CONFIG_DIR").map_or_else(home, Ok)?;
                target(dir.join(".claude.json"), "mcpServers", Dialect::Json)
            }
            Client::Cursor => target(
                home()?.join(".cursor").join("mcp.json"),
                "mcpServers",
                Dialect::Json,
            ),
            Client::Vscode => target(
                dirs.app_data(self, "Code")?.join("User").join("mcp.json"),
                "servers",
                Dialect::Jsonc,
            ),
            Client::Windsurf => target(
                home()?
                    .join(".codeium")
                    .join("windsurf")
                    .join("mcp_config.json"),
                "mcpServers",
                Dialect::Json,
            ),
            Client::Zed => {
                let dir = match dirs.os {
                    Os::Windows => dirs.windows_var(self, "APPDATA")?.join("Zed"),
                    // On macOS Zed uses ~/.config/zed, not Application Support, and ignores
                    // XDG_CONFIG_HOME.
                    Os::MacOs => home()?.join(".config").join("zed"),
                    Os::Linux => dirs.xdg_config(self)?.join("zed"),
                };
                target(dir.join("settings.json"), "context_servers", Dialect::Jsonc)
            }
            Client::Lmstudio => target(
                home()?.join(".lmstudio").join("mcp.json"),
                "mcpServers",
                Dialect::Json,
            ),
            // Gemini CLI reads settings.json through strip-json-comments, so comments are
            // fine (packages/cli/src/config/settings.ts; https://geminicli.com/docs/get-started/configuration/).
            Client::Gemini => target(
                home()?.join(".gemini").join("settings.json"),
                "mcpServers",
                Dialect::Jsonc,
            ),
            // https://developers.openai.com/codex/mcp/ and docs/config.md in openai/codex:
            // `$CODEX_HOME` (default `~/.codex`), `[mcp_servers.<name>]`.
            Client::Codex => {
                let dir = match dirs.var("CODEX_HOME") {
                    Some(dir) => dir,
                    None => home()?.join(".codex"),
                };
                target(dir.join("config.toml"), "mcp_servers", Dialect::Toml)
            }
            // https://block.github.io/goose/docs/guides/config-files (documentation/docs/guides/
            // config-files.md in aaif-goose/goose).
            Client::Goose => {
                let dir = match dirs.os {
                    Os::Windows => dirs
                        .windows_var(self, "APPDATA")?
                        .join("Block")
                        .join("goose")
                        .join("config"),
                    Os::MacOs => home()?.join(".config").join("goose"),
                    Os::Linux => dirs.xdg_config(self)?.join("goose"),
                };
                target(dir.join("config.yaml"), "extensions", Dialect::Yaml)
            }
            // opencode finds its global config through xdg-basedir, ~/.config on every OS
            // (https://opencode.ai/docs/config/); it reads JSONC.
            Client::Opencode => {
                let dir = dirs.xdg_config(self)?.join("opencode");
                let file = opencode_file(&dir);
                target(dir.join(file), "mcp", Dialect::Jsonc)
            }
        })
    }

    /// The entry that launches the bridge, in this client's shape.
    pub fn entry(self, launch: &Launch) -> Value {
        let command = launch.command.to_string_lossy();
        match self {
            Client::ClaudeCode => json!({
                "type": "stdio", "command": command, "args": launch.args, "env": {},
            }),
            Client::Vscode => json!({ "type": "stdio", "command": command, "args": launch.args }),
            Client::Zed => json!({
                "source": "custom", "command": command, "args": launch.args, "env": {},
            }),
            Client::ClaudeDesktop
            | Client::Cursor
            | Client::Windsurf
            | Client::Lmstudio
            | Client::Gemini
            | Client::Codex => json!({ "command": command, "args": launch.args }),
            // `ExtensionConfig::Stdio` and the `enabled` of its entry (crates/goose/src/agents/
            // extension.rs in aaif-goose/goose): `name`, `cmd` and `args` are required.
            Client::Goose => json!({
                "type": "stdio",
                "name": ENTRY_NAME,
                "description": "Chat anonymously with strangers (mcp-chat)",
                "cmd": command,
                "args": launch.args,
                "enabled": true,
                "envs": {},
                "env_keys": [],
                "timeout": 300,
            }),
            // `{"type": "local", "command": [...], "enabled": true}`; `enabled` is required
            // since opencode 1.15 (https://opencode.ai/docs/mcp-servers/).
            Client::Opencode => {
                let mut argv = vec![command.into_owned()];
                argv.extend(launch.args.iter().cloned());
                json!({ "type": "local", "command": argv, "enabled": true })
            }
        }
    }
}

/// The key of a project in `~/.claude.json`'s `projects`: its absolute directory, with forward
/// slashes on Windows (as Claude Code writes it).
fn claude_project_key(dir: &Path) -> String {
    let key = dir.to_string_lossy();
    if cfg!(windows) {
        key.replace('\\', "/")
    } else {
        key.into_owned()
    }
}

/// How a client starts the bridge: an absolute path and non-secret arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Absolute path of the bridge executable.
    pub command: PathBuf,
    /// Arguments (`--relay`, `--display-name`); never a secret, since other local users can
    /// read a process's arguments.
    pub args: Vec<String>,
}

/// The command an installed entry launches, read back from a client's entry: `command`,
/// Goose's `cmd`, or the first element of opencode's `command` list.
pub fn entry_command(entry: &Value) -> Option<&Path> {
    let command = entry.get("command").or_else(|| entry.get("cmd"))?;
    match command {
        Value::Array(argv) => argv.first()?.as_str(),
        other => other.as_str(),
    }
    .map(Path::new)
}

/// The arguments an installed entry passes: `args`, or the rest of opencode's `command` list.
pub fn entry_args(entry: &Value) -> Vec<&str> {
    let args = match entry.get("command") {
        Some(Value::Array(argv)) => argv.get(1..).unwrap_or_default(),
        _ => entry
            .get("args")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice),
    };
    args.iter().filter_map(Value::as_str).collect()
}

/// The environment an installed entry sets for the bridge (`env`; opencode's `environment`,
/// Goose's `envs`).
pub fn entry_env<'a>(entry: &'a Value, key: &str) -> Option<&'a str> {
    ["env", "environment", "envs"]
        .iter()
        .find_map(|field| entry.get(field)?.get(key)?.as_str())
}

/// Whether the user switched the entry off (`"disabled": true`, or `enabled` false).
pub fn entry_disabled(entry: &Value) -> bool {
    entry.get("disabled") == Some(&Value::Bool(true))
        || entry.get("enabled") == Some(&Value::Bool(false))
}

/// `opencode.jsonc` where the user has one (and no `opencode.json`), else `opencode.json`.
fn opencode_file(dir: &Path) -> &'static str {
    if !dir.join("opencode.json").exists() && dir.join("opencode.jsonc").exists() {
        "opencode.jsonc"
    } else {
        "opencode.json"
    }
}

/// The `--relay` an installed entry passes, if any.
pub fn entry_relay(entry: &Value) -> Option<&str> {
    entry_arg_str(entry, "--relay")
}

/// The value an installed entry passes after `flag` (e.g. `--display-name`), if any.
pub fn entry_arg(entry: &Value, flag: &str) -> Option<String> {
    entry_arg_str(entry, flag).map(str::to_owned)
}

fn entry_arg_str<'a>(entry: &'a Value, flag: &str) -> Option<&'a str> {
    let args = entry_args(entry);
    let position = args.iter().position(|a| *a == flag)?;
    args.get(position + 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs<'a>(os: Os, env: &'a dyn Fn(&str) -> Option<String>) -> HostDirs<'a> {
        let home = match os {
            Os::Windows => PathBuf::from(r"C:\Users\ann"),
            Os::MacOs => PathBuf::from("/Users/ann"),
            Os::Linux => PathBuf::from("/home/ann"),
        };
        HostDirs {
            os,
            home: Some(home),
            cwd: PathBuf::from("/work/proj"),
            env,
        }
    }

    fn located(client: Client, os: Os, env: &dyn Fn(&str) -> Option<String>) -> String {
        let target = client.locate(Scope::User, &dirs(os, env)).unwrap();
        target.path.to_string_lossy().replace('\\', "/")
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn windows_env(key: &str) -> Option<String> {
        match key {
            "APPDATA" => Some(r"C:\Users\ann\AppData\Roaming".into()),
            "LOCALAPPDATA" => Some(r"C:\Users\ann\AppData\Local".into()),
            _ => None,
        }
    }

    #[test]
    fn macos_layout() {
        let at = |c| located(c, Os::MacOs, &no_env);
        assert_eq!(
            at(Client::ClaudeDesktop),
            "/Users/ann/Library/Application Support/Claude/claude_desktop_config.json"
        );
        assert_eq!(at(Client::ClaudeCode), "/Users/ann/.claude.json");
        assert_eq!(at(Client::Cursor), "/Users/ann/.cursor/mcp.json");
        assert_eq!(
            at(Client::Vscode),
            "/Users/ann/Library/Application Support/Code/User/mcp.json"
        );
        assert_eq!(
            at(Client::Windsurf),
            "/Users/ann/.codeium/windsurf/mcp_config.json"
        );
        assert_eq!(at(Client::Zed), "/Users/ann/.config/zed/settings.json");
        assert_eq!(at(Client::Lmstudio), "/Users/ann/.lmstudio/mcp.json");
        assert_eq!(at(Client::Gemini), "/Users/ann/.gemini/settings.json");
        assert_eq!(at(Client::Codex), "/Users/ann/.codex/config.toml");
        assert_eq!(at(Client::Goose), "/Users/ann/.config/goose/config.yaml");
        assert_eq!(
            at(Client::Opencode),
            "/Users/ann/.config/opencode/opencode.json"
        );
    }

    #[test]
    fn cli_hosts_honour_their_variables() {
        let env = |k: &str| match k {
            "CODEX_HOME" => Some("/codex".to_owned()),
            "XDG_CONFIG_HOME" => Some("/xdg".to_owned()),
            _ => None,
        };
        assert_eq!(
            located(Client::Codex, Os::Linux, &env),
            "/codex/config.toml"
        );
        assert_eq!(
            located(Client::Goose, Os::Linux, &env),
            "/xdg/goose/config.yaml"
        );
        assert_eq!(
            located(Client::Opencode, Os::Linux, &env),
            "/xdg/opencode/opencode.json"
        );
        assert_eq!(
            located(Client::Goose, Os::Windows, &windows_env),
            "C:/Users/ann/AppData/Roaming/Block/goose/config/config.yaml"
        );
        let project = |c: Client| {
            c.locate(Scope::Project, &dirs(Os::Linux, &no_env))
                .map(|t| (t.path, t.dialect))
        };
        assert_eq!(
            project(Client::Codex).unwrap(),
            (
                PathBuf::from("/work/proj/.codex/config.toml"),
                Dialect::Toml
            )
        );
        assert_eq!(
            project(Client::Gemini).unwrap().0,
            Path::new("/work/proj/.gemini/settings.json")
        );
        assert_eq!(
            project(Client::Opencode).unwrap().0,
            Path::new("/work/proj/opencode.json")
        );
        assert!(project(Client::Goose).is_err());
    }

    #[test]
    fn linux_layout_follows_xdg() {
        let at = |c| located(c, Os::Linux, &no_env);
        assert_eq!(
            at(Client::ClaudeDesktop),
            "/home/ann/.config/Claude/claude_desktop_config.json"
        );
        assert_eq!(at(Client::Vscode), "/home/ann/.config/Code/User/mcp.json");
        assert_eq!(at(Client::Zed), "/home/ann/.config/zed/settings.json");
        let xdg = |k: &str| (k == "XDG_CONFIG_HOME").then(|| "/xdg".to_owned());
        assert_eq!(
            located(Client::ClaudeDesktop, Os::Linux, &xdg),
            "/xdg/Claude/claude_desktop_config.json"
        );
        assert_eq!(
            located(Client::Zed, Os::Linux, &xdg),
            "/xdg/zed/settings.json"
        );
        // A relative XDG_CONFIG_HOME is invalid by the spec and ignored.
        let relative = |k: &str| (k == "XDG_CONFIG_HOME").then(|| "xdg".to_owned());
        assert_eq!(
            located(Client::Zed, Os::Linux, &relative),
            "/home/ann/.config/zed/settings.json"
        );
    }

    #[test]
    fn windows_layout() {
        let at = |c| located(c, Os::Windows, &windows_env);
        assert_eq!(
            at(Client::ClaudeDesktop),
            "C:/Users/ann/AppData/Roaming/Claude/claude_desktop_config.json"
        );
        assert_eq!(
            at(Client::Vscode),
            "C:/Users/ann/AppData/Roaming/Code/User/mcp.json"
        );
        assert_eq!(
            at(Client::Zed),
            "C:/Users/ann/AppData/Roaming/Zed/settings.json"
        );
        assert_eq!(at(Client::Cursor), "C:/Users/ann/.cursor/mcp.json");
        assert_eq!(at(Client::Lmstudio), "C:/Users/ann/.lmstudio/mcp.json");
        let err = Client::Vscode
            .locate(Scope::User, &dirs(Os::Windows, &no_env))
            .unwrap_err();
        assert!(err.to_string().contains("APPDATA"), "{err}");
    }

    #[test]
    fn windows_claude_desktop_picks_the_file_the_msix_app_reads() {
        let root = std::env::temp_dir().join(format!("mcp-chat-msix-{}", std::process::id()));
        let (local, roaming) = (root.join("Local"), root.join("Roaming"));
        let (local_str, roaming_str) = (
            local.to_string_lossy().into_owned(),
            roaming.to_string_lossy().into_owned(),
        );
        let env = move |key: &str| match key {
            "LOCALAPPDATA" => Some(local_str.clone()),
            "APPDATA" => Some(roaming_str.clone()),
            _ => None,
        };
        let file = "claude_desktop_config.json";
        let classic = roaming.join("Claude").join(file);
        let package = local.join("Packages").join(CLAUDE_MSIX_PACKAGE);
        let msix = package
            .join("LocalCache")
            .join("Roaming")
            .join("Claude")
            .join(file);
        let chosen = || {
            Client::ClaudeDesktop
                .locate(Scope::User, &dirs(Os::Windows, &env))
                .unwrap()
                .path
        };
        // No MSIX app: the classic file.
        assert_eq!(chosen(), classic);
        // MSIX app, no file anywhere: its own location.
        std::fs::create_dir_all(&package).unwrap();
        assert_eq!(chosen(), msix);
        // MSIX app, servers kept from a classic install: that file, which the app still reads.
        std::fs::create_dir_all(classic.parent().unwrap()).unwrap();
        std::fs::write(&classic, "{}").unwrap();
        assert_eq!(chosen(), classic);
        // Its own file exists: that one wins.
        std::fs::create_dir_all(msix.parent().unwrap()).unwrap();
        std::fs::write(&msix, "{}").unwrap();
        assert_eq!(chosen(), msix);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn zed_on_macos_ignores_xdg() {
        let xdg = |k: &str| (k == "XDG_CONFIG_HOME").then(|| "/xdg".to_owned());
        assert_eq!(
            located(Client::Zed, Os::MacOs, &xdg),
            "/Users/ann/.config/zed/settings.json"
        );
    }

    #[test]
    fn claude_code_honours_its_config_dir() {
        let env = |k: &str| (k == "CLAUDE_CONFIG_DIR").then(|| "/cc".to_owned());
        assert_eq!(
            located(Client::ClaudeCode, Os::Linux, &env),
            "/cc/.claude.json"
        );
    }

    #[test]
    fn project_scope() {
        let project = |c: Client| c.locate(Scope::Project, &dirs(Os::Linux, &no_env));
        assert_eq!(
            project(Client::ClaudeCode).unwrap().path,
            Path::new("/work/proj/.mcp.json")
        );
        let vscode = project(Client::Vscode).unwrap();
        assert_eq!(vscode.path, Path::new("/work/proj/.vscode/mcp.json"));
        assert_eq!(vscode.servers_key, "servers");
        assert_eq!(
            project(Client::Cursor).unwrap().path,
            Path::new("/work/proj/.cursor/mcp.json")
        );
        assert_eq!(
            project(Client::Zed).unwrap().path,
            Path::new("/work/proj/.zed/settings.json")
        );
        for client in [Client::ClaudeDesktop, Client::Windsurf, Client::Lmstudio] {
            assert!(matches!(project(client), Err(LocateError::NoScope { .. })));
        }
    }

    #[test]
    fn claude_codes_local_scope_is_this_directory_in_its_state_file() {
        let local = Client::ClaudeCode
            .locate(Scope::Local, &dirs(Os::Linux, &no_env))
            .unwrap();
        assert_eq!(local.path, Path::new("/home/ann/.claude.json"));
        assert_eq!(local.within, ["projects", "/work/proj"]);
        assert_eq!(local.servers_key, "mcpServers");
        let err = Client::Cursor
            .locate(Scope::Local, &dirs(Os::Linux, &no_env))
            .unwrap_err();
        assert!(err.to_string().contains("no local scope"), "{err}");
        // Precedence order: local, project, user.
        let places = Client::ClaudeCode.places(&dirs(Os::Linux, &no_env));
        let scopes: Vec<_> = places.iter().map(|t| t.scope).collect();
        assert_eq!(scopes, [Scope::Local, Scope::Project, Scope::User]);
        let scopes: Vec<_> = Client::Windsurf
            .places(&dirs(Os::Linux, &no_env))
            .iter()
            .map(|t| t.scope)
            .collect();
        assert_eq!(scopes, [Scope::User]);
    }

    #[test]
    fn entries_have_each_clients_shape() {
        let launch = Launch {
            command: PathBuf::from("/opt/mcp-chat-bridge"),
            args: vec!["--relay".into(), "https://chat.example/mcp".into()],
        };
        let vscode = Client::Vscode.entry(&launch);
        assert_eq!(vscode["type"], "stdio");
        assert_eq!(Client::Zed.entry(&launch)["source"], "custom");
        assert_eq!(Client::ClaudeCode.entry(&launch)["type"], "stdio");
        let desktop = Client::ClaudeDesktop.entry(&launch);
        assert_eq!(
            desktop,
            json!({"command": "/opt/mcp-chat-bridge", "args": ["--relay", "https://chat.example/mcp"]})
        );
        assert_eq!(entry_relay(&desktop), Some("https://chat.example/mcp"));
        assert_eq!(
            entry_command(&desktop),
            Some(Path::new("/opt/mcp-chat-bridge"))
        );
        // opencode: one command list; Goose: `cmd`.
        let opencode = Client::Opencode.entry(&launch);
        assert_eq!(
            opencode["command"],
            json!([
                "/opt/mcp-chat-bridge",
                "--relay",
                "https://chat.example/mcp"
            ])
        );
        assert_eq!(
            entry_command(&opencode),
            Some(Path::new("/opt/mcp-chat-bridge"))
        );
        assert_eq!(entry_relay(&opencode), Some("https://chat.example/mcp"));
        let goose = Client::Goose.entry(&launch);
        assert_eq!(goose["type"], "stdio");
        assert_eq!(
            entry_command(&goose),
            Some(Path::new("/opt/mcp-chat-bridge"))
        );
        assert_eq!(entry_relay(&goose), Some("https://chat.example/mcp"));
        assert!(!entry_disabled(&goose));
        assert!(entry_disabled(&json!({"enabled": false})));
    }
}
