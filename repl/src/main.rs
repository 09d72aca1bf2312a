//! `ibarrow`: the interactive REPL and batch client of the ibarrow engine.

#[cfg(feature = "cluster")]
mod cluster;
mod command;
mod config_check;
mod exec;
mod helper;
mod prepared;
mod print_format;
mod serve;
mod statement;

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ibarrow::{Config, Engine, SourceConfig};
use rustyline::error::ReadlineError;
use rustyline::{
    Cmd, ConditionalEventHandler, Editor, Event, EventContext, EventHandler, KeyEvent, Movement,
    RepeatCount,
};

use crate::exec::{Outcome, Session};
use crate::helper::SqlHelper;
use crate::print_format::{Format, Sink};
use crate::statement::{Item, split, split_script};

const DEFAULT_CONFIG: &str = "ibarrow.toml";

/// How long the process waits at exit for ODBC work still running on its threads (a cancelled
/// statement being cleaned up) before it ends anyway.
pub(crate) const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Federated SQL over ODBC databases.
#[derive(Debug, Parser)]
#[command(name = "ibarrow", version, about, after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Open the embedded demo (two SQLite databases, created on first use)
    #[arg(long)]
    demo: bool,
    /// Sources from this TOML file (default: ./ibarrow.toml when present)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Apply [profiles.NAME] of the configuration file (default: IBARROW_PROFILE)
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Add a source (repeatable)
    #[arg(long = "source", value_name = "NAME=CONNSTR")]
    sources: Vec<String>,
    /// Run these statements and exit (repeatable)
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    commands: Vec<String>,
    /// Run the statements in FILE and exit (repeatable)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Output format
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Write results to FILE instead of standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Rows shown by the table format (0: all); default 40 at the prompt, all in batch mode
    #[arg(long, value_name = "N")]
    max_rows: Option<usize>,
    /// Print how long each statement took
    #[arg(long)]
    timing: bool,
    /// Run as this user of the configuration (its roles apply) instead of the OS user; the
    /// OS user's [users] entry must allow it with `act_as`
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Memory all queries may hold, e.g. 512MB or 2GiB; sorts and aggregates spill to disk to
    /// stay under it (overrides [engine] memory_limit)
    #[arg(long, value_name = "SIZE")]
    memory_limit: Option<ibarrow::ByteSize>,
    /// Errors show their cause chain and kind (what each layer reported)
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Log lines on stderr as human-readable text or JSON (level from IBARROW_LOG, else
    /// [engine] log_level, default warn)
    #[arg(long, value_name = "FORMAT", default_value = "human")]
    log_format: String,
    /// Run queries on the Ballista cluster whose scheduler is at df://HOST:PORT (started with
    /// `ibarrow cluster scheduler`; overrides [engine] cluster)
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a Ballista scheduler or executor with ibarrow's sources, for `--cluster`
    Cluster {
        #[command(subcommand)]
        action: ClusterCommand,
    },
    /// Serve the engine over Arrow Flight SQL and HTTP ([server] in the configuration)
    Serve {
        /// Sources, [server] and [users] from this TOML file (default: ./ibarrow.toml)
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Apply [profiles.NAME] of the configuration file (default: IBARROW_PROFILE)
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        /// Serve the embedded demo (on 127.0.0.1 when the configuration has no [server])
        #[arg(long)]
        demo: bool,
        /// Log lines on stderr as human-readable text or JSON (level from IBARROW_LOG)
        #[arg(long, value_name = "FORMAT", default_value = "human")]
        log_format: String,
    },
    /// Print an argon2id hash of a password for `password_hash` in [users]; the password is
    /// read from the terminal without echo, or from standard input
    Passwd,
    /// Work with the audit log ([audit] in the configuration)
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// Work with the configuration file
    Config {
        #[command(subcommand)]
        action: ConfigCommand,
    },
    /// Create the embedded demo's SQLite databases (IBARROW_DEMO_DIR, else the user's data
    /// directory) and print a configuration naming them, or write it to FILE
    Demo {
        /// Write the configuration to FILE instead of standard output
        #[arg(long, value_name = "FILE")]
        write_config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The scheduler: plans each query against the sources of --config and hands its tasks to
    /// the executors
    Scheduler {
        /// The address to listen on
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50050")]
        bind: std::net::SocketAddr,
        /// Sources from this TOML file, the same as the executors' and clients'
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Apply [profiles.NAME] of the configuration file (default: IBARROW_PROFILE)
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        /// An executor silent this long is dropped and its tasks run elsewhere
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        executor_timeout_secs: u64,
        /// Log lines on stderr as human-readable text or JSON (level from IBARROW_LOG)
        #[arg(long, value_name = "FORMAT", default_value = "human")]
        log_format: String,
    },
    /// An executor: runs the tasks the scheduler hands it, opening the sources of --config
    Executor {
        /// The scheduler, df://HOST:PORT
        #[arg(long, value_name = "URL")]
        scheduler: String,
        /// Sources from this TOML file (secrets stay on this host)
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Apply [profiles.NAME] of the configuration file (default: IBARROW_PROFILE)
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        /// The address of its Flight service (shuffle data); its gRPC service takes the next
        /// port unless --grpc-port says otherwise
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
        bind: std::net::SocketAddr,
        /// The port of its gRPC service
        #[arg(long, value_name = "PORT")]
        grpc_port: Option<u16>,
        /// Tasks run at once (default: the number of cores)
        #[arg(long, value_name = "N")]
        concurrent_tasks: Option<usize>,
        /// Log lines on stderr as human-readable text or JSON (level from IBARROW_LOG)
        #[arg(long, value_name = "FORMAT", default_value = "human")]
        log_format: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Read the configuration (profile applied, ${...} resolved), open and ping every source,
    /// and report each; exit status 0 when all answer, 1 when one does not, 2 when the
    /// configuration is refused
    Check {
        /// The TOML file (default: ./ibarrow.toml)
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Apply [profiles.NAME] (default: IBARROW_PROFILE)
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        /// Validate every key, profile and secret reference without opening any source
        #[arg(long)]
        no_connect: bool,
        /// Log lines on stderr as human-readable text or JSON (level from IBARROW_LOG)
        #[arg(long, value_name = "FORMAT", default_value = "human")]
        log_format: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain of audit files and report the first altered, missing or moved line
    Verify {
        /// Audit files, oldest first (e.g. audit.jsonl.2 audit.jsonl.1 audit.jsonl)
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// `ibarrow audit verify`: exit status 0 for an intact chain, 1 for a broken one, 2 when a
/// file cannot be read.
fn audit_verify(files: &[PathBuf]) -> ExitCode {
    use ibarrow::audit::{Verdict, verify};
    let names = files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match verify(files) {
        Ok(Verdict::Intact {
            lines,
            first_seq,
            last_seq,
            head,
            continues,
        }) => {
            println!(
                "{names}: {lines} lines, chain intact (seq {first_seq}–{last_seq}); head {head}"
            );
            if continues {
                println!(
                    "the first line continues an earlier, rotated file: pass the rotated files \
                     too, oldest first, to check across them"
                );
            }
            ExitCode::SUCCESS
        }
        Ok(Verdict::Broken {
            file,
            line,
            problem,
        }) => {
            println!("{file} line {line}: {problem}");
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("ibarrow audit verify: {names}: {err}");
            ExitCode::from(2)
        }
    }
}

const AFTER_HELP: &str = "Statements piped on standard input run when it is not a terminal. \
The exit status is non-zero after any failed statement.";

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.command {
        Some(Command::Serve {
            config,
            profile,
            demo,
            log_format,
        }) => return serve::run(config.as_deref(), profile.as_deref(), *demo, log_format),
        Some(Command::Config {
            action:
                ConfigCommand::Check {
                    config,
                    profile,
                    no_connect,
                    log_format,
                },
        }) => {
            return config_check::run(
                config.as_deref(),
                profile.as_deref(),
                *no_connect,
                log_format,
            );
        }
        Some(Command::Cluster { action }) => return cluster_command(action),
        Some(Command::Demo { write_config }) => return demo_command(write_config.as_deref()),
        Some(Command::Passwd) => return serve::passwd(),
        Some(Command::Audit {
            action: AuditCommand::Verify { files },
        }) => return audit_verify(files),
        None => {}
    }
    exec::set_verbose(args.verbose);
    let runtime = match start("ibarrow", &args.log_format) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let stdin_is_terminal = std::io::stdin().is_terminal();
    let batch = !args.commands.is_empty() || !args.files.is_empty() || !stdin_is_terminal;
    let login = ibarrow::governance::os_user();
    let loader = ConfigLoader {
        path: args.config.clone(),
        profile: args.profile.clone(),
        sources: args.sources.clone(),
        memory_limit: args.memory_limit,
        cluster: args.cluster.clone(),
        demo: args.demo || !has_sources(&args),
    };
    let opened = runtime.block_on(async {
        let config = loader.load(!batch).await?;
        let user = ibarrow::access::session_user(&config, &login, args.user.as_deref())
            .map_err(|e| e.to_string())?;
        apply_log_level(&config);
        let engine = Engine::from_config(config)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((engine, user))
    });
    let (engine, user) = match opened {
        Ok(opened) => opened,
        Err(message) => {
            eprintln!("ibarrow: {message}");
            runtime.shutdown_timeout(EXIT_GRACE);
            return ExitCode::from(2);
        }
    };
    let sink = match &args.output {
        Some(path) => match Sink::create(path) {
            Ok(sink) => sink,
            Err(message) => {
                eprintln!("ibarrow: {message}");
                return ExitCode::from(2);
            }
        },
        None => Sink::stdout(),
    };
    let mut session = Session {
        user: exec::user_session(&engine, &user, &login),
        engine,
        runtime,
        format: args.format.unwrap_or(Format::Table),
        sink,
        timing: args.timing || !batch,
        max_rows: match args.max_rows {
            Some(0) => None,
            Some(n) => Some(n),
            None if batch => None,
            None => Some(40),
        },
        cancel_on_interrupt: !batch,
        prepared: Default::default(),
        config: loader,
    };
    let outcome = if batch {
        run_batch(&mut session, &args)
    } else {
        run_interactive(&mut session, args.demo || !has_sources(&args))
    };
    // A driver thread that a silent network holds (its query already failed at its deadline)
    // must not hold the process: dropping the runtime would wait for it.
    let Session { runtime, .. } = session;
    runtime.shutdown_timeout(EXIT_GRACE);
    match outcome {
        Outcome::Failed(_) => ExitCode::FAILURE,
        Outcome::Cancelled => ExitCode::from(130),
        Outcome::Done | Outcome::Quit => ExitCode::SUCCESS,
    }
}

/// Logging on stderr in `log_format`, and the async runtime; `program` names the command in
/// the error that stops it.
pub(crate) fn start(program: &str, log_format: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    let logging = log_format
        .parse::<ibarrow::logging::LogFormat>()
        .and_then(|format| ibarrow::logging::init(format).map_err(|err| err.to_string()));
    if let Err(message) = logging {
        eprintln!("{program}: {message}");
        return Err(ExitCode::from(2));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("{program}: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        })
}

fn has_sources(args: &Args) -> bool {
    args.config.is_some() || !args.sources.is_empty() || Path::new(DEFAULT_CONFIG).exists()
}

/// The configuration for the command line: the config file, or ./ibarrow.toml when present.
/// The configuration file (`path`, else ./ibarrow.toml when present) with `profile` applied
/// (else the one IBARROW_PROFILE names); without a file, an empty configuration (a profile
/// given with --profile is then an error, one set in the environment is not looked at).
pub(crate) fn read_config(path: Option<&Path>, profile: Option<&str>) -> Result<Config, String> {
    let path = match path {
        Some(path) => Some(path),
        None => Some(Path::new(DEFAULT_CONFIG)).filter(|p| p.exists()),
    };
    match (path, profile) {
        (Some(path), Some(profile)) => {
            Config::from_file_with_profile(path, Some(profile)).map_err(|e| e.to_string())
        }
        (Some(path), None) => Config::from_file(path).map_err(|e| e.to_string()),
        (None, Some(profile)) => Err(format!(
            "--profile {profile} needs a configuration file with [profiles.{profile}]; give \
             --config FILE"
        )),
        (None, None) => Ok(Config::default()),
    }
}

/// Where the REPL's configuration comes from, kept so that `\reload` reads it the same way.
#[derive(Debug, Clone)]
pub(crate) struct ConfigLoader {
    path: Option<PathBuf>,
    profile: Option<String>,
    sources: Vec<String>,
    memory_limit: Option<ibarrow::ByteSize>,
    cluster: Option<String>,
    demo: bool,
}

impl ConfigLoader {
    /// The configuration: the file with its profile, `--source` arguments, `--memory-limit`
    /// and the demo's sources.
    pub(crate) async fn load(&self, interactive: bool) -> Result<Config, String> {
        let mut config = with_sources(
            read_config(self.path.as_deref(), self.profile.as_deref())?,
            &self.sources,
        )?;
        if let Some(limit) = self.memory_limit {
            config.engine.memory_limit = Some(limit);
        }
        if let Some(url) = &self.cluster {
            config.engine.cluster = Some(url.clone());
        }
        check_log_level(&config)?;
        with_demo(config, self.demo, interactive).await
    }
}

/// A configuration whose `[engine] log_level` is no log filter is refused.
pub(crate) fn check_log_level(config: &Config) -> Result<(), String> {
    match &config.engine.log_level {
        Some(level) => ibarrow::logging::validate_filter(level)
            .map_err(|err| format!("[engine] log_level: {err}")),
        None => Ok(()),
    }
}

/// `[engine] log_level` of the configuration read at start, unless `IBARROW_LOG` chose one.
pub(crate) fn apply_log_level(config: &Config) {
    if std::env::var_os(ibarrow::logging::LOG_ENV).is_some() {
        return;
    }
    if let Some(level) = &config.engine.log_level {
        set_log_level(level);
    }
}

/// The log level a reload reported (`warn` when the key was removed), unless `IBARROW_LOG`
/// chose one; what happened goes to stderr.
pub(crate) fn set_log_level(level: &str) {
    if std::env::var_os(ibarrow::logging::LOG_ENV).is_some() {
        eprintln!(
            "ibarrow: the log level stays as {} says",
            ibarrow::logging::LOG_ENV
        );
        return;
    }
    if let Err(err) = ibarrow::logging::set_filter(level) {
        eprintln!("ibarrow: [engine] log_level: {err}");
    }
}

/// `ibarrow cluster scheduler|executor`.
#[cfg(feature = "cluster")]
fn cluster_command(action: &ClusterCommand) -> ExitCode {
    match action {
        ClusterCommand::Scheduler {
            bind,
            config,
            profile,
            executor_timeout_secs,
            log_format,
        } => cluster::scheduler(
            *bind,
            config,
            profile.as_deref(),
            *executor_timeout_secs,
            log_format,
        ),
        ClusterCommand::Executor {
            scheduler,
            config,
            profile,
            bind,
            grpc_port,
            concurrent_tasks,
            log_format,
        } => cluster::executor(cluster::ExecutorArgs {
            scheduler,
            config,
            profile: profile.as_deref(),
            bind: *bind,
            grpc_port: *grpc_port,
            concurrent_tasks: *concurrent_tasks,
            log_format,
        }),
    }
}

/// Without the `cluster` feature the subcommand says how to get it.
#[cfg(not(feature = "cluster"))]
fn cluster_command(_action: &ClusterCommand) -> ExitCode {
    eprintln!(
        "ibarrow cluster: this ibarrow was built without the `cluster` feature; build it with \
         `cargo build -p ibarrow-repl --features cluster`"
    );
    ExitCode::from(2)
}

/// `ibarrow demo`: the demo databases, and a configuration naming them.
fn demo_command(write_config: Option<&Path>) -> ExitCode {
    let runtime = match start("ibarrow demo", "human") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let dir = demo_dir();
    let made = runtime.block_on(ibarrow_repl::demo::prepare(&dir));
    runtime.shutdown_timeout(EXIT_GRACE);
    let text = match made.and_then(|files| files.config_text()) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("ibarrow demo: {err}");
            return ExitCode::from(2);
        }
    };
    match write_config {
        Some(path) if overwrites_a_configuration(path) => {
            eprintln!(
                "ibarrow demo: {} exists and is not a configuration `ibarrow demo` wrote; \
                 name another file",
                path.display()
            );
            ExitCode::from(2)
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                eprintln!(
                    "ibarrow demo: the demo databases are in {}; {} names them (ibarrow \
                     --config {})",
                    dir.display(),
                    path.display(),
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("ibarrow demo: cannot write {}: {err}", path.display());
                ExitCode::from(2)
            }
        },
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
    }
}

/// Whether writing `path` would replace a file `ibarrow demo` did not write (a user's own
/// configuration, say).
fn overwrites_a_configuration(path: &Path) -> bool {
    match std::fs::read_to_string(path) {
        Ok(text) => !text.starts_with(ibarrow_repl::demo::DEMO_CONFIG_HEADER),
        Err(err) => err.kind() != std::io::ErrorKind::NotFound,
    }
}

/// Adds the `--source NAME=CONNSTR` arguments.
fn with_sources(mut config: Config, sources: &[String]) -> Result<Config, String> {
    for entry in sources {
        let Some((name, connection_string)) = entry.split_once('=') else {
            return Err(format!(
                "--source takes NAME=CONNSTR, e.g. --source lite='Driver={{SQLite3}};Database=x.sqlite;' \
                 (got `{}`)",
                entry.chars().take(20).collect::<String>()
            ));
        };
        let source = SourceConfig {
            connection_string: Some(connection_string.to_string()),
            ..SourceConfig::default()
        };
        if config.sources.insert(name.to_string(), source).is_some() {
            return Err(format!("source `{name}` is given twice; pick another name"));
        }
    }
    Ok(config)
}

/// `config` with the demo databases' sources added (created on first use) when `demo`.
pub(crate) async fn with_demo(
    mut config: Config,
    demo: bool,
    interactive: bool,
) -> Result<Config, String> {
    if demo {
        let dir = demo_dir();
        if interactive && !ibarrow_repl::demo::DemoFiles::in_dir(&dir).shop.exists() {
            eprintln!("creating the demo databases in {} …", dir.display());
        }
        let files = ibarrow_repl::demo::prepare(&dir)
            .await
            .map_err(|e| e.to_string())?;
        for (name, source) in files.config().map_err(|e| e.to_string())?.sources {
            config.sources.entry(name).or_insert(source);
        }
    }
    Ok(config)
}

/// `IBARROW_DEMO_DIR`, else `ibarrow/demo` in the user's data directory.
fn demo_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("IBARROW_DEMO_DIR") {
        return PathBuf::from(dir);
    }
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("ibarrow")
        .join("demo")
}

/// `-c` statements, then `-f` files, else standard input.
fn run_batch(session: &mut Session, args: &Args) -> Outcome {
    let mut items = Vec::new();
    for command in &args.commands {
        items.extend(split_script(command));
    }
    for path in &args.files {
        match std::fs::read_to_string(path) {
            Ok(text) => items.extend(split_script(&text)),
            Err(err) => {
                eprintln!("ibarrow: cannot read {}: {err}", path.display());
                return Outcome::Failed(String::new());
            }
        }
    }
    if args.commands.is_empty() && args.files.is_empty() {
        let mut text = String::new();
        if let Err(err) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("ibarrow: cannot read standard input: {err}");
            return Outcome::Failed(String::new());
        }
        items.extend(split_script(&text));
    }
    let binary = matches!(session.format, Format::Parquet | Format::Arrow);
    let queries = items.iter().filter(|i| matches!(i, Item::Sql(_))).count();
    if binary && queries > 1 {
        eprintln!(
            "ibarrow: {} output holds one result; run one statement per output file",
            session.format
        );
        return Outcome::Failed(String::new());
    }
    command::run_items(session, items)
}

/// Ctrl-C clears a line being typed; at an empty prompt it ends the session.
struct InterruptHandler;

impl ConditionalEventHandler for InterruptHandler {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        if ctx.line().is_empty() {
            None
        } else {
            Some(Cmd::Kill(Movement::WholeBuffer))
        }
    }
}

fn run_interactive(session: &mut Session, demo: bool) -> Outcome {
    let mut editor: Editor<SqlHelper, rustyline::history::DefaultHistory> = match Editor::new() {
        Ok(editor) => editor,
        Err(err) => {
            eprintln!("ibarrow: cannot start the line editor: {err}");
            return Outcome::Failed(String::new());
        }
    };
    editor.set_helper(Some(SqlHelper::new(
        session.user.clone(),
        session.runtime.handle().clone(),
    )));
    editor.bind_sequence(
        KeyEvent::ctrl('C'),
        EventHandler::Conditional(Box::new(InterruptHandler)),
    );
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!(
        "ibarrow {} — sources: {}. \\help for commands, \\q to quit.",
        env!("CARGO_PKG_VERSION"),
        session.engine.source_names().join(", ")
    );
    if demo {
        println!(
            "This is the demo: a shop and a CRM in two SQLite databases. Try a join across both:\n\n{}\n",
            ibarrow_repl::demo::FIRST_QUERY
        );
    }
    loop {
        match editor.readline("ibarrow> ") {
            Ok(input) => {
                if input.trim().is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(input.as_str());
                let (items, _) = split(&input);
                match command::run_items(session, items) {
                    Outcome::Quit => break,
                    Outcome::Cancelled => eprintln!("query cancelled"),
                    Outcome::Failed(_) | Outcome::Done => {}
                }
            }
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => break,
            Err(err) => {
                eprintln!("ibarrow: {err}");
                break;
            }
        }
    }
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(path);
    }
    Outcome::Done
}

/// `IBARROW_HISTORY`, else `ibarrow/history` in the user's data directory.
fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("IBARROW_HISTORY") {
        return Some(PathBuf::from(path));
    }
    dirs::data_dir().map(|d| d.join("ibarrow").join("history"))
}
