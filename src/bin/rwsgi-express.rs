//! rwsgi-express: serve a WSGI application with Apache httpd and mod_rwsgi in daemon mode,
//! without writing any Apache configuration — mod_rwsgi's counterpart of mod_wsgi-express.
//!
//! - `start-server APP.wsgi` writes a self-contained server root (httpd.conf, apachectl,
//!   logs, sockets) and runs `apache2 -DFOREGROUND` until Ctrl-C or SIGTERM.
//! - `setup-server APP.wsgi` writes the same server root and an `apachectl` to run it later.
//! - `module-config` prints the LoadModule line for a system Apache (and WSGIPythonHome
//!   when pip installed it into a venv).
//!
//! Problems the user can fix (a missing script, a busy port, an unreadable directory) are
//! one line on stderr and exit status 1.

#[path = "rwsgi_express/cli.rs"]
mod cli;
#[path = "rwsgi_express/conf.rs"]
mod conf;
#[path = "rwsgi_express/run.rs"]
mod run;
#[path = "rwsgi_express/site.rs"]
mod site;

use std::process::ExitCode;

use cli::{Command, ModuleArgs, ServerArgs};

/// A failure the user can act on: printed as one line, exit status 1.
#[derive(Debug)]
pub struct Fail(pub String);

/// Writes a file of the server root (or the generated script) with its mode.
pub fn write_file(path: &std::path::Path, text: &str, mode: u32) -> Result<(), Fail> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)))
        .map_err(|e| Fail(format!("cannot write {}: {e}", path.display())))
}

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(msg) => {
            eprintln!("rwsgi-express: {msg}");
            return ExitCode::from(1);
        }
    };
    let result = match cli.command {
        Command::StartServer(args) if args.setup_only => setup_server(&args),
        Command::StartServer(args) => start_server(&args),
        Command::SetupServer(args) => setup_server(&args),
        Command::ModuleConfig(args) => module_config(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Fail(msg)) => {
            eprintln!("rwsgi-express: {msg}");
            ExitCode::from(1)
        }
    }
}

fn print_notes(site: &site::Site) {
    for note in &site.notes {
        eprintln!("rwsgi-express: note: {note}");
    }
}

fn start_server(args: &ServerArgs) -> Result<u8, Fail> {
    let site = site::resolve(args, true)?;
    conf::write_all(&site)?;
    print_notes(&site);
    let code = run::run_apache(&site)?;
    Ok(u8::try_from(code).unwrap_or(1))
}

fn setup_server(args: &ServerArgs) -> Result<u8, Fail> {
    let site = site::resolve(args, false)?;
    conf::write_all(&site)?;
    print_notes(&site);
    let root = site.server_root.display();
    println!("Server URL:    {}", site.url());
    if let Some(url) = site.https_url() {
        println!("HTTPS URL:     {url}");
    }
    println!("Server root:   {root}");
    println!("Server config: {}", site.conf_path().display());
    if !site.log_to_terminal {
        println!("Error log:     {}", site.error_log().display());
    }
    println!(
        "Control it with: {root}/apachectl start|stop|restart|graceful|configtest \
         (or `foreground` to run it in this terminal)"
    );
    if !site.apache_bin.exists() {
        eprintln!(
            "rwsgi-express: note: {} not found; install Apache (apt-get install apache2) \
             before starting it",
            site.apache_bin.display()
        );
    }
    Ok(0)
}

fn module_config(args: &ModuleArgs) -> Result<u8, Fail> {
    let module = site::find_module(args.module.as_deref())?;
    println!(
        "LoadModule rwsgi_module {}",
        apache_word(&module.display().to_string())
    );
    // The module embeds the Python it was built against; only another installation or a
    // virtual environment needs saying: `--python-home`, else the venv pip installed this
    // command into (as mod_wsgi-express prints its sys.prefix).
    let home = match &args.python_home {
        Some(home) => Some(
            std::fs::canonicalize(home)
                .map_err(|e| Fail(format!("--python-home {}: {e}", home.display())))?,
        ),
        None => site::own_venv(),
    };
    if let Some(home) = home {
        println!(
            "WSGIPythonHome {}",
            apache_word(&home.display().to_string())
        );
    }
    Ok(0)
}

/// A configuration word, quoted only when it has to be.
fn apache_word(s: &str) -> String {
    if s.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\'')
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s.to_string()
    }
}
