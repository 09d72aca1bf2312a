//! `ibarrow config check`: reads the configuration as the REPL and the server would (its
//! profile applied, `${...}` references resolved), checks the roles and users, then opens every
//! source on its own and pings it, and prints one line per source: the database that answered
//! or why it did not. Exit status 0 when every source answers, 1 when one does not, 2 when the
//! configuration itself is refused.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ibarrow::{Config, Engine};

/// How long a source has to answer its ping once connected.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// One source's result.
struct Checked {
    name: String,
    /// What answered (database, round trip, TLS), or why nothing did.
    outcome: Result<String, String>,
}

pub fn run(
    config: Option<&Path>,
    profile: Option<&str>,
    no_connect: bool,
    log_format: &str,
) -> ExitCode {
    let runtime = match crate::start("ibarrow config check", log_format) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let profile = profile
        .map(str::to_string)
        .or_else(ibarrow::config::profile_from_env);
    let checked = runtime.block_on(async {
        let config = crate::read_config(config, profile.as_deref())?;
        if config.sources.is_empty() && !no_connect {
            return Err("the configuration has no [sources.<name>]; add one to check".to_string());
        }
        ibarrow::access::AccessPolicy::from_config(&config).map_err(|e| e.to_string())?;
        // The server resolves these when it starts: a missing secret fails it there.
        for (name, user) in &config.users {
            if let Some(password) = &user.password {
                ibarrow::config::expand_env(password, &format!("[users.{name}] password"))
                    .map_err(|e| e.to_string())?;
            }
        }
        crate::check_log_level(&config)?;
        if no_connect {
            // The engine's own settings (limits, memory, cache) are checked by building an
            // engine without sources, which opens nothing.
            let mut settings = config.clone();
            settings.sources.clear();
            settings.audit = None;
            Engine::from_config(settings)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(validate_sources(&config));
        }
        Ok(check_sources(config).await)
    });
    runtime.shutdown_timeout(crate::EXIT_GRACE);
    let checked = match checked {
        Ok(checked) => checked,
        Err(message) => {
            eprintln!("ibarrow config check: {message}");
            return ExitCode::from(2);
        }
    };
    let width = checked.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for check in &checked {
        match &check.outcome {
            Ok(found) => println!("{:<width$}  ok      {found}", check.name),
            Err(why) => println!("{:<width$}  FAILED  {why}", check.name),
        }
    }
    let failed = checked.iter().filter(|c| c.outcome.is_err()).count();
    println!(
        "{} of {} sources {}{}",
        checked.len() - failed,
        checked.len(),
        if no_connect { "are valid" } else { "answer" },
        match &profile {
            Some(profile) => format!(" (profile {profile})"),
            None => String::new(),
        }
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `--no-connect`: each source's settings checked as opening it would check them (secrets
/// resolved, connection string built, options valid), without a connection.
fn validate_sources(config: &Config) -> Vec<Checked> {
    config
        .sources
        .iter()
        .map(|(name, source)| {
            let source = source.with_defaults(&config.engine);
            let outcome = source
                .source_options(name)
                .and_then(|_| source.connect(name))
                .map(|_| "valid (not opened: --no-connect)".to_string())
                .map_err(|e| e.to_string());
            Checked {
                name: name.clone(),
                outcome,
            }
        })
        .collect()
}

/// Opens each source of `config` alone, under the engine's settings, so one that fails does
/// not hide the others.
async fn check_sources(config: Config) -> Vec<Checked> {
    // The engine's settings only: no sources yet, and no audit file opened by a check.
    let mut settings = config.clone();
    settings.sources.clear();
    settings.audit = None;
    let engine = match Engine::from_config(settings).await {
        Ok(engine) => engine,
        Err(err) => {
            return config
                .sources
                .keys()
                .map(|name| Checked {
                    name: name.clone(),
                    outcome: Err(err.to_string()),
                })
                .collect();
        }
    };
    let mut checked = Vec::new();
    for (name, source) in &config.sources {
        let started = Instant::now();
        let outcome = match engine.register_source(name, source).await {
            Ok(()) => ping(&engine, name, started, source.tls.as_ref()).await,
            Err(err) => Err(err.to_string()),
        };
        checked.push(Checked {
            name: name.clone(),
            outcome,
        });
    }
    checked
}

async fn ping(
    engine: &Engine,
    name: &str,
    started: Instant,
    tls: Option<&ibarrow::TlsConfig>,
) -> Result<String, String> {
    let source = engine.source(name).map_err(|e| e.to_string())?;
    let health = source.health(PING_TIMEOUT).await;
    if !health.reachable {
        return Err(health
            .error
            .unwrap_or_else(|| "the database did not answer its ping".into()));
    }
    let latency = health.latency.unwrap_or_default();
    Ok(format!(
        "{} ({}), connected in {} ms, ping {:.1} ms{}",
        source.dbms_name(),
        source.dialect(),
        started.elapsed().as_millis(),
        latency.as_secs_f64() * 1000.0,
        match tls {
            Some(tls) => format!(", TLS {}", tls.mode),
            None => String::new(),
        }
    ))
}
