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

/// What the entry point names (`--application-type`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppType {
    /// A WSGI script file (mod_wsgi's classic form).
    Script,
    /// A Python module imported by name from the working directory or --python-path.
    Module,
    /// A Paste Deploy configuration file (PasteDeploy must be installed in the daemon's
    /// Python, e.g. the --python-home venv).
    Paste,
    /// Static files only (refused: not supported by rwsgi-express yet).
    Static,
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// The WSGI script (`--application-type script`, the default; it must define the
    /// callable, `application` unless --callable-object says otherwise), the module name
    /// (`--application-type module`) or the Paste Deploy .ini file (`paste`).
    #[arg(
        value_name = "APP.wsgi|MODULE|APP.ini",
        required_unless_present_any = ["webware_dir", "entry_point"],
        conflicts_with = "webware_dir"
    )]
    pub script: Option<String>,

    /// The entry point, as the positional argument (wins over it, as in mod_wsgi-express).
    #[arg(long, value_name = "FILE-PATH|MODULE", conflicts_with = "webware_dir")]
    pub entry_point: Option<String>,

    /// What the entry point is: a WSGI script file, a Python module to import, or a Paste
    /// Deploy configuration file.
    #[arg(long, value_enum, default_value = "script", value_name = "TYPE")]
    pub application_type: AppType,

    /// Name of the WSGI callable in the script or module.
    #[arg(long, default_value = "application", value_name = "NAME")]
    pub callable_object: String,

    /// A Webware for Python 3 working directory: serves DIR/Scripts/WSGIScript.py, and
    /// DIR/Static at /static.
    #[arg(long, value_name = "DIR")]
    pub webware_dir: Option<PathBuf>,

    /// Name of the daemon process group (default: HOST:PORT, HOST being `localhost` unless
    /// --host is given, as mod_wsgi-express names it).
    #[arg(long, value_name = "NAME")]
    pub process_group: Option<String>,

    /// Application group (default %{GLOBAL}, the main interpreter).
    #[arg(long, value_name = "NAME")]
    pub application_group: Option<String>,

    /// Address to listen on. Unlike mod_wsgi-express (all interfaces), the default is
    /// loopback only.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on.
    #[arg(long, default_value_t = 8000, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// The server's host name: requests for other names (the IP address included) are
    /// refused with 403 by a default virtual host, unless --allow-localhost.
    #[arg(long, value_name = "HOSTNAME")]
    pub server_name: Option<String>,

    /// Another host name for --server-name's virtual host (wildcards allowed); repeatable.
    #[arg(long, value_name = "HOSTNAME", action = clap::ArgAction::Append, requires = "server_name")]
    pub server_alias: Vec<String>,

    /// With --server-name: still serve requests made to localhost / a loopback address.
    #[arg(long, requires = "server_name")]
    pub allow_localhost: bool,

    /// Also serve HTTPS (mod_ssl) on this port; needs --ssl-certificate-file and
    /// --ssl-certificate-key-file (or --ssl-certificate).
    #[arg(long, alias = "ssl-port", value_name = "NUMBER",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub https_port: Option<u16>,

    /// The server certificate (PEM).
    #[arg(long, value_name = "FILE-PATH")]
    pub ssl_certificate_file: Option<PathBuf>,

    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE-PATH")]
    pub ssl_certificate_key_file: Option<PathBuf>,

    /// Common prefix of PATH.crt and PATH.key, instead of the two options above.
    #[arg(long, value_name = "FILE-PATH",
          conflicts_with_all = ["ssl_certificate_file", "ssl_certificate_key_file"])]
    pub ssl_certificate: Option<PathBuf>,

    /// Intermediate certificates sent with the server certificate.
    #[arg(long, value_name = "FILE-PATH")]
    pub ssl_certificate_chain_file: Option<PathBuf>,

    /// CA certificates for client certificates: HTTPS requests must then present one
    /// signed by them (for the whole site, or only the --ssl-verify-client URLs).
    #[arg(long, value_name = "FILE-PATH")]
    pub ssl_ca_certificate_file: Option<PathBuf>,

    /// Require a client certificate only under this URL path; repeatable.
    #[arg(long, value_name = "URL-PATH", action = clap::ArgAction::Append,
          requires = "ssl_ca_certificate_file")]
    pub ssl_verify_client: Vec<String>,

    /// Pass mod_ssl's SSL_* variables (and HTTPS=on) to the application.
    #[arg(long)]
    pub ssl_environment: bool,

    /// Redirect every plain-HTTP request to the HTTPS port.
    #[arg(long, requires = "https_port")]
    pub https_only: bool,

    /// With --https-only: the Strict-Transport-Security header value.
    #[arg(long, value_name = "PARAMS", requires = "https_only")]
    pub hsts_policy: Option<String>,

    /// Serve HTTP/2 (mod_http2): h2 over HTTPS, h2c over plain HTTP.
    #[arg(long)]
    pub http2: bool,

    /// Number of daemon processes (embedded mode: Apache child processes). Default 1.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub processes: Option<u32>,

    /// Request threads per daemon process (embedded mode: per Apache child).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub threads: u32,

    /// Client connections Apache accepts at once (default: 1.5 × processes × threads,
    /// plus 10, at least 20 more than that product).
    #[arg(long, value_name = "NUMBER", value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub max_clients: Option<u32>,

    /// Apache children started at first, as a fraction (0 to 1) of the most it may run
    /// (default 0.2).
    #[arg(long, value_name = "NUMBER")]
    pub initial_workers: Option<f64>,

    /// The fewest idle Apache children kept, as a fraction (0 to 1) of the most it may run
    /// (default: --initial-workers).
    #[arg(long, value_name = "NUMBER")]
    pub minimum_spare_workers: Option<f64>,

    /// The most idle Apache children kept, as a fraction (0 to 1) of the most it may run
    /// (default 0.6).
    #[arg(long, value_name = "NUMBER")]
    pub maximum_spare_workers: Option<f64>,

    /// The Apache MPM to run: event, worker or prefork (prefork in daemon mode only);
    /// repeatable, the first one installed wins (default: event, or worker with
    /// --embedded-mode).
    #[arg(long = "server-mpm", value_name = "NAME", action = clap::ArgAction::Append)]
    pub server_mpm: Vec<String>,

    /// Run the application inside the Apache child processes (worker MPM) rather than in a
    /// daemon process group.
    #[arg(long)]
    pub embedded_mode: bool,

    #[command(flatten)]
    pub daemon: DaemonOptions,

    #[command(flatten)]
    pub http: HttpOptions,

    /// Directory the daemon runs in and imports from first (default: the script's
    /// directory; with --application-type module, the current directory).
    #[arg(long, value_name = "DIRECTORY-PATH")]
    pub working_directory: Option<PathBuf>,

    /// Another directory for sys.path; repeatable.
    #[arg(long = "python-path", value_name = "DIRECTORY-PATH", action = clap::ArgAction::Append)]
    pub python_paths: Vec<PathBuf>,

    /// Add NAME=VALUE to every request's WSGI environ (SetEnv); repeatable.
    #[arg(long, num_args = 2, value_names = ["NAME", "VALUE"], action = clap::ArgAction::Append)]
    pub setenv: Vec<String>,

    /// Copy the environment variable NAME of the Apache process into every request's WSGI
    /// environ (PassEnv); repeatable.
    #[arg(long, value_name = "NAME", action = clap::ArgAction::Append)]
    pub passenv: Vec<String>,

    /// An Apache configuration file included after the generated configuration; repeatable.
    #[arg(long = "include-file", value_name = "FILE-PATH", action = clap::ArgAction::Append)]
    pub include_files: Vec<PathBuf>,

    /// A request header a trusted proxy sets (WSGITrustedProxyHeaders: X-Forwarded-For,
    /// X-Forwarded-Host, X-Forwarded-Proto, X-Script-Name, ...); repeatable.
    #[arg(long = "trust-proxy-header", value_name = "HEADER-NAME",
          action = clap::ArgAction::Append)]
    pub trust_proxy_headers: Vec<String>,

    /// An address or subnet whose --trust-proxy-header headers are believed
    /// (WSGITrustedProxies); repeatable.
    #[arg(long = "trust-proxy", value_name = "IP-ADDRESS/SUBNET",
          action = clap::ArgAction::Append, requires = "trust_proxy_headers")]
    pub trust_proxies: Vec<String>,

    /// Accept request bodies with chunked transfer encoding (WSGIChunkedRequest On).
    #[arg(long)]
    pub chunked_request: bool,

    /// Show HEAD requests to the application as GET: On, Off or Auto (WSGIMapHEADToGET;
    /// default Auto).
    #[arg(long, value_name = "OFF|ON|AUTO", ignore_case = true,
          value_parser = ["Off", "On", "Auto"])]
    pub map_head_to_get: Option<String>,

    /// The daemon's locale, LC_ALL (default C.UTF-8).
    #[arg(long, value_name = "NAME")]
    pub locale: Option<String>,

    /// The daemon's LANG (default: --locale).
    #[arg(long, value_name = "NAME")]
    pub lang: Option<String>,

    /// Directory for Python eggs (PYTHON_EGG_CACHE, python-eggs=).
    #[arg(long, value_name = "DIRECTORY-PATH")]
    pub python_eggs: Option<PathBuf>,

    /// A Python warnings filter (-W syntax, WSGIPythonWarnings); repeatable.
    #[arg(long = "python-warnings", value_name = "SPEC", action = clap::ArgAction::Append)]
    pub python_warnings: Vec<String>,

    /// Python's thread switch interval in seconds (sys.setswitchinterval).
    #[arg(long, value_name = "SECONDS")]
    pub switch_interval: Option<f64>,

    /// Compress text responses (HTML, plain text, CSS, JavaScript, JSON, XML) with
    /// mod_deflate for clients that accept it.
    #[arg(long)]
    pub compress_responses: bool,

    /// Serve Apache's status page (mod_status) at /server-status, to local clients only.
    #[arg(long)]
    pub server_status: bool,

    /// Let the application call mod_wsgi.server_metrics() (Apache's scoreboard, with
    /// ExtendedStatus On): WSGIServerMetrics On and server-metrics=on.
    #[arg(long)]
    pub server_metrics: bool,

    /// Serve every daemon process's metrics in the Prometheus text format (the
    /// rwsgi-metrics handler) at URL, to local clients only.
    #[arg(long, value_name = "URL")]
    pub metrics_url: Option<String>,

    /// A directory whose files Apache serves as they are, at the URL paths they have under
    /// it; other URLs go to the application (mod_wsgi-express's fallback).
    #[arg(long, value_name = "DIRECTORY-PATH")]
    pub document_root: Option<PathBuf>,

    /// With --document-root: a directory of it is served by Apache with this index file
    /// (DirectoryIndex) instead of going to the application.
    #[arg(long, value_name = "FILE-NAME", requires = "document_root")]
    pub directory_index: Option<String>,

    /// With --document-root: a directory without its index file is listed (Options
    /// +Indexes); directories go to Apache only with --directory-index.
    #[arg(long, requires = "document_root")]
    pub directory_listing: bool,

    /// Run the Python script SCRIPT-PATH as the managed service NAME: its own daemon process
    /// (group `service:NAME`, no request threads), started with Apache and restarted if it
    /// dies; repeatable.
    #[arg(long = "service-script", num_args = 2, value_names = ["SERVICE", "SCRIPT-PATH"],
          action = clap::ArgAction::Append)]
    pub service_scripts: Vec<String>,

    /// Run as root: the user the service SERVICE runs as (default: --user's); repeatable.
    #[arg(long = "service-user", num_args = 2, value_names = ["SERVICE", "USERNAME"],
          action = clap::ArgAction::Append)]
    pub service_users: Vec<String>,

    /// Run as root: the group the service SERVICE runs as (default: --group's); repeatable.
    #[arg(long = "service-group", num_args = 2, value_names = ["SERVICE", "GROUP"],
          action = clap::ArgAction::Append)]
    pub service_groups: Vec<String>,

    /// Emit WSGIFreeThreading On: the daemon's interpreters run without the GIL on a
    /// free-threaded Python build (on another build Apache logs a warning).
    #[arg(long)]
    pub free_threading: bool,

    /// The MIME types file Apache uses (TypesConfig; default /etc/mime.types).
    #[arg(long, value_name = "FILE-PATH")]
    pub mime_types: Option<PathBuf>,

    /// The shell that runs the generated `apachectl` (default /bin/sh).
    #[arg(long, value_name = "FILE-PATH")]
    pub shell_executable: Option<PathBuf>,

    /// The name the Apache processes show (their argv[0]; default: the executable's path).
    /// `apachectl` then runs in bash (`exec -a`) unless --shell-executable names another.
    #[arg(long, value_name = "NAME")]
    pub process_name: Option<String>,

    /// The Apache executable (default /usr/sbin/apache2).
    #[arg(long, value_name = "FILE-PATH")]
    pub httpd_executable: Option<PathBuf>,

    /// The directory of Apache's modules (default /usr/lib/apache2/modules):
    /// ${MOD_WSGI_MODULES_DIRECTORY}.
    #[arg(long, value_name = "DIRECTORY-PATH")]
    pub modules_directory: Option<PathBuf>,

    /// Proxy URL-PATH and the URLs under it to URL (ProxyPass, WebSocket upgrades
    /// included), with X-Forwarded-Port, -Scheme and -Prefix; repeatable.
    #[arg(long = "proxy-mount-point", num_args = 2, value_names = ["URL-PATH", "URL"],
          action = clap::ArgAction::Append)]
    pub proxy_mount_points: Vec<String>,

    /// The same as --proxy-mount-point (mod_wsgi-express's other name for it).
    #[arg(long = "proxy-url-alias", num_args = 2, value_names = ["URL-PATH", "URL"],
          action = clap::ArgAction::Append, hide = true)]
    pub proxy_url_aliases: Vec<String>,

    /// Proxy every request for the host name HOSTNAME to URL (a virtual host); repeatable.
    #[arg(long = "proxy-virtual-host", num_args = 2, value_names = ["HOSTNAME", "URL"],
          action = clap::ArgAction::Append)]
    pub proxy_virtual_hosts: Vec<String>,

    /// Seconds to wait for a proxied backend (ProxyTimeout; default: --socket-timeout).
    #[arg(long, value_name = "SECONDS")]
    pub proxy_timeout: Option<u64>,

    /// With start-server: write the configuration and `apachectl` and exit, as setup-server
    /// does.
    #[arg(long)]
    pub setup_only: bool,

    /// A URL path whose requests do not count as activity for --inactivity-timeout (a health
    /// check URL, say): WSGIIgnoreActivity On there; repeatable.
    #[arg(long = "ignore-activity", value_name = "URL-PATH", action = clap::ArgAction::Append)]
    pub ignore_activity: Vec<String>,

    /// Send static files and the application's wsgi.file_wrapper responses with sendfile()
    /// (EnableSendfile On, WSGIEnableSendfile On).
    #[arg(long)]
    pub enable_sendfile: bool,

    /// Apache's error document for an HTTP status (ErrorDocument: a local URL path, a URL or
    /// a message); repeatable.
    #[arg(long = "error-document", num_args = 2, value_names = ["STATUS", "URL-PATH"],
          action = clap::ArgAction::Append)]
    pub error_documents: Vec<String>,

    /// Apache's error documents replace the application's own error responses
    /// (WSGIErrorOverride On).
    #[arg(long)]
    pub error_override: bool,

    /// Send mod_wsgi 6's telemetry to the mod_wsgi-telemetry ingester listening on
    /// unix:/path (WSGITelemetryService).
    #[arg(long, value_name = "TARGET")]
    pub telemetry_service: Option<String>,

    /// Seconds between two telemetry reports (default 1, at least 0.5).
    #[arg(long, value_name = "SECONDS", requires = "telemetry_service")]
    pub telemetry_interval: Option<f64>,

    /// Report requests still running after SECONDS in the telemetry (WSGISlowRequests).
    #[arg(long, value_name = "SECONDS", requires = "telemetry_service")]
    pub slow_requests: Option<f64>,

    /// A WSGITelemetryOptions line ("+CaptureUserAgent", "None", ...); repeatable.
    #[arg(long, value_name = "ARGS", requires = "telemetry_service",
          action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub telemetry_options: Vec<String>,

    /// A Python script whose allow_access(environ, host) says which clients may use the site
    /// (WSGIAccessScript for the whole site; it runs in Apache's children).
    #[arg(long, value_name = "SCRIPT-PATH")]
    pub host_access_script: Option<PathBuf>,

    /// A Python script whose check_password(environ, user, password) (Basic) or
    /// get_realm_hash(environ, user, realm) (Digest) authenticates the users of the whole site
    /// (WSGIAuthUserScript; every request then needs a valid user).
    #[arg(long, value_name = "SCRIPT-PATH")]
    pub auth_user_script: Option<PathBuf>,

    /// The authentication scheme of --auth-user-script: Basic (the default) or Digest.
    #[arg(long, value_name = "TYPE", requires = "auth_user_script")]
    pub auth_type: Option<String>,

    /// A Python script whose groups_for_user(environ, user) lists a user's groups
    /// (WSGIAuthGroupScript): users must also be in --auth-group.
    #[arg(long, value_name = "SCRIPT-PATH", requires = "auth_user_script")]
    pub auth_group_script: Option<PathBuf>,

    /// The group --auth-group-script must put a user in (default: wsgi, as in
    /// mod_wsgi-express).
    #[arg(long, value_name = "NAME", requires = "auth_group_script")]
    pub auth_group: Option<String>,

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
    #[arg(long, conflicts_with = "disable_reloading")]
    pub reload_on_changes: bool,

    /// Never reload the application when its script changes (WSGIScriptReloading Off).
    #[arg(long)]
    pub disable_reloading: bool,

    #[command(flatten)]
    pub logs: LogOptions,

    /// A shell script `apachectl` sources before starting Apache, to set environment
    /// variables (default: `envvars` in the server root, if it exists).
    #[arg(long, value_name = "FILE-PATH")]
    pub envvars_script: Option<PathBuf>,

    /// Do not destroy the Python interpreter when a process stops (WSGIDestroyInterpreter
    /// Off: shutdown callbacks run, atexit handlers do not).
    #[arg(long)]
    pub orphan_interpreter: bool,

    /// Where Apache writes its PID (default: httpd.pid in the server root).
    #[arg(long, value_name = "FILE-PATH")]
    pub pid_file: Option<PathBuf>,

    /// Directory for the configuration, logs and sockets
    /// (default: /tmp/rwsgi-express-HOST:PORT-UID, refused when it is a symlink or
    /// another user's).
    #[arg(long, value_name = "DIR")]
    pub server_root: Option<PathBuf>,

    /// mod_rwsgi.so to load (default: the installed one, else build/mod_rwsgi.so of this
    /// checkout).
    #[arg(long, value_name = "PATH")]
    pub module: Option<PathBuf>,
}

/// The daemon process group's timeouts, recycling and buffers (WSGIDaemonProcess options),
/// with mod_wsgi-express's defaults. Unset ones keep the default; in embedded mode setting
/// one is an error (it would have no effect), except --maximum-requests.
#[derive(Args, Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Replace a daemon process after this many requests (embedded mode: an Apache child
    /// after this many connections). Default 0: never.
    #[arg(long, value_name = "NUMBER")]
    pub maximum_requests: Option<u64>,
    /// Seconds a daemon may take to load the application (default 15).
    #[arg(long, value_name = "SECONDS")]
    pub startup_timeout: Option<u64>,
    /// Seconds a stopping daemon may take before it is killed (default 5).
    #[arg(long, value_name = "SECONDS")]
    pub shutdown_timeout: Option<u64>,
    /// Replace each daemon process every SECONDS (default 0: never).
    #[arg(long, value_name = "SECONDS")]
    pub restart_interval: Option<u64>,
    /// Replace a daemon process after SECONDS of CPU time (default 0: never).
    #[arg(long, value_name = "SECONDS")]
    pub cpu_time_limit: Option<u64>,
    /// Seconds a daemon being replaced may finish its requests in (default 15).
    #[arg(long, value_name = "SECONDS")]
    pub graceful_timeout: Option<u64>,
    /// Grace period for a SIGUSR1 eviction (default: --graceful-timeout).
    #[arg(long, value_name = "SECONDS")]
    pub eviction_timeout: Option<u64>,
    /// Seconds the GIL may be unavailable before the daemon is replaced (default 60).
    #[arg(long, value_name = "SECONDS")]
    pub deadlock_timeout: Option<u64>,
    /// Replace an idle daemon after SECONDS without requests (default 0: never).
    #[arg(long, value_name = "SECONDS")]
    pub inactivity_timeout: Option<u64>,
    /// Seconds a request may run (scaled by 1 + ln threads) before recovery (default 60).
    #[arg(long, value_name = "SECONDS")]
    pub request_timeout: Option<u64>,
    /// Raise mod_wsgi.RequestTimeout in a request past request-timeout, and replace the
    /// daemon only if it still runs SECONDS later (default 0: off).
    #[arg(long, value_name = "SECONDS")]
    pub interrupt_timeout: Option<u64>,
    /// Seconds to wait for a connection to a daemon (default 15).
    #[arg(long, value_name = "SECONDS")]
    pub connect_timeout: Option<u64>,
    /// Seconds for each read or write between Apache and the daemon; also Apache's
    /// Timeout (default 60).
    #[arg(long, value_name = "SECONDS")]
    pub socket_timeout: Option<u64>,
    /// Seconds a request may wait for a daemon thread before 504 (default 45).
    #[arg(long, value_name = "SECONDS")]
    pub queue_timeout: Option<u64>,
    /// Listen backlog of the daemon's socket (default 100).
    #[arg(long, value_name = "NUMBER")]
    pub daemon_backlog: Option<u64>,
    /// Send buffer of daemon connections in bytes (default 0: the system's).
    #[arg(long, value_name = "NUMBER")]
    pub send_buffer_size: Option<u64>,
    /// Receive buffer of daemon connections in bytes (default 0: the system's).
    #[arg(long, value_name = "NUMBER")]
    pub receive_buffer_size: Option<u64>,
    /// Longest response header line in bytes (default 0: 32768).
    #[arg(long, value_name = "NUMBER")]
    pub header_buffer_size: Option<u64>,
    /// Response bytes passed on without a flush (default 0: 8 MiB).
    #[arg(long, value_name = "NUMBER")]
    pub response_buffer_size: Option<u64>,
    /// Seconds for each write to the client (default 0: --socket-timeout).
    #[arg(long, value_name = "SECONDS")]
    pub response_socket_timeout: Option<u64>,
    /// Milliseconds a flush waits for more response data (default 5).
    #[arg(long, value_name = "MILLISECONDS")]
    pub response_flush_delay: Option<u64>,
}

/// Apache's own connection limits, with mod_wsgi-express's defaults.
#[derive(Args, Debug, Clone)]
pub struct HttpOptions {
    /// Seconds to receive the request head (RequestReadTimeout header=; 0: no limit).
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    pub header_timeout: u64,
    /// Upper bound the head's timeout may grow to with --header-min-rate (0: none).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub header_max_timeout: u64,
    /// Bytes per second that extend the head's timeout (0: none).
    #[arg(long, default_value_t = 500, value_name = "BYTES")]
    pub header_min_rate: u64,
    /// Seconds to receive the request body (RequestReadTimeout body=; 0: no limit).
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    pub body_timeout: u64,
    /// Upper bound the body's timeout may grow to with --body-min-rate (0: none).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub body_max_timeout: u64,
    /// Bytes per second that extend the body's timeout (0: none).
    #[arg(long, default_value_t = 500, value_name = "BYTES")]
    pub body_min_rate: u64,
    /// Listen backlog of Apache's port(s).
    #[arg(long, default_value_t = 500, value_name = "NUMBER")]
    pub server_backlog: u64,
    /// Seconds a kept-alive connection may idle (0: no keep-alive).
    #[arg(long, default_value_t = 2, value_name = "SECONDS")]
    pub keep_alive_timeout: u64,
    /// Largest request body in bytes (LimitRequestBody; 0: unlimited).
    #[arg(long, default_value_t = 10485760, value_name = "NUMBER")]
    pub limit_request_body: u64,
}

/// Where and how Apache logs.
#[derive(Args, Debug, Clone)]
pub struct LogOptions {
    /// Send the error log (and with --access-log the access log) to this terminal.
    #[arg(long)]
    pub log_to_terminal: bool,

    /// Log each request (Common Log Format) to the access log.
    #[arg(long)]
    pub access_log: bool,

    /// Apache LogLevel.
    #[arg(long, default_value = "warn", value_parser = LOG_LEVELS)]
    pub log_level: String,

    /// Directory for the log files (default: the server root).
    #[arg(
        long,
        value_name = "DIRECTORY-PATH",
        conflicts_with = "log_to_terminal"
    )]
    pub log_directory: Option<PathBuf>,

    /// Access log format: `common` (default), `combined`, or a LogFormat string.
    #[arg(long, value_name = "FORMAT", requires = "access_log")]
    pub access_log_format: Option<String>,

    /// Error log format (ErrorLogFormat).
    #[arg(long, value_name = "FORMAT")]
    pub error_log_format: Option<String>,

    /// File name of the error log in the server root.
    #[arg(
        long,
        default_value = "error_log",
        value_name = "FILE-NAME",
        conflicts_with = "log_to_terminal"
    )]
    pub error_log_name: String,

    /// File name of the access log in the server root.
    #[arg(
        long,
        default_value = "access_log",
        value_name = "FILE-NAME",
        conflicts_with = "log_to_terminal",
        requires = "access_log"
    )]
    pub access_log_name: String,

    /// Keep Apache's start-up messages (before the error log opens) in a file (`-E`).
    #[arg(long)]
    pub startup_log: bool,

    /// File name of the start-up log in the server root.
    #[arg(
        long,
        default_value = "startup_log",
        value_name = "FILE-NAME",
        conflicts_with = "log_to_terminal",
        requires = "startup_log"
    )]
    pub startup_log_name: String,

    /// Rotate the logs with rotatelogs when they reach --max-log-size.
    #[arg(long, conflicts_with = "log_to_terminal")]
    pub rotate_logs: bool,

    /// Size in MB at which --rotate-logs starts a new file.
    #[arg(long, default_value_t = 5, value_name = "MB", requires = "rotate_logs",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_log_size: u64,

    /// The rotatelogs program.
    #[arg(
        long,
        default_value = "/usr/bin/rotatelogs",
        value_name = "FILE-PATH",
        requires = "rotate_logs"
    )]
    pub rotatelogs_executable: PathBuf,
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

/// mod_wsgi-express options rwsgi-express knows but does not implement yet, with the number
/// of values each takes (so it is parsed like mod_wsgi-express parses it, and then refused
/// with one clear line rather than an "unexpected argument" or, worse, silence).
pub const NOT_SUPPORTED_YET: &[(&str, usize)] = &[
    ("allow-override", 1),
    ("enable-telemetry", 0),
    ("telemetry-ui-port", 1),
    ("rewrite-rules", 1),
    ("verbose-debugging", 0),
    ("socket-prefix", 1),
    ("add-handler", 2),
    ("with-php5", 0),
    ("with-cgi", 0),
    ("service-log-file", 2),
    ("enable-docs", 0),
    ("debug-mode", 0),
    ("enable-debugger", 0),
    ("debugger-startup", 0),
    ("enable-coverage", 0),
    ("coverage-directory", 1),
    ("enable-profiler", 0),
    ("profiler-directory", 1),
    ("enable-recorder", 0),
    ("recorder-directory", 1),
    ("enable-gdb", 0),
    ("gdb-executable", 1),
];

/// The command line parser: the derived one plus, on start-server and setup-server, a
/// hidden argument for each of `NOT_SUPPORTED_YET`.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    for sub in ["start-server", "setup-server"] {
        cmd = cmd.mut_subcommand(sub, |mut s| {
            for (name, values) in NOT_SUPPORTED_YET {
                let mut arg = clap::Arg::new(*name)
                    .long(*name)
                    .hide(true)
                    .action(clap::ArgAction::Append);
                arg = if *values == 0 {
                    arg.num_args(0).action(clap::ArgAction::Count)
                } else {
                    arg.num_args(*values).allow_hyphen_values(true)
                };
                s = s.arg(arg);
            }
            s
        });
    }
    cmd
}

/// Parses the command line; a mod_wsgi-express option of `NOT_SUPPORTED_YET` is an error.
pub fn parse() -> Result<Cli, String> {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    if let Some((_, sub)) = matches.subcommand() {
        for (name, _) in NOT_SUPPORTED_YET {
            if sub.try_contains_id(name).unwrap_or(false)
                && sub.value_source(name) == Some(clap::parser::ValueSource::CommandLine)
            {
                return Err(format!(
                    "--{name} is a mod_wsgi-express option not supported by rwsgi-express yet"
                ));
            }
        }
    }
    Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn refused_options_are_not_also_implemented() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let server = cmd.find_subcommand("setup-server").unwrap();
        for (name, _) in NOT_SUPPORTED_YET {
            assert!(
                server.get_arguments().all(|a| a.get_long() != Some(*name)
                    && !a.get_all_aliases().unwrap_or_default().contains(name)),
                "--{name} is both implemented and refused"
            );
        }
    }
}
