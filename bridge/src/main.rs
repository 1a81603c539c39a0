//! `mcp-chat-bridge`: put a stdio MCP host (Claude Desktop, Cursor, ...) on an mcp-chat relay.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mcp_chat_bridge::clients::{self, Client, HostDirs, Launch, Os, Scope, Target};
use mcp_chat_bridge::doctor::Status;
use mcp_chat_bridge::identity::Identity;
use mcp_chat_bridge::install::{self, Action, Outcome};
use mcp_chat_bridge::logfile::RotatingLog;
use mcp_chat_bridge::settings::{self, Flags, Paths, Settings};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Chat anonymously with strangers from your AI desktop client.
///
/// Launched by the client over stdio; speaks MCP on stdin/stdout and connects to an mcp-chat
/// relay. The relay's access token and extra headers come from the environment
/// (MCP_CHAT_ACCESS_TOKEN, MCP_CHAT_HEADERS) or config.toml, never from the command line.
#[derive(Debug, Parser)]
#[command(name = "mcp-chat-bridge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Relay URL (env MCP_CHAT_RELAY), default http://127.0.0.1:8080/mcp. Several nodes of one
    /// relay, comma-separated, are tried in turn when one cannot be reached.
    #[arg(long, global = true)]
    relay: Option<String>,

    /// Name strangers see when the assistant does not choose one (env MCP_CHAT_DISPLAY_NAME).
    #[arg(long, global = true)]
    display_name: Option<String>,

    /// Use a fresh identity for this run instead of the stored one (env MCP_CHAT_EPHEMERAL=1).
    #[arg(long, global = true)]
    ephemeral: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the effective configuration and the files the bridge uses, then exit.
    Config,
    /// Add this bridge to a desktop client's MCP configuration (other entries stay as they are;
    /// the old file is backed up first).
    Install {
        /// The client to configure.
        #[arg(long, value_enum)]
        client: Client,
        /// The user's configuration, the project's in the current directory, or (Claude Code)
        /// the user's own for the current directory.
        #[arg(long, value_enum, default_value_t)]
        scope: Scope,
        /// Name strangers see, passed to the bridge as --display-name.
        #[arg(long)]
        name: Option<String>,
        /// Edit this file instead of the client's usual one (e.g. VS Code Insiders).
        #[arg(long, value_name = "PATH")]
        config_file: Option<PathBuf>,
        /// Show the change without writing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove this bridge from a desktop client's MCP configuration.
    Uninstall {
        /// The client to configure.
        #[arg(long, value_enum)]
        client: Client,
        /// The user's configuration, the project's in the current directory, or (Claude Code)
        /// the user's own for the current directory.
        #[arg(long, value_enum, default_value_t)]
        scope: Scope,
        /// Edit this file instead of the client's usual one.
        #[arg(long, value_name = "PATH")]
        config_file: Option<PathBuf>,
        /// Show the change without writing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the client entries, this binary, the bridge's files and the relay; say what to fix.
    Doctor,
}

fn main() -> ExitCode {
    match run_cli(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run_cli(cli: Cli) -> anyhow::Result<ExitCode> {
    // A bundle field the user left blank arrives as its unfilled placeholder: not set.
    let env = |key: &str| {
        std::env::var(key)
            .ok()
            .filter(|v| !settings::unfilled_placeholder(v))
    };
    let paths = Paths::resolve(&env)?;
    let flags = Flags {
        relay: cli.relay.clone(),
        display_name: cli.display_name.clone(),
        ephemeral: cli.ephemeral,
    };
    match cli.command {
        Some(Command::Install {
            client,
            scope,
            name,
            config_file,
            dry_run,
        }) => {
            let target = locate(client, scope, config_file, &env)?;
            // A re-install (an upgrade) without --relay or --name keeps the entry's own.
            let existing = install::read_entry(&target).ok().flatten();
            let kept = |flag: &str| existing.as_ref().and_then(|e| clients::entry_arg(e, flag));
            let relay = cli.relay.or_else(|| kept("--relay"));
            let name = name.or(cli.display_name).or_else(|| kept("--display-name"));
            let launch = launch_args(relay, name)?;
            return edit(&target, Action::Install(client.entry(&launch)), dry_run);
        }
        Some(Command::Uninstall {
            client,
            scope,
            config_file,
            dry_run,
        }) => {
            let target = locate(client, scope, config_file, &env)?;
            return edit(&target, Action::Uninstall, dry_run);
        }
        Some(Command::Doctor) => {
            let settings = Settings::resolve(&flags, &env, paths.clone());
            return doctor(settings, &paths, &env);
        }
        Some(Command::Config) => {
            print_config(&Settings::resolve(&flags, &env, paths)?);
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    let settings = Settings::resolve(&flags, &env, paths)?;
    init_logging(&settings, log_filter(&env)?);
    // Held until exit: the lock keeps other bridges off this identity slot.
    let identity = if settings.ephemeral {
        Identity::ephemeral()?
    } else {
        Identity::acquire(&settings.paths.config_dir)
            .context("cannot set up the anonymous identity")?
    };
    if let Some(path) = &identity.path {
        tracing::info!(identity_file = %path.display(), "using the stored identity");
    }
    tracing::info!(relay = %settings.relay_url, ephemeral = settings.ephemeral, "bridge starting");
    // One thread: events stay in order, and the bridge stays small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(mcp_chat_bridge::run(
        settings,
        identity.token.clone(),
        tokio::io::stdin(),
        tokio::io::stdout(),
        shutdown_signal(),
    ));
    tracing::info!("bridge stopped");
    // Reading stdin occupies a blocking thread that cannot be interrupted: after SIGTERM with
    // stdin still open, waiting for it would keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}

/// The bridge's own path and the arguments an installed entry passes it.
fn launch_args(relay: Option<String>, name: Option<String>) -> anyhow::Result<Launch> {
    // An absolute path: clients do not search PATH reliably (GUI apps on macOS get a minimal
    // one). Not canonicalized: a package manager's stable symlink (Homebrew's bin/) survives
    // upgrades that the versioned path behind it does not, and Windows would get `\\?\` paths.
    let command = std::env::current_exe().context("cannot tell where this executable is")?;
    if command.to_str().is_none() {
        anyhow::bail!(
            "the bridge's path {} is not valid UTF-8, which client configs cannot hold; \
             move it to a plain path",
            command.display()
        );
    }
    let in_cargo_target = command.components().any(|c| c.as_os_str() == "target")
        && command
            .parent()
            .is_some_and(|p| p.ends_with("debug") || p.ends_with("release"));
    if in_cargo_target {
        eprintln!(
            "note: {} is inside a cargo build directory; the entry breaks when it is cleaned. \
             `cargo install --path bridge` or the installer gives a stable path.",
            command.display()
        );
    }
    let mut args = Vec::new();
    if let Some(relay) = relay {
        args.push("--relay".to_owned());
        args.push(settings::check_relay_list(&relay)?.join(","));
    }
    if let Some(name) = name {
        let cleaned = mcp_chat::limits::sanitize_display_name(Some(&name));
        if cleaned != name.trim() {
            anyhow::bail!(
                "--name must be 1 to {} printable characters",
                mcp_chat::limits::MAX_DISPLAY_NAME_CHARS
            );
        }
        args.push("--display-name".to_owned());
        args.push(cleaned);
    }
    Ok(Launch { command, args })
}

fn host_dirs<'a>(env: &'a dyn Fn(&str) -> Option<String>) -> HostDirs<'a> {
    HostDirs {
        os: Os::current(),
        home: directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf()),
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        env,
    }
}

fn locate(
    client: Client,
    scope: Scope,
    config_file: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Target> {
    let mut target = client.locate(scope, &host_dirs(env))?;
    if let Some(path) = config_file {
        target.path = path;
    }
    Ok(target)
}

/// Plans the change, shows it, and writes it unless `dry_run`.
fn edit(target: &Target, action: Action, dry_run: bool) -> anyhow::Result<ExitCode> {
    let client = target.client.display_name();
    let path = target.path.display();
    let plan = install::plan(target, &action).context("nothing was written")?;
    let done = match plan.outcome {
        Outcome::Unchanged => {
            println!("{client}: mcp-chat is already set up in {path}; nothing to change.");
            return Ok(ExitCode::SUCCESS);
        }
        Outcome::Absent => {
            println!("{client}: {path} has no mcp-chat entry; nothing to change.");
            return Ok(ExitCode::SUCCESS);
        }
        Outcome::Added => "added mcp-chat to",
        Outcome::Updated => "updated mcp-chat in",
        Outcome::Removed => "removed mcp-chat from",
    };
    if dry_run {
        let would = match plan.outcome {
            Outcome::Added => "would add mcp-chat to",
            Outcome::Updated => "would update mcp-chat in",
            _ => "would remove mcp-chat from",
        };
        println!("{client}: {would} {path}:\n");
        print!("{}", install::diff(&plan));
        println!("\n(dry run: nothing was written)");
        return Ok(ExitCode::SUCCESS);
    }
    let backup = install::apply(&plan).context("nothing was written")?;
    println!("{client}: {done} {path}.");
    if let Some(backup) = backup {
        println!("The previous file is saved as {}.", backup.display());
    }
    println!("{}", target.client.reload_hint());
    Ok(ExitCode::SUCCESS)
}

/// Prints the doctor's report; fails when any check failed.
fn doctor(
    settings: Result<Settings, settings::SettingsError>,
    paths: &Paths,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe()
        .ok()
        .map(|exe| std::fs::canonicalize(&exe).unwrap_or(exe));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let checks = runtime.block_on(mcp_chat_bridge::doctor::run(
        exe.as_deref(),
        settings,
        paths,
        &host_dirs(env),
    ));
    let width = checks.iter().map(|c| c.subject.len()).max().unwrap_or(0);
    for check in &checks {
        println!(
            "{} {:width$}  {}",
            check.status.tag(),
            check.subject,
            check.detail
        );
        if let Some(fix) = &check.fix {
            println!("       {:width$}  fix: {fix}", "");
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed == 0 {
        println!("\nNo problems found.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\n{failed} problem(s) found.");
        Ok(ExitCode::FAILURE)
    }
}

/// What `MCP_CHAT_LOG` asks to log (a `tracing` filter), or the default when it is unset or
/// blank. A filter that does not parse is an error, not a silent default.
fn log_filter(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    const DEFAULT: &str = "info,rmcp=warn,reqwest=warn,hyper_util=warn";
    match env(settings::ENV_LOG).filter(|v| !v.trim().is_empty()) {
        None => Ok(DEFAULT.to_owned()),
        Some(filter) => match EnvFilter::try_new(&filter) {
            Ok(_) => Ok(filter),
            Err(e) => anyhow::bail!(
                "{}={filter:?} is not valid: expected a tracing filter such as `info` or \
                 `debug,rmcp=warn` ({e})",
                settings::ENV_LOG
            ),
        },
    }
}

/// Logs go to stderr (hosts show it in their MCP logs) and to a bounded file; never to stdout.
fn init_logging(settings: &Settings, filter: String) {
    let filter = || EnvFilter::new(&filter);
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(filter());
    let file = RotatingLog::open(&settings.paths.log_file())
        .ok()
        .map(|log| {
            tracing_subscriber::fmt::layer()
                .with_writer(log)
                .with_ansi(false)
                .with_filter(filter())
        });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
}

use tracing_subscriber::Layer as _;

fn print_config(settings: &Settings) {
    let paths = &settings.paths;
    let exists = |p: &std::path::Path| if p.exists() { "" } else { " (not created yet)" };
    println!(
        "relay:          {} (from {})",
        settings.relay_url, settings.relay_source
    );
    println!(
        "display name:   {}",
        settings
            .display_name
            .as_deref()
            .unwrap_or("(chosen by the assistant; default \"Stranger\")")
    );
    println!(
        "identity:       {}",
        if settings.ephemeral {
            "ephemeral (new each run)"
        } else {
            "stored"
        }
    );
    println!(
        "access token:   {}",
        if settings.access_token.is_some() {
            "set"
        } else {
            "not set"
        }
    );
    let names: Vec<&str> = settings.headers.iter().map(|(n, _)| n.as_str()).collect();
    println!(
        "extra headers:  {}",
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    );
    if let Some(ca) = &settings.ca_bundle {
        println!("CA bundle:      {}", ca.display());
    }
    println!(
        "config file:    {}{}",
        paths.config_file().display(),
        exists(&paths.config_file())
    );
    println!(
        "identity file:  {}{}",
        paths.identity_file().display(),
        exists(&paths.identity_file())
    );
    println!(
        "log file:       {}{}",
        paths.log_file().display(),
        exists(&paths.log_file())
    );
    println!(
        "environment:    {}, {}, {}, {}, {}, {}, {}, {}",
        settings::ENV_RELAY,
        settings::ENV_DISPLAY_NAME,
        settings::ENV_EPHEMERAL,
        settings::ENV_ACCESS_TOKEN,
        settings::ENV_HEADERS,
        settings::ENV_CA_BUNDLE,
        settings::ENV_CONFIG_DIR,
        settings::ENV_LOG_DIR,
    );
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
