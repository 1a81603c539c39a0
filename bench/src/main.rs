//! `mcp-chat-bench`: load the mcp-chat relay and report what it costs.
//!
//! ```text
//! cargo build --release -p mcp-chat-relay -p mcp-chat-bench
//! target/release/mcp-chat-bench connections --participants 10000
//! target/release/mcp-chat-bench throughput --pairs 1000
//! target/release/mcp-chat-bench latency --pairs 1000 --rate 1000
//! target/release/mcp-chat-bench baseline --sessions 2000
//! target/release/mcp-chat-bench abuse
//! target/release/mcp-chat-bench soak --duration-secs 1800
//! target/release/mcp-chat-bench smoke
//! ```
//!
//! By default each scenario spawns the relay binary found next to this one on 127.0.0.1 port 0,
//! with rate limits and the session cap raised for load and the per-address limits off (every
//! participant comes from 127.0.0.1); `abuse` keeps the relay's default limits and spreads its
//! clients over loopback addresses instead. See BENCHMARKS.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use mcp_chat_bench::ledger::Clock;
use mcp_chat_bench::participant::{ClientKind, Pairing, http_client};
use mcp_chat_bench::procfs::Machine;
use mcp_chat_bench::scenario::{self, Env};
use mcp_chat_bench::server::{ServerKind, sibling_relay_binary};
use mcp_chat_bench::summary::{Report, ScenarioReport};

/// Load generator for the mcp-chat relay: connection scale, throughput, latency, and an HTTP
/// baseline, with real rmcp Streamable HTTP client sessions as participants.
#[derive(Debug, Parser)]
#[command(name = "mcp-chat-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Load a relay that is already running at this MCP URL instead of spawning one. Its own
    /// rate limits and per-address limits apply (every participant but abuse's comes from one
    /// address: for a large ramp start it with --address-sessions-per-sec 0
    /// --address-max-sessions 0 --address-refusals-per-sec 0 --address-max-connections 0), and
    /// its memory and CPU time are not read.
    #[arg(long, global = true, conflicts_with_all = ["relay_bin", "builtin_relay", "floor"])]
    relay_url: Option<String>,

    /// With --relay-url: the pid of the process serving it, so that its memory and CPU are read
    /// from /proc (e.g. the Python prototype, bench/scripts/python_prototype.sh).
    #[arg(long, global = true, requires = "relay_url")]
    server_pid: Option<u32>,

    /// Load the floor server instead of the relay: the least a Streamable HTTP chat server can
    /// do for this load (a minimal axum SSE server built into this binary). Use it with
    /// --client lean.
    #[arg(long, global = true, conflicts_with_all = ["relay_bin", "builtin_relay"])]
    floor: bool,

    /// The participants' client code: rmcp's client, the lean one (bare HTTP and SSE), or the
    /// lean one speaking the Python prototype's tools (connections only, rooms pairing,
    /// --messages-each 0).
    #[arg(long, global = true, value_enum, default_value = "rmcp")]
    client: ClientKind,

    /// The relay binary to spawn [default: mcp-chat-relay next to this binary].
    #[arg(long, global = true)]
    relay_bin: Option<PathBuf>,

    /// Spawn the relay library linked into this binary (no separate relay build needed).
    #[arg(long, global = true, conflicts_with = "relay_bin")]
    builtin_relay: bool,

    /// Pin spawned servers (relay, baseline) to these CPUs (a `taskset -c` list, e.g. 0).
    #[arg(long, global = true)]
    relay_cpus: Option<String>,

    /// Pin the generator to these CPUs (a `taskset -c` list, e.g. 1).
    #[arg(long, global = true)]
    bench_cpus: Option<String>,

    /// Worker threads of the generator's runtime [default: the CPUs it may use].
    #[arg(long, global = true)]
    workers: Option<usize>,

    /// Print the report as JSON instead of tables (progress still goes to stderr).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ramp to N idle participants, paired in rooms; relay memory per participant.
    Connections(ConnectionsArgs),
    /// P pairs chat at rising rates until p99 delivery passes the limit; sustained msg/s.
    Throughput(ThroughputArgs),
    /// P pairs chat at a fixed total rate; delivery latency percentiles.
    Latency(LatencyArgs),
    /// A minimal HTTP server with a fixed JSON-RPC reply, driven by the same client code.
    Baseline(BaselineArgs),
    /// Victims chat alone, then next to every abuser at once, under the relay's default rate
    /// and per-address limits (each victim and each kind of abuser on a loopback address of its
    /// own); their latency, the abusers' answers, the relay's memory and fds.
    Abuse(AbuseArgs),
    /// Steady chatting with churn for a long time; relay memory and fds sampled, lost messages.
    Soak(SoakArgs),
    /// Every scenario in miniature; exits non-zero unless every message arrived exactly once.
    Smoke {
        /// Run only this part (the tests run the parts side by side).
        #[arg(long, value_enum)]
        part: Option<mcp_chat_bench::smoke::Part>,
    },
    /// (internal) Serve the linked relay library, as spawned by `--builtin-relay`.
    #[command(hide = true)]
    Relay(BuiltinRelayArgs),
    /// (internal) Serve the baseline, as spawned by the baseline scenario.
    #[command(hide = true)]
    BaselineServer {
        #[arg(long)]
        bind: SocketAddr,
    },
    /// (internal) Serve the floor, as spawned by `--floor`.
    #[command(hide = true)]
    FloorServer {
        #[arg(long)]
        bind: SocketAddr,
    },
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Pairs of participants.
    #[arg(long, default_value_t = 1000)]
    pairs: usize,
    /// How participants pair up: the random queue, or one private room code per pair.
    #[arg(long, value_enum, default_value = "queue")]
    pairing: Pairing,
    /// Message text size, bytes.
    #[arg(long, default_value_t = 100)]
    message_bytes: usize,
    /// Load before measuring, seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Participants connecting at once.
    #[arg(long, default_value_t = 64)]
    ramp_concurrency: usize,
    /// Ask the relay (logging/setLevel warning) not to mirror every event as a logging
    /// notification too.
    #[arg(long)]
    mute_log_pushes: bool,
}

#[derive(Debug, Args)]
struct ConnectionsArgs {
    /// Participants (rounded up to an even number).
    #[arg(long, default_value_t = 10_000)]
    participants: usize,
    /// How participants pair up.
    #[arg(long, value_enum, default_value = "queue")]
    pairing: Pairing,
    /// Participants connecting at once.
    #[arg(long, default_value_t = 64)]
    ramp_concurrency: usize,
    /// Pause between the ramp and the memory reading, seconds.
    #[arg(long, default_value_t = 2.0)]
    settle_secs: f64,
    /// Size of the messages each participant sends at the end, bytes.
    #[arg(long, default_value_t = 100)]
    message_bytes: usize,
    /// Messages each participant sends its partner at the end, one after the other (so each
    /// also receives as many), before the last memory reading; 0 for none.
    #[arg(long, default_value_t = 1)]
    messages_each: usize,
}

#[derive(Debug, Args)]
struct ThroughputArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Length of each step's measurement window, seconds.
    #[arg(long, default_value_t = 5.0)]
    step_secs: f64,
    /// Rate of the first step, total msg/s.
    #[arg(long, default_value_t = 1000.0)]
    start_rate: f64,
    /// Each step's rate over the previous one's.
    #[arg(long, default_value_t = 1.5)]
    step_factor: f64,
    /// Highest rate tried, msg/s.
    #[arg(long, default_value_t = 200_000.0)]
    max_rate: f64,
    /// A step passes while p99 delivery latency stays at or below this, ms.
    #[arg(long, default_value_t = 50.0)]
    p99_limit_ms: f64,
    /// Skip the baseline measured after the steps at the same concurrency.
    #[arg(long)]
    no_baseline: bool,
    /// Measure a step again (up to 6 times) when the rest of the machine used more than this
    /// much CPU during it, percent of one CPU (read from /proc/stat).
    #[arg(long)]
    max_other_load_pct: Option<f64>,
}

#[derive(Debug, Args)]
struct LatencyArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Total messages per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
}

#[derive(Debug, Args)]
struct BaselineArgs {
    /// Concurrent sessions, each sending its next request when the previous one is answered
    /// (2 × the throughput scenario's pairs is the same concurrency).
    #[arg(long, default_value_t = 2000)]
    sessions: usize,
    /// Message text size in the request, bytes.
    #[arg(long, default_value_t = 100)]
    message_bytes: usize,
    /// Load before measuring, seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// Sessions connecting at once.
    #[arg(long, default_value_t = 64)]
    ramp_concurrency: usize,
}

#[derive(Debug, Args)]
struct AbuseArgs {
    /// Victim pairs.
    #[arg(long, default_value_t = 200)]
    pairs: usize,
    /// How victims pair up.
    #[arg(long, value_enum, default_value = "rooms")]
    pairing: Pairing,
    /// Victims' total messages per second (each sender stays within the relay's 2/s).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Victims' message text size, bytes.
    #[arg(long, default_value_t = 100)]
    message_bytes: usize,
    /// Victims chatting before phase 1, seconds.
    #[arg(long, default_value_t = 3.0)]
    warmup_secs: f64,
    /// Length of each measured phase (alone, abused), seconds.
    #[arg(long, default_value_t = 20.0)]
    window_secs: f64,
    /// After the abusers stop, before the last reading, seconds.
    #[arg(long, default_value_t = 10.0)]
    recovery_secs: f64,
    /// Victims connecting at once.
    #[arg(long, default_value_t = 64)]
    ramp_concurrency: usize,
    /// The flooder's send_message calls in flight.
    #[arg(long, default_value_t = 16)]
    flood_in_flight: usize,
    /// Participants looping enter_queue / leave_chat.
    #[arg(long, default_value_t = 4)]
    queue_churners: usize,
    /// Loops opening and deleting sessions.
    #[arg(long, default_value_t = 8)]
    reconnect_in_flight: usize,
    /// Loops sending malformed and oversized requests.
    #[arg(long, default_value_t = 8)]
    malformed_in_flight: usize,
    /// Slow readers (GET stream never read), each with an accomplice sending to it.
    #[arg(long, default_value_t = 100)]
    slow_readers: usize,
    /// Size of the accomplices' messages, bytes.
    #[arg(long, default_value_t = 4000)]
    slow_reader_message_bytes: usize,
    /// Connections sending a partial request header and then nothing.
    #[arg(long, default_value_t = 1000)]
    slowloris: usize,
    /// Rounds of abuse on the same relay (each: abusers start, a window, abusers stop,
    /// recovery); more than one shows whether memory comes back to the same level.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

#[derive(Debug, Args)]
struct SoakArgs {
    /// Pairs chatting.
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    /// Total messages per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Message text size, bytes.
    #[arg(long, default_value_t = 100)]
    message_bytes: usize,
    /// The whole run, seconds.
    #[arg(long, default_value_t = 1800.0)]
    duration_secs: f64,
    /// Time between two readings of the relay, seconds.
    #[arg(long, default_value_t = 30.0)]
    sample_secs: f64,
    /// Time between two rounds of churn, seconds.
    #[arg(long, default_value_t = 5.0)]
    churn_secs: f64,
    /// Pairs that leave and pair again (queue or room code, in turn) each round.
    #[arg(long, default_value_t = 2)]
    churn_repairs: usize,
    /// Participants that disconnect and are replaced by new ones each round.
    #[arg(long, default_value_t = 2)]
    churn_reconnects: usize,
    /// Participants connecting at once.
    #[arg(long, default_value_t = 64)]
    ramp_concurrency: usize,
}

/// The relay flags the bench passes to a spawned relay (see `RelayLimits::relay_args`).
#[derive(Debug, Args)]
struct BuiltinRelayArgs {
    #[arg(long)]
    bind: SocketAddr,
    #[arg(long)]
    rate_per_sec: f64,
    #[arg(long)]
    rate_burst: u32,
    #[arg(long)]
    idle_timeout_secs: u64,
    #[arg(long)]
    max_sessions: usize,
    #[arg(long)]
    max_message_bytes: usize,
    #[arg(long)]
    max_body_bytes: usize,
    #[arg(long, default_value_t = mcp_chat_relay::config::DEFAULT_ADDRESS_SESSIONS_PER_SEC)]
    address_sessions_per_sec: f64,
    #[arg(long, default_value_t = mcp_chat_relay::config::DEFAULT_ADDRESS_MAX_SESSIONS)]
    address_max_sessions: usize,
    #[arg(long, default_value_t = mcp_chat_relay::config::DEFAULT_ADDRESS_REFUSALS_PER_SEC)]
    address_refusals_per_sec: f64,
    #[arg(long, default_value_t = mcp_chat_relay::config::DEFAULT_ADDRESS_MAX_CONNECTIONS)]
    address_max_connections: usize,
}

impl LoadArgs {
    fn load(&self, duration_secs: f64) -> scenario::Load {
        scenario::Load {
            pairs: self.pairs,
            pairing: self.pairing,
            message_bytes: self.message_bytes,
            warmup: Duration::from_secs_f64(self.warmup_secs),
            duration: Duration::from_secs_f64(duration_secs),
            ramp_concurrency: self.ramp_concurrency,
            mute_log_pushes: self.mute_log_pushes,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("FAILED: messages were lost or duplicated, or calls failed (see the report)");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    // Pin before the runtime exists: threads inherit the affinity of the thread that creates
    // them, and tokio sizes its pool from the CPUs this process may use.
    if let Some(cpus) = &cli.bench_cpus {
        let status = std::process::Command::new("taskset")
            .args(["-p", "-c", cpus, &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot run taskset to pin the generator")?;
        if !status.success() {
            bail!("taskset -p -c {cpus} failed");
        }
    }
    let workers = cli.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    runtime.block_on(run_command(cli, workers))
}

async fn run_command(cli: Cli, workers: usize) -> anyhow::Result<bool> {
    match &cli.command {
        Command::Relay(args) => {
            let config = mcp_chat_relay::RelayConfig {
                rate_per_sec: args.rate_per_sec,
                rate_burst: args.rate_burst,
                idle_timeout: Duration::from_secs(args.idle_timeout_secs),
                max_sessions: args.max_sessions,
                max_message_bytes: args.max_message_bytes,
                max_body_bytes: args.max_body_bytes,
                address_sessions_per_sec: args.address_sessions_per_sec,
                address_max_sessions: args.address_max_sessions,
                address_refusals_per_sec: args.address_refusals_per_sec,
                address_max_connections: args.address_max_connections,
                ..mcp_chat_relay::RelayConfig::default()
            };
            mcp_chat_bench::run_builtin_relay(args.bind, config).await?;
            return Ok(true);
        }
        Command::BaselineServer { bind } => {
            mcp_chat_bench::baseline::serve(*bind).await?;
            return Ok(true);
        }
        Command::FloorServer { bind } => {
            mcp_chat_bench::floor::serve(*bind).await?;
            return Ok(true);
        }
        _ => {}
    }
    let relay = if let Some(url) = &cli.relay_url {
        ServerKind::External(url.clone(), cli.server_pid)
    } else if cli.floor {
        ServerKind::Floor
    } else if cli.builtin_relay {
        ServerKind::BuiltinRelay
    } else if let Some(path) = &cli.relay_bin {
        ServerKind::RelayBinary(path.clone())
    } else {
        ServerKind::RelayBinary(sibling_relay_binary().context(
            "no mcp-chat-relay next to this binary: build both (cargo build --release -p \
             mcp-chat-relay -p mcp-chat-bench), or pass --relay-bin PATH or --builtin-relay",
        )?)
    };
    let cpu_split = describe_split(&cli, &relay);
    let env = Env {
        relay,
        server_cpus: cli.relay_cpus.clone(),
        http: http_client()?,
        clock: Clock::new(),
        run_id: run_id(),
        client: cli.client,
    };
    let scenarios = match cli.command {
        Command::Connections(a) => vec![ScenarioReport::Connections(
            scenario::connections(
                &env,
                &scenario::ConnectionsParams {
                    participants: a.participants,
                    pairing: a.pairing,
                    ramp_concurrency: a.ramp_concurrency,
                    settle: Duration::from_secs_f64(a.settle_secs),
                    message_bytes: a.message_bytes,
                    messages_each: if cli.client == ClientKind::Prototype {
                        0
                    } else {
                        a.messages_each
                    },
                },
            )
            .await?,
        )],
        Command::Throughput(a) => vec![ScenarioReport::Throughput(
            scenario::throughput(
                &env,
                &scenario::ThroughputParams {
                    load: a.load.load(a.step_secs),
                    start_rate: a.start_rate,
                    step_factor: a.step_factor,
                    max_rate: a.max_rate,
                    p99_limit_ms: a.p99_limit_ms,
                    with_baseline: !a.no_baseline,
                    max_other_load_pct: a.max_other_load_pct,
                },
            )
            .await?,
        )],
        Command::Latency(a) => vec![ScenarioReport::Latency(
            scenario::latency(
                &env,
                &scenario::LatencyParams {
                    load: a.load.load(a.duration_secs),
                    rate: a.rate,
                },
            )
            .await?,
        )],
        Command::Baseline(a) => vec![ScenarioReport::Baseline(
            scenario::baseline(
                &env,
                &scenario::BaselineParams {
                    sessions: a.sessions,
                    message_bytes: a.message_bytes,
                    warmup: Duration::from_secs_f64(a.warmup_secs),
                    duration: Duration::from_secs_f64(a.duration_secs),
                    ramp_concurrency: a.ramp_concurrency,
                },
            )
            .await?,
        )],
        Command::Abuse(a) => vec![ScenarioReport::Abuse(
            mcp_chat_bench::abuse::abuse(
                &env,
                &mcp_chat_bench::abuse::AbuseParams {
                    pairs: a.pairs,
                    pairing: a.pairing,
                    rate: a.rate,
                    message_bytes: a.message_bytes,
                    warmup: Duration::from_secs_f64(a.warmup_secs),
                    window: Duration::from_secs_f64(a.window_secs),
                    recovery: Duration::from_secs_f64(a.recovery_secs),
                    ramp_concurrency: a.ramp_concurrency,
                    flood_in_flight: a.flood_in_flight,
                    queue_churners: a.queue_churners,
                    reconnect_in_flight: a.reconnect_in_flight,
                    malformed_in_flight: a.malformed_in_flight,
                    slow_readers: a.slow_readers,
                    slow_reader_message_bytes: a.slow_reader_message_bytes,
                    slowloris: a.slowloris,
                    rounds: a.rounds.max(1),
                    strict: false,
                },
            )
            .await?,
        )],
        Command::Soak(a) => vec![ScenarioReport::Soak(
            mcp_chat_bench::soak::soak(
                &env,
                &mcp_chat_bench::soak::SoakParams {
                    pairs: a.pairs,
                    rate: a.rate,
                    message_bytes: a.message_bytes,
                    duration: Duration::from_secs_f64(a.duration_secs),
                    sample_every: Duration::from_secs_f64(a.sample_secs),
                    churn_every: Duration::from_secs_f64(a.churn_secs),
                    churn_repairs: a.churn_repairs,
                    churn_reconnects: a.churn_reconnects,
                    ramp_concurrency: a.ramp_concurrency,
                    strict: false,
                },
            )
            .await?,
        )],
        Command::Smoke { part } => mcp_chat_bench::smoke::run(&env, part).await?,
        Command::Relay(_) | Command::BaselineServer { .. } | Command::FloorServer { .. } => {
            unreachable!("handled above")
        }
    };
    let report = Report {
        machine: Machine::describe(),
        cpu_split,
        generator_workers: workers,
        scenarios,
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(report.is_clean())
}

impl Cli {
    fn client_name(&self) -> &'static str {
        match self.client {
            ClientKind::Rmcp => "rmcp",
            ClientKind::Lean => "lean",
            ClientKind::LeanJson => "lean, JSON answers",
            ClientKind::Prototype => "prototype (lean)",
        }
    }
}

/// How the server and the generator share the CPUs, for the report.
fn describe_split(cli: &Cli, relay: &ServerKind) -> String {
    let generator = match &cli.bench_cpus {
        Some(cpus) => format!("generator pinned to CPU {cpus}"),
        None => "generator on any CPU".to_owned(),
    };
    let server = match (relay, &cli.relay_cpus) {
        (ServerKind::External(_, None), _) => "relay external (not sampled)".to_owned(),
        (ServerKind::External(_, Some(pid)), _) => format!("external server, pid {pid} sampled"),
        (_, Some(cpus)) => format!("server pinned to CPU {cpus} (taskset)"),
        (_, None) => "server on any CPU".to_owned(),
    };
    format!("{server}, {generator}, {} participants", cli.client_name())
}

/// A prefix for this run's room codes, unique enough to never meet an earlier run's rooms.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("bench{}x{nanos}", std::process::id())
}
