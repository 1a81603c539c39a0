//! `mcp-chat-bridge`: put a stdio MCP host (Claude Desktop, Cursor, ...) on an mcp-chat relay.

use anyhow::Context;
use clap::{Parser, Subcommand};
use mcp_chat_bridge::identity::Identity;
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

    /// Relay URL (env MCP_CHAT_RELAY), default http://127.0.0.1:8080/mcp.
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let env = |key: &str| std::env::var(key).ok();
    let paths = Paths::resolve(&env)?;
    let flags = Flags {
        relay: cli.relay,
        display_name: cli.display_name,
        ephemeral: cli.ephemeral,
    };
    let settings = Settings::resolve(&flags, &env, paths)?;
    if let Some(Command::Config) = cli.command {
        print_config(&settings);
        return Ok(());
    }
    init_logging(&settings);
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
    Ok(())
}

/// Logs go to stderr (hosts show it in their MCP logs) and to a bounded file; never to stdout.
fn init_logging(settings: &Settings) {
    let filter = || {
        EnvFilter::try_from_env("MCP_CHAT_LOG")
            .unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn,reqwest=warn,hyper_util=warn"))
    };
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
