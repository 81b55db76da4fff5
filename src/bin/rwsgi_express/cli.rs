//! Command line: `start-server`, `setup-server` and `module-config`, with mod_wsgi-express's
//! option names where the option exists there.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rwsgi-express",
    version,
    about = "Run a Python WSGI application under Apache httpd with mod_rwsgi (daemon mode), \
             like mod_wsgi-express."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a self-contained Apache configuration and run Apache in the foreground until
    /// Ctrl-C or SIGTERM.
    StartServer(ServerArgs),
    /// Write the configuration and an `apachectl` script into the server root, without
    /// starting anything.
    SetupServer(ServerArgs),
    /// Print the lines that load mod_rwsgi into a system Apache.
    ModuleConfig(ModuleArgs),
}

const LOG_LEVELS: [&str; 16] = [
    "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug", "trace1", "trace2",
    "trace3", "trace4", "trace5", "trace6", "trace7", "trace8",
];

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// The WSGI script; it must define `application`.
    #[arg(
        value_name = "APP.wsgi",
        required_unless_present = "webware_dir",
        conflicts_with = "webware_dir"
    )]
    pub script: Option<PathBuf>,

    /// A Webware for Python 3 working directory: serves DIR/Scripts/WSGIScript.py, and
    /// DIR/Static at /static.
    #[arg(long, value_name = "DIR")]
    pub webware_dir: Option<PathBuf>,

    /// Address to listen on. Unlike mod_wsgi-express (all interfaces), the default is
    /// loopback only.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on.
    #[arg(long, default_value_t = 8000, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Number of daemon processes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub processes: u32,

    /// Request threads per daemon process.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub threads: u32,

    /// Serve the static files under PATH (a directory or one file) at URL; repeatable.
    #[arg(long, num_args = 2, value_names = ["URL", "PATH"], action = clap::ArgAction::Append)]
    pub url_alias: Vec<String>,

    /// URL path the application is mounted at.
    #[arg(long, default_value = "/")]
    pub mount_point: String,

    /// User Apache's children and the daemon run as (default: www-data when run as root,
    /// else the current user, and then Apache does not switch user).
    #[arg(long)]
    pub user: Option<String>,

    /// Group for --user (default: www-data when run as root, else the user's group).
    #[arg(long)]
    pub group: Option<String>,

    /// Python installation or virtual environment the daemon uses (python-home=; default:
    /// the venv this command was pip-installed into, if any).
    #[arg(long, value_name = "DIR")]
    pub python_home: Option<PathBuf>,

    /// Restart the daemon when any Python module it has loaded changes on disk.
    #[arg(long)]
    pub reload_on_changes: bool,

    /// Send the error log (and with --access-log the access log) to this terminal.
    #[arg(long)]
    pub log_to_terminal: bool,

    /// Log each request (Common Log Format).
    #[arg(long)]
    pub access_log: bool,

    /// Apache LogLevel.
    #[arg(long, default_value = "warn", value_parser = LOG_LEVELS)]
    pub log_level: String,

    /// Directory for the configuration, logs and sockets
    /// (default: /tmp/rwsgi-express-HOST:PORT-UID).
    #[arg(long, value_name = "DIR")]
    pub server_root: Option<PathBuf>,

    /// mod_rwsgi.so to load (default: the installed one, else build/mod_rwsgi.so of this
    /// checkout).
    #[arg(long, value_name = "PATH")]
    pub module: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ModuleArgs {
    /// mod_rwsgi.so to load (default: as for start-server).
    #[arg(long, value_name = "PATH")]
    pub module: Option<PathBuf>,

    /// Also print a WSGIPythonHome line for this Python installation or virtual environment
    /// (default: the venv this command was pip-installed into, if any).
    #[arg(long, value_name = "DIR")]
    pub python_home: Option<PathBuf>,
}

impl ServerArgs {
    /// `--url-alias` values as (URL, PATH) pairs.
    pub fn url_aliases(&self) -> Vec<(String, PathBuf)> {
        self.url_alias
            .chunks(2)
            .map(|c| (c[0].clone(), PathBuf::from(&c[1])))
            .collect()
    }
}
