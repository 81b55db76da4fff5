//! `rwsgi-daemon`: the daemon host, an executable embedding the Python it was built for
//! that runs one daemon process from a plan the daemon manager hands it (see
//! `mod_rwsgi::daemon::host`). Not yet started by the manager (issue 35 groundwork).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mod_rwsgi::daemon::host::main(
        &args,
        mod_rwsgi::module::attach_scoreboard,
    ));
}
