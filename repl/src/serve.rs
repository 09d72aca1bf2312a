//! `ibarrow serve` and `ibarrow passwd`: the network service of ibarrow-server, started from
//! the command line.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use ibarrow::{Engine, ServerConfig};
use ibarrow_server::Server;

/// Runs the server until SIGTERM or SIGINT; exit status 2 for a configuration it refuses.
pub fn run(config: Option<&Path>, profile: Option<&str>, demo: bool, log_format: &str) -> ExitCode {
    let runtime = match crate::start("ibarrow serve", log_format) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let config_path = config.map(Path::to_path_buf);
    let outcome = runtime.block_on(async {
        let mut config = crate::read_config(config, profile)?;
        if demo && config.server.is_none() {
            config.server = Some(ServerConfig {
                flight_sql: Some("127.0.0.1:50051".into()),
                http: Some("127.0.0.1:8080".into()),
                ..ServerConfig::default()
            });
        }
        crate::check_log_level(&config)?;
        let config = crate::with_demo(config, demo, false).await?;
        crate::apply_log_level(&config);
        let engine = Engine::from_config(config.clone())
            .await
            .map_err(|e| e.to_string())?;
        reload_on_hangup(
            &engine,
            config_path.clone(),
            profile.map(str::to_string),
            demo,
        );
        let server = Server::bind(engine, &config)
            .await
            .map_err(|e| e.to_string())?;
        let scheme = if server.uses_tls() { "s" } else { "" };
        let mut ready = Vec::new();
        if let Some(addr) = server.flight_sql_addr() {
            let grpc = if server.uses_tls() {
                "grpc+tls"
            } else {
                "grpc"
            };
            ready.push(format!("Flight SQL on {grpc}://{addr}"));
        }
        if let Some(addr) = server.http_addr() {
            ready.push(format!("HTTP on http{scheme}://{addr}"));
        }
        println!("ibarrow serve: {}", ready.join(", "));
        let _ = std::io::stdout().flush();
        server
            .run(ibarrow_server::shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    });
    // Streams cut at the end of the grace may leave ODBC work on driver threads.
    runtime.shutdown_timeout(crate::EXIT_GRACE);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ibarrow serve: {message}");
            ExitCode::from(2)
        }
    }
}

/// On SIGHUP, reads the configuration file again and applies it (`Engine::reload`): sources
/// added, removed or changed, roles, limits and the log level; statements running finish on
/// what they started with. A file that is refused is logged and the settings in force stay.
/// Logins (`[users]` passwords) and `[server]` are read at start only.
fn reload_on_hangup(
    engine: &Engine,
    path: Option<std::path::PathBuf>,
    profile: Option<String>,
    demo: bool,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            eprintln!(
                "ibarrow serve: SIGHUP cannot be watched; the configuration reloads only on restart"
            );
            return;
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let reloaded = async {
                    let config = crate::read_config(path.as_deref(), profile.as_deref())?;
                    crate::check_log_level(&config)?;
                    let config = crate::with_demo(config, demo, false).await?;
                    engine.reload(&config).await.map_err(|e| e.to_string())
                };
                match reloaded.await {
                    Ok(report) => {
                        if let Some(level) = &report.log_level {
                            crate::set_log_level(level);
                        }
                        eprintln!("ibarrow serve: configuration reloaded: {report}");
                    }
                    Err(message) => eprintln!(
                        "ibarrow serve: configuration not reloaded, the one in force stays: {message}"
                    ),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (engine, path, profile, demo);
}

/// Prints the argon2id hash of a password read from the terminal (twice, without echo) or
/// from the first line of standard input.
pub fn passwd() -> ExitCode {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ");
        let again = rpassword::prompt_password("again: ");
        match (first, again) {
            (Ok(first), Ok(again)) if first == again => first,
            (Ok(_), Ok(_)) => {
                eprintln!("ibarrow passwd: the two passwords differ; try again");
                return ExitCode::from(2);
            }
            (Err(err), _) | (_, Err(err)) => {
                eprintln!("ibarrow passwd: cannot read the password: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let mut line = String::new();
        if let Err(err) = std::io::stdin().lock().read_line(&mut line) {
            eprintln!("ibarrow passwd: cannot read standard input: {err}");
            return ExitCode::FAILURE;
        }
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        eprintln!("ibarrow passwd: the password is empty; give one");
        return ExitCode::from(2);
    }
    match ibarrow_server::hash_password(&password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("ibarrow passwd: {err}");
            ExitCode::FAILURE
        }
    }
}
