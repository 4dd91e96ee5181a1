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
    /// Validate the config and check every backend: reachable, authenticated, and set up (what
    /// the config names exists on the IPAM, the gateway may write). Exit 0: all good; 2: config
    /// invalid; 3: a backend failed its check.
    Check,
    /// Print an argon2 hash for a client password (read from stdin, or --password).
    HashPassword {
        #[arg(long)]
        password: Option<String>,
    },
    /// Print the effective config (defaults, file and environment merged), secrets redacted.
    PrintConfig,
    /// Write a consumer package: the vRA IPAM provider zip or the Avi custom IPAM script.
    Package {
        #[command(subcommand)]
        target: PackageTarget,
    },
}

#[derive(Subcommand)]
enum PackageTarget {
    /// The vRA 8 / Aria Automation IPAM provider package (import it under Infrastructure →
    /// Integrations → IPAM → Manage IPAM Providers).
    Vra {
        /// Provider name (vRA's identity of the provider; no spaces).
        #[arg(long, default_value = "IpamGateway")]
        name: String,
        /// Provider version shown in vRA (default: the gateway's version).
        #[arg(long)]
        version: Option<String>,
        /// Provider description shown in vRA.
        #[arg(long)]
        description: Option<String>,
        /// Timeout of each action's call to the gateway, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u32,
        /// Output file (default: <name>.zip in the current directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The Avi custom IPAM script (upload it under Templates → Profiles → Custom IPAM/DNS).
    Avi {
        /// Output file: a PEP 8 module name ending in .py (default: ipam_gateway_avi.py).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The Avi custom DNS script (upload it under Templates → Profiles → Custom IPAM/DNS and use
    /// it in a custom DNS profile).
    AviDns {
        /// Output file: a PEP 8 module name ending in .py (default: ipam_gateway_avi_dns.py).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

const EXIT_CONFIG: u8 = 2;
const EXIT_BACKEND: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    let command = match command {
        Command::HashPassword { password } => return hash_password(password),
        Command::Package { target } => return package(target),
        other => other,
    };
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
        Command::PrintConfig => match settings.to_toml() {
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
        Command::Serve | Command::HashPassword { .. } | Command::Package { .. } => {
            runtime.block_on(serve(settings))
        }
    }
}

fn package(target: PackageTarget) -> ExitCode {
    use ipam_gateway::package::vra::{PackageOptions, build};
    let (name, version, description, timeout, out) = match target {
        PackageTarget::Vra {
            name,
            version,
            description,
            timeout,
            out,
        } => (name, version, description, timeout, out),
        PackageTarget::Avi { out } => return package_avi(out),
        PackageTarget::AviDns { out } => return package_avi_dns(out),
    };
    let defaults = PackageOptions::default();
    let opts = PackageOptions {
        name,
        version: version.unwrap_or(defaults.version),
        description: description.unwrap_or(defaults.description),
        timeout_secs: timeout,
    };
    let bytes = match build(&opts) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ipam-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{}.zip", opts.name)));
    if let Err(e) = std::fs::write(&out, &bytes) {
        eprintln!("ipam-gateway: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "wrote {} ({} bytes): vRA IPAM provider {} {}, 8 actions ({}_AllocateIP, …)",
        out.display(),
        bytes.len(),
        opts.name,
        opts.version,
        opts.name
    );
    println!(
        "import it in vRA: Infrastructure → Integrations → Add Integration → IPAM → Manage IPAM Providers → Import Provider Package"
    );
    ExitCode::SUCCESS
}

/// Writes one of the two Avi scripts (`what` names it in the output, `then` ends the upload hint).
fn write_avi_script(
    out: Option<PathBuf>,
    default_name: &str,
    script: fn() -> Result<String, ipam_gateway::package::avi::ScriptError>,
    what: &str,
    then: &str,
) -> ExitCode {
    use ipam_gateway::package::avi::check_file_name;
    let out = out.unwrap_or_else(|| PathBuf::from(default_name));
    let file_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = match check_file_name(&file_name).and_then(|()| script()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ipam-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::write(&out, text.as_bytes()) {
        eprintln!("ipam-gateway: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "wrote {} ({} bytes): {what} for ipam-gateway {}",
        out.display(),
        text.len(),
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "upload it in Avi: Templates → Profiles → Custom IPAM/DNS → Create, with script params \
         server, username, password (sensitive), and optionally backend, ca_cert, verify, timeout{then}"
    );
    ExitCode::SUCCESS
}

fn package_avi(out: Option<PathBuf>) -> ExitCode {
    use ipam_gateway::package::avi::{DEFAULT_FILE_NAME, script};
    write_avi_script(out, DEFAULT_FILE_NAME, script, "Avi custom IPAM script", "")
}

fn package_avi_dns(out: Option<PathBuf>) -> ExitCode {
    use ipam_gateway::package::avi_dns::{DEFAULT_FILE_NAME, script};
    write_avi_script(
        out,
        DEFAULT_FILE_NAME,
        script,
        "Avi custom DNS script",
        "; then use it in a custom DNS profile",
    )
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
    let dns =
        ipam_gateway::service::DnsRegistry::from_settings(&settings.dns, &settings.dns_attach);
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
            Ok(s) => {
                if let Some(e) = s.setup_error() {
                    // The sentence vRA's validate-endpoint and Avi's TestLogin report too.
                    println!("backend {} ({}): FAILED: {e}", s.backend, s.kind);
                    failed = true;
                } else {
                    // Each IPAM's own word for what it exposes.
                    let what = match s.kind {
                        "phpipam" => "subnet(s)",
                        _ => "network(s)",
                    };
                    println!(
                        "backend {} ({}): reachable, authenticated, {} {what} exposed, {} block(s) — {}",
                        s.backend, s.kind, s.networks, s.blocks, s.detail
                    );
                }
                for u in &s.unchecked {
                    println!("backend {}: not checked: {u}", s.backend);
                }
            }
            Err(e) => {
                println!("backend {}: FAILED: {e}", b.name());
                failed = true;
            }
        }
        // Each attached DNS section: the SOA of every zone asked with the TSIG key, and a no-op
        // update. A zone a `required` section cannot update fails the check.
        let sections = dns.sections(b.name());
        if sections.is_empty() {
            continue;
        }
        let networks: Vec<ipnet::IpNet> = backend
            .networks(&Default::default())
            .await
            .map(|l| l.iter().map(|n| n.cidr).collect())
            .unwrap_or_default();
        for u in sections {
            let s = u.settings();
            for z in u.check(&networks).await {
                match (&z.serial, &z.update) {
                    (Ok(serial), Ok(())) => println!(
                        "backend {}: dns.{}: zone {} updatable (SOA serial {serial})",
                        b.name(),
                        s.name,
                        z.zone
                    ),
                    (Err(e), _) | (_, Err(e)) => {
                        println!(
                            "backend {}: dns.{}: zone {} NOT updatable{}: {e}",
                            b.name(),
                            s.name,
                            z.zone,
                            if s.required { "" } else { " (not required)" }
                        );
                        failed |= s.required;
                    }
                }
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
    telemetry::init_logging(&settings.log);
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
