//! The MCP Bundle for Claude Desktop (`install/mcpb/`) and the bridge's entry for the official
//! MCP Registry (`install/server.json`), issue 16.
//!
//! The manifest is checked against the contract and the bridge's settings here in Rust; the
//! official MCP Bundle tool (npm `@anthropic-ai/mcpb`, pinned in ui-tests/package.json) then
//! validates it and packs this build's bridge with `install/mcpb/pack.sh` (what the release
//! runs), and the unpacked bundle is started the way Claude Desktop starts it. The registry
//! entry is validated against the registry's published schema with Ajv in strict mode
//! (`install/registry/server-json.mjs`, also what the release runs).
//!
//! The Node tools need `npm ci --prefix ui-tests` (which brings its own Node 22). Without them
//! those tests must not look as if they passed: they write a banner past the test harness's
//! capture and return, or fail when `CI` is set (`.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mcp_chat::pane;
use mcp_chat_bridge::settings;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{Bridge, Relay, temp_dir};

/// npm packages the tests run (pinned in ui-tests/package.json and its lockfile).
const PACKAGES: [&str; 3] = ["@anthropic-ai/mcpb", "ajv", "ajv-formats"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the bridge crate is in the workspace")
        .to_path_buf()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn manifest() -> Value {
    read_json(&root().join("install/mcpb/manifest.json"))
}

fn server_json() -> Value {
    read_json(&root().join("install/server.json"))
}

/// The pinned Node and the bundle tool, found on this machine.
struct NodeTools {
    node: PathBuf,
    mcpb: PathBuf,
}

impl NodeTools {
    /// Finds them, or says loudly what is missing (and panics under `CI`).
    fn find(test: &str) -> Option<Self> {
        let ui = root().join("ui-tests");
        let node = ui.join("node_modules/.bin/node");
        let mut missing = Vec::new();
        let runs = Command::new(&node)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|out| out.status.success() && out.stdout.starts_with(b"v22."));
        if !runs {
            missing.push(format!(
                "the pinned Node at {} does not run (npm ci --prefix ui-tests)",
                node.display()
            ));
        }
        for package in PACKAGES {
            if !ui
                .join("node_modules")
                .join(package)
                .join("package.json")
                .is_file()
            {
                missing.push(format!(
                    "ui-tests/node_modules/{package} (npm ci --prefix ui-tests)"
                ));
            }
        }
        testkit::needs("BUNDLE AND REGISTRY TESTS DID NOT RUN", test, &missing).then(|| Self {
            node,
            mcpb: ui.join("node_modules/@anthropic-ai/mcpb/dist/cli/cli.js"),
        })
    }

    /// Runs `node <args>` in the repository root.
    fn node(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
        let mut command = Command::new(&self.node);
        for arg in args {
            command.arg(arg);
        }
        command
            .current_dir(root())
            .stdin(Stdio::null())
            .output()
            .expect("run the pinned Node")
    }

    /// Runs the bundle tool.
    fn mcpb(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&self.mcpb];
        all.extend_from_slice(args);
        self.node(&all)
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The tools a host that renders MCP Apps (Claude Desktop does) offers its model: the chat
/// tools and the pane's `open_chat`, not the pane's app-only tools. As (name, title).
fn model_tools() -> Vec<(String, String)> {
    pane::tools_for(true)
        .into_iter()
        .map(|tool| serde_json::to_value(tool).unwrap())
        .filter(|tool| {
            tool["_meta"]["ui"]["visibility"]
                .as_array()
                .is_none_or(|who| who.contains(&json!("model")))
        })
        .map(|tool| {
            (
                tool["name"].as_str().unwrap().to_owned(),
                tool["title"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Every `${user_config.KEY}` in a string, array or object.
fn user_config_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${user_config.") {
                let after = &rest[start + "${user_config.".len()..];
                let end = after
                    .find('}')
                    .expect("a closed ${user_config...} reference");
                out.push(after[..end].to_owned());
                rest = &after[end..];
            }
        }
        Value::Array(items) => items.iter().for_each(|v| user_config_refs(v, out)),
        Value::Object(map) => map.values().for_each(|v| user_config_refs(v, out)),
        _ => {}
    }
}

/// The Rust target triple of this machine, as far as install/mcpb/pack.sh reads it.
fn host_target() -> String {
    let arch = std::env::consts::ARCH;
    match std::env::consts::OS {
        "macos" => format!("{arch}-apple-darwin"),
        "windows" => format!("{arch}-pc-windows-msvc"),
        _ => format!("{arch}-unknown-linux-gnu"),
    }
}

/// The platform name MCP Bundles use for this machine.
fn host_platform() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        "windows" => "win32",
        _ => "linux",
    }
}

/// The target triples the release workflow builds (its matrix).
fn release_targets() -> Vec<String> {
    let workflow = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    let targets: Vec<String> = workflow
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let rest = line.strip_prefix("- { target: ")?;
            Some(rest.split([',', ' ']).next()?.to_owned())
        })
        .collect();
    assert!(
        targets.len() >= 5,
        "release.yml's matrix lists its targets as `- {{ target: ..., os: ... }}`: {targets:?}"
    );
    targets
}

/// What Claude Desktop shows and runs matches the contract and the bridge's own settings: the
/// tool list is the one a UI host's model gets (names and titles), the relay URL is a user
/// setting with the bridge's default and goes in the bridge's own variable, every setting the
/// server config uses is always filled in, and the icon is a 512×512 PNG.
#[test]
fn bundle_manifest_matches_the_contract_and_the_settings() {
    let manifest = manifest();
    assert_eq!(manifest["manifest_version"], "0.3");
    assert_eq!(manifest["name"], "mcp-chat");
    assert_eq!(manifest["version"], env!("CARGO_PKG_VERSION"));

    let listed: Vec<(String, String)> = manifest["tools"]
        .as_array()
        .expect("a tools list")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["description"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let contract = model_tools();
    assert_eq!(
        listed, contract,
        "install/mcpb/manifest.json's tools must be the contract's model-visible tools, in \
         order, each described by its title"
    );
    assert!(
        contract.iter().any(|(name, _)| name == pane::OPEN_CHAT)
            && mcp_chat::tools::TOOL_NAMES
                .iter()
                .all(|name| contract.iter().any(|(n, _)| n == name))
    );
    assert_eq!(manifest["tools_generated"], false);

    let server = &manifest["server"];
    assert_eq!(server["type"], "binary");
    assert_eq!(server["entry_point"], "server/mcp-chat-bridge");
    let config = &server["mcp_config"];
    assert_eq!(config["command"], "${__dirname}/server/mcp-chat-bridge");
    assert_eq!(
        config["platform_overrides"]["win32"]["command"],
        "${__dirname}/server/mcp-chat-bridge.exe"
    );
    assert_eq!(config["args"], json!([]));
    assert_eq!(
        config["env"],
        json!({
            settings::ENV_RELAY: "${user_config.relay_url}",
            settings::ENV_DISPLAY_NAME: "${user_config.display_name}",
            settings::ENV_ACCESS_TOKEN: "${user_config.access_token}",
        })
    );
    assert_eq!(manifest["user_config"]["access_token"]["sensitive"], true);
    let relay = &manifest["user_config"]["relay_url"];
    assert_eq!(relay["type"], "string");
    assert_eq!(relay["default"], settings::DEFAULT_RELAY_URL);

    // Claude Desktop passes a blank optional field to the server as the literal text
    // "${user_config.KEY}" (reported against Desktop 1.25927 in stickerdaniel/linkedin-mcp-server
    // #678; modelcontextprotocol/mcpb #250-#252). The relay URL is required and has a default,
    // so it is always filled; the optional fields are only ones the bridge reads as unset when
    // they arrive unfilled (`settings::unfilled_placeholder`, checked by starting the bundled
    // bridge below).
    let mut refs = Vec::new();
    user_config_refs(config, &mut refs);
    assert!(!refs.is_empty());
    for key in &refs {
        let field = &manifest["user_config"][key];
        assert!(
            field.is_object(),
            "mcp_config uses undeclared user_config.{key}"
        );
        if field["required"] == true {
            assert!(
                field["default"].is_string(),
                "user_config.{key} needs a default"
            );
        } else {
            assert!(
                ["display_name", "access_token"].contains(&key.as_str()),
                "user_config.{key} is optional, so it may arrive unfilled: the bridge must \
                 read it as unset (extend settings::unfilled_placeholder's callers and this \
                 list)"
            );
        }
    }
    assert_eq!(manifest["user_config"]["relay_url"]["required"], true);
    let declared = manifest["user_config"].as_object().unwrap();
    assert!(
        declared.keys().all(|k| refs.contains(k)),
        "every user_config field is used"
    );

    assert_eq!(
        manifest["compatibility"]["platforms"],
        json!(["darwin", "win32", "linux"])
    );
    assert_eq!(manifest["icon"], "icon.png");
    let icon = std::fs::read(root().join("install/mcpb/icon.png")).unwrap();
    assert_eq!(&icon[..8], b"\x89PNG\r\n\x1a\n", "icon.png is a PNG");
    assert_eq!(&icon[12..16], b"IHDR");
    let width = u32::from_be_bytes(icon[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(icon[20..24].try_into().unwrap());
    assert_eq!((width, height), (512, 512), "Claude Desktop wants 512×512");
}

/// The registry entry describes exactly what a release publishes: one bundle per target of the
/// release workflow, under the installers' release address and the bridge's version, with the
/// bridge's own environment variables and defaults.
#[test]
fn registry_entry_matches_the_release_and_the_settings() {
    let doc = server_json();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        doc["$schema"],
        "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
    );
    assert_eq!(doc["version"], version);
    let schema = read_json(&root().join("install/registry/server.schema.json"));
    assert_eq!(
        schema["$id"], doc["$schema"],
        "the vendored schema is that version"
    );

    // The installers' release address (install.sh's setting).
    let install_sh = std::fs::read_to_string(root().join("install/install.sh")).unwrap();
    let releases = install_sh
        .lines()
        .find_map(|l| l.strip_prefix("MCP_CHAT_REPO_RELEASES="))
        .expect("install.sh names its release address")
        .trim_matches('"');
    let repo = releases.strip_suffix("/releases").unwrap();
    assert_eq!(doc["repository"]["url"], repo);
    assert_eq!(doc["repository"]["source"], "github");
    let owner = repo
        .trim_start_matches("https://github.com/")
        .split('/')
        .next();
    assert_eq!(
        doc["name"],
        format!("io.github.{}/mcp-chat", owner.unwrap())
    );

    let packages = doc["packages"].as_array().unwrap();
    let identifiers: Vec<&str> = packages
        .iter()
        .map(|p| p["identifier"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = release_targets()
        .iter()
        .map(|t| format!("{releases}/download/v{version}/mcp-chat-{t}.mcpb"))
        .collect();
    assert_eq!(identifiers, expected, "one bundle per release target");
    let names = [
        settings::ENV_RELAY,
        settings::ENV_DISPLAY_NAME,
        settings::ENV_ACCESS_TOKEN,
    ];
    for package in packages {
        assert_eq!(package["registryType"], "mcpb");
        assert_eq!(package["version"], version);
        assert_eq!(package["transport"], json!({ "type": "stdio" }));
        // The registry requires "mcp" in a bundle's address; the release fills in the hash.
        assert!(package["identifier"].as_str().unwrap().contains("mcp"));
        assert!(package.get("fileSha256").is_none());
        let vars = package["environmentVariables"].as_array().unwrap();
        let listed: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(listed, names);
        assert_eq!(vars[0]["default"], settings::DEFAULT_RELAY_URL);
        assert_eq!(vars[2]["isSecret"], true);
    }
}

/// `mcpb validate` accepts the manifest; `install/mcpb/pack.sh` packs this build's bridge with
/// `mcpb pack`; the bundle holds the manifest (narrowed to this platform), the icon and the
/// very binary, executable (a Windows bundle names `server/mcp-chat-bridge.exe` as its entry
/// point; a target without a Claude Desktop is refused); started from the unpacked bundle as
/// Claude Desktop starts it, the
/// bridge reaches a relay and lists the manifest's tools to the model. The registry entry
/// validates against the registry's schema, and so does the release's copy of it with every
/// bundle's checksum filled in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_packs_this_build_and_the_registry_entry_validates() {
    let test = "bundle::bundle_packs_this_build_and_the_registry_entry_validates";
    let Some(tools) = NodeTools::find(test) else {
        return;
    };
    let root = root();
    let work = temp_dir("bundle");

    let out = tools.mcpb(&[&"validate", &"install/mcpb/manifest.json"]);
    assert!(
        out.status.success(),
        "mcpb validate failed:\n{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Manifest schema validation passes!"),
        "{}",
        text(&out)
    );

    // The release's step: pack.sh with a directory holding the built bridge.
    let bin_dir = work.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let fresh = Path::new(env!("CARGO_BIN_EXE_mcp-chat-bridge"));
    std::fs::copy(fresh, bin_dir.join("mcp-chat-bridge")).unwrap();
    let dist = work.join("dist");
    let target = host_target();
    let out = Command::new("sh")
        .arg(root.join("install/mcpb/pack.sh"))
        .arg(&target)
        .arg(&bin_dir)
        .arg(&dist)
        .env("NODE", &tools.node)
        .stdin(Stdio::null())
        .output()
        .expect("run install/mcpb/pack.sh");
    assert!(out.status.success(), "pack.sh failed:\n{}", text(&out));
    let name = format!("mcp-chat-{target}.mcpb");
    let bundle = dist.join(&name);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        bundle.display().to_string(),
        "pack.sh prints the bundle's path, and only that"
    );
    let sums = std::fs::read_to_string(dist.join(format!("{name}.sha256"))).unwrap();
    assert_eq!(sums, format!("{}  {name}\n", sha256_hex(&bundle)));

    let unpacked = work.join("unpacked");
    let out = tools.mcpb(&[&"unpack", &bundle, &unpacked]);
    assert!(out.status.success(), "mcpb unpack failed:\n{}", text(&out));
    let mut files: Vec<String> = walk(&unpacked)
        .iter()
        .map(|p| p.strip_prefix(&unpacked).unwrap().display().to_string())
        .collect();
    files.sort();
    let mut expected = vec![
        "README.md".to_owned(),
        "icon.png".to_owned(),
        "manifest.json".to_owned(),
        "server/mcp-chat-bridge".to_owned(),
    ];
    for license in std::fs::read_dir(&root).unwrap() {
        let file = license.unwrap().file_name().to_string_lossy().into_owned();
        if file.starts_with("LICENSE") {
            expected.push(file);
        }
    }
    expected.sort();
    assert_eq!(files, expected, "the bundle's files");
    let mut narrowed = manifest();
    narrowed["compatibility"]["platforms"] = json!([host_platform()]);
    assert_eq!(read_json(&unpacked.join("manifest.json")), narrowed);
    assert_eq!(
        std::fs::read(unpacked.join("icon.png")).unwrap(),
        std::fs::read(root.join("install/mcpb/icon.png")).unwrap()
    );
    let binary = unpacked.join("server/mcp-chat-bridge");
    assert!(
        std::fs::read(&binary).unwrap() == std::fs::read(fresh).unwrap(),
        "the bundle holds this build's bridge"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&binary).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "the bundled bridge is executable");
    }
    let out = tools.mcpb(&[&"validate", &unpacked.join("manifest.json")]);
    assert!(out.status.success(), "the packed manifest:\n{}", text(&out));

    // A Windows bundle (a stand-in for the .exe: only the packing is looked at): the entry
    // point is the .exe, the platform win32. A target no Claude Desktop runs on is refused.
    let win_bin = work.join("win-bin");
    std::fs::create_dir_all(&win_bin).unwrap();
    std::fs::write(win_bin.join("mcp-chat-bridge.exe"), b"MZ stand-in").unwrap();
    let pack = |target: &str, bin: &Path| {
        Command::new("sh")
            .arg(root.join("install/mcpb/pack.sh"))
            .arg(target)
            .arg(bin)
            .arg(work.join("win-dist"))
            .env("NODE", &tools.node)
            .stdin(Stdio::null())
            .output()
            .expect("run install/mcpb/pack.sh")
    };
    let out = pack("x86_64-pc-windows-msvc", &win_bin);
    assert!(out.status.success(), "pack.sh for Windows:\n{}", text(&out));
    let win_unpacked = work.join("win-unpacked");
    let win_bundle = work.join("win-dist/mcp-chat-x86_64-pc-windows-msvc.mcpb");
    let out = tools.mcpb(&[&"unpack", &win_bundle, &win_unpacked]);
    assert!(out.status.success(), "mcpb unpack failed:\n{}", text(&out));
    let mut windows = manifest();
    windows["compatibility"]["platforms"] = json!(["win32"]);
    windows["server"]["entry_point"] = json!("server/mcp-chat-bridge.exe");
    assert_eq!(read_json(&win_unpacked.join("manifest.json")), windows);
    assert_eq!(
        std::fs::read(win_unpacked.join("server/mcp-chat-bridge.exe")).unwrap(),
        b"MZ stand-in"
    );
    let out = pack("wasm32-unknown-unknown", &win_bin);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Claude Desktop platform"));

    // Started as Claude Desktop starts it: the command with ${__dirname} filled in, the env
    // with the user's relay URL.
    let relay = Relay::start().await;
    let config = &narrowed["server"]["mcp_config"];
    let command = config["command"]
        .as_str()
        .unwrap()
        .replace("${__dirname}", &unpacked.display().to_string());
    let relay_env = config["env"][settings::ENV_RELAY]
        .as_str()
        .unwrap()
        .replace("${user_config.relay_url}", &relay.url);
    // The optional fields left blank: Desktop passes them unfilled.
    let display_env = config["env"][settings::ENV_DISPLAY_NAME].as_str().unwrap();
    let token_env = config["env"][settings::ENV_ACCESS_TOKEN].as_str().unwrap();
    let mut bridge = Bridge::spawn_program(
        Path::new(&command),
        &relay_env,
        temp_dir("bundle-bridge"),
        &[
            (settings::ENV_DISPLAY_NAME, display_env),
            (settings::ENV_ACCESS_TOKEN, token_env),
        ],
        None,
    );
    bridge.initialize_ui().await;
    let status = bridge.ok(mcp_chat::tools::CHAT_STATUS, json!({})).await;
    assert!(status["state"].is_string(), "{status}");
    // Unfilled means unset: the default name is used, not the placeholder's text.
    let queued = bridge.ok(mcp_chat::tools::ENTER_QUEUE, json!({})).await;
    assert_eq!(
        queued["display_name"],
        mcp_chat::limits::DEFAULT_DISPLAY_NAME,
        "an unfilled display name is not used: {queued}"
    );
    let listed = bridge.request("tools/list", json!({})).await;
    let names: Vec<String> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["_meta"]["ui"]["visibility"]
                .as_array()
                .is_none_or(|who| who.contains(&json!("model")))
        })
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    let manifest_names: Vec<String> = narrowed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names, manifest_names,
        "the bundled bridge lists the manifest's tools"
    );
    drop(bridge);
    relay.stop().await;

    // The registry entry, as committed and as the release writes it.
    let checker = root.join("install/registry/server-json.mjs");
    let out = tools.node(&[&checker, &"check", &"install/server.json"]);
    assert!(out.status.success(), "install/server.json:\n{}", text(&out));
    for target in release_targets() {
        let file = format!("mcp-chat-{target}.mcpb");
        if file != name {
            std::fs::copy(&bundle, dist.join(&file)).unwrap();
            let line = format!("{}  {file}\n", sha256_hex(&dist.join(&file)));
            std::fs::write(dist.join(format!("{file}.sha256")), line).unwrap();
        }
    }
    let tag = format!("v{}", env!("CARGO_PKG_VERSION"));
    let out = tools.node(&[&checker, &"release", &dist, &tag]);
    assert!(
        out.status.success(),
        "server-json.mjs release:\n{}",
        text(&out)
    );
    let released = read_json(&dist.join("server.json"));
    for package in released["packages"].as_array().unwrap() {
        let file = package["identifier"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        assert_eq!(
            package["fileSha256"],
            sha256_hex(&dist.join(file)),
            "{file}"
        );
    }
    let mut unfilled = released.clone();
    for package in unfilled["packages"].as_array_mut().unwrap() {
        package.as_object_mut().unwrap().remove("fileSha256");
    }
    assert_eq!(
        unfilled,
        server_json(),
        "the release changes only the checksums"
    );
    // A tag of another version is refused.
    let out = tools.node(&[&checker, &"release", &dist, &"v0.0.0-not-this"]);
    assert!(!out.status.success(), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&work);
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
