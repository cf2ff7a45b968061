//! `reference-server [serve] ...` runs the server; `reference-server mint-token ...` prints a token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};
use reference_server::fault::Fault;
use reference_server::{mint_token, random_secret, start, Config};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "reference-server",
    version,
    about = "Reference server of the wschat.v1 protocol"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Print a signed token for local use (websocat, the test page).
    MintToken(MintArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// HS256 secret; without it a random one is generated per start.
    #[arg(long, env = "WSCHAT_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Pause between tokens (the test page looks best with 30ms).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    token_pace: Duration,
    /// How long a socket without handshake credentials may wait for its `auth` message.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    auth_timeout: Duration,
    /// Close sockets with no client frame for this long (close code 4000).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "300s")]
    idle_timeout: Duration,
    /// How long a turn waits for a confirmation or human reply.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    reply_timeout: Duration,
    /// Close a connection whose request head is not complete within this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    header_read_timeout: Duration,
    /// Connections that may wait for a complete request head at once (one more closes the oldest).
    #[arg(long, default_value_t = 1024)]
    max_pending_heads: usize,
    /// Soft frame limit in bytes (MESSAGE_TOO_LARGE).
    #[arg(long, default_value_t = 65_536)]
    max_message_bytes: usize,
    /// Hard frame limit in bytes (close 1009).
    #[arg(long, default_value_t = 1024 * 1024)]
    hard_max_message_bytes: usize,
    /// Client messages per second and connection.
    #[arg(long = "rate-limit", default_value_t = 20)]
    rate_limit_per_sec: u32,
    /// Burst allowance of the rate limit.
    #[arg(long, default_value_t = 40)]
    rate_burst: u32,
    /// Open sockets per user.
    #[arg(long, default_value_t = 16)]
    max_connections_per_user: usize,
    /// An origin WebSocket upgrades may come from (repeatable, e.g. https://app.example.com);
    /// without any, every origin may (for non-browser clients). Upgrades without Origin always may.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Persist sessions, history and skills in this folder.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Enable POST /api/v1/dev/token and print a dev token at startup.
    #[arg(long)]
    dev: bool,
    /// TESTING ONLY: break the protocol on purpose in one named way, to check that a conformance
    /// suite catches it (see docs/FAULTS.md). Never use it for a real deployment.
    #[arg(long, value_name = "NAME", value_parser = PossibleValuesParser::new(Fault::names()))]
    fault: Option<String>,
}

#[derive(Args, Debug)]
struct MintArgs {
    /// The `sub` claim.
    #[arg(long)]
    user: String,
    /// Add `admin: true`.
    #[arg(long)]
    admin: bool,
    /// Lifetime of the token.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    ttl: Duration,
    /// The server's secret.
    #[arg(long, env = "WSCHAT_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::MintToken(m)) => {
            println!("{}", mint_token(&m.jwt_secret, &m.user, m.admin, m.ttl));
            ExitCode::SUCCESS
        }
        Some(Command::Serve(s)) => serve(s),
        None => serve(cli.serve),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let generated = args.jwt_secret.is_none();
        let secret = args.jwt_secret.unwrap_or_else(random_secret);
        let config = Config {
            bind: args.bind,
            jwt_secret: secret.clone(),
            token_pace: args.token_pace,
            auth_timeout: args.auth_timeout,
            idle_timeout: args.idle_timeout,
            reply_timeout: args.reply_timeout,
            header_read_timeout: args.header_read_timeout,
            max_pending_heads: args.max_pending_heads,
            max_message_bytes: args.max_message_bytes,
            hard_max_message_bytes: args.hard_max_message_bytes,
            rate_limit_per_sec: args.rate_limit_per_sec,
            rate_burst: args.rate_burst,
            max_connections_per_user: args.max_connections_per_user,
            allowed_origins: args.allowed_origins,
            data_dir: args.data_dir,
            dev: args.dev,
            fault: args.fault,
        };
        let dev = config.dev;
        if let Some(f) = &config.fault {
            eprintln!("FAULT INJECTION ACTIVE: '{f}'. This server breaks the protocol on purpose.");
        }
        let handle = match start(config).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "wschat reference server on {} (test page: {}/)",
            handle.ws_url(),
            handle.http_url()
        );
        if generated {
            eprintln!(
                "no --jwt-secret given: using a random secret for this run only.\n\
                 Pass --jwt-secret (or WSCHAT_JWT_SECRET) to mint tokens with \
                 `reference-server mint-token --user alice --jwt-secret ...`, or --dev for the token endpoint."
            );
        }
        if dev {
            let token = mint_token(&secret, "dev", true, Duration::from_secs(24 * 3600));
            eprintln!("dev token for user 'dev' (admin, 24h):\n{token}");
            eprintln!(
                "more tokens: POST {}/api/v1/dev/token {{\"user_id\":\"alice\"}}",
                handle.http_url()
            );
        }
        wait_for_signal().await;
        eprintln!("shutting down");
        handle.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
