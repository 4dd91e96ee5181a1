use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ipam_gateway::config::Settings;
use ipam_gateway::{Application, telemetry};
use secrecy::SecretString;

/// One IPAM gateway for vRA 8 and Avi, over phpIPAM, Infoblox or an embedded store.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (default: the embedded default config). IPAMGW_… variables override it.
    #[arg(long, short, global = true, env = "IPAMGW_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Validate the config and check every backend. Exit 0: all good; 2: config invalid; 3: a
    /// backend failed its check.
    Check,
    /// Print an argon2 hash for a client password (read from stdin, or --password).
    HashPassword {
        #[arg(long)]
        password: Option<String>,
    },
    /// Print the effective config (defaults, file and environment merged), secrets redacted.
    PrintConfig,
}

const EXIT_CONFIG: u8 = 2;
const EXIT_BACKEND: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::HashPassword { password } = command {
        return hash_password(password);
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ipam-gateway: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ipam-gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        Command::PrintConfig => match toml_string(&settings) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ipam-gateway: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check => runtime.block_on(check(settings)),
        Command::Serve | Command::HashPassword { .. } => runtime.block_on(serve(settings)),
    }
}

fn toml_string(settings: &Settings) -> Result<String, String> {
    // Through JSON so that the redacting `Serialize` of secrets applies.
    let value = serde_json::to_value(&settings.config).map_err(|e| e.to_string())?;
    let value: toml::Value = serde_json::from_value(value).map_err(|e| e.to_string())?;
    toml::to_string_pretty(&value).map_err(|e| e.to_string())
}

fn hash_password(password: Option<String>) -> ExitCode {
    let password = match password {
        Some(p) => p,
        None => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() {
                eprintln!("ipam-gateway: cannot read the password from stdin");
                return ExitCode::FAILURE;
            }
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if password.is_empty() {
        eprintln!("ipam-gateway: the password must not be empty");
        return ExitCode::FAILURE;
    }
    match ipam_gateway::auth::hash_password(&SecretString::from(password)) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ipam-gateway: hashing failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn check(settings: Settings) -> ExitCode {
    println!(
        "config: ok ({} backend(s), {} client(s))",
        settings.backends.len(),
        settings.clients.len()
    );
    let mut failed = false;
    for b in &settings.backends {
        let backend = match ipam_gateway::backends::build(b) {
            Ok(backend) => backend,
            Err(e) => {
                println!("backend {}: FAILED to start: {e}", b.name());
                failed = true;
                continue;
            }
        };
        match backend.check(&Default::default()).await {
            Ok(s) => println!(
                "backend {} ({}): reachable, authenticated, {} network(s) exposed, {} block(s) — {}",
                s.backend, s.kind, s.networks, s.blocks, s.detail
            ),
            Err(e) => {
                println!("backend {}: FAILED: {e}", b.name());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(EXIT_BACKEND)
    } else {
        ExitCode::SUCCESS
    }
}

async fn serve(settings: Settings) -> ExitCode {
    telemetry::init_logging(&settings.config.log);
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "cannot start");
            eprintln!("ipam-gateway: cannot start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match app.fingerprint() {
        Some(fp) => println!(
            "ipam-gateway listening on {} (certificate SHA-256 {fp})",
            app.base_url()
        ),
        None => println!("ipam-gateway listening on {} (plain HTTP)", app.base_url()),
    }
    if let Some(m) = app.metrics_addr() {
        println!("metrics on http://{m}/metrics");
    }
    tracing::info!(url = %app.base_url(), "serving");
    let handle = app.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        handle.shutdown();
    });
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipam-gateway: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
