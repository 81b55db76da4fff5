//! The rule "nothing is silently ignored", made mechanical: every directive and every
//! WSGIDaemonProcess option mod_wsgi 6.0.5 registers (its `mod_wsgi.c` command table and
//! `wsgi_add_daemon_process`) is listed here as either implemented, naming the tests that show
//! its behaviour, or not supported yet, which `apache2 -t` must then refuse with "... is not
//! supported by mod_rwsgi yet". A new directive or option needs a line here, and a test.

mod common;

use common::{ApacheConfig, repo_dir};

enum Status {
    /// Implemented; shown by these tests (`file::function` under tests/).
    Implemented(&'static [&'static str]),
    /// Refused by configtest; the configuration text that uses it.
    NotYet(&'static str),
}
use Status::{Implemented, NotYet};

const TELEMETRY_TEST: &str =
    "telemetry::ingester_shows_daemon_processes_request_counts_and_slow_requests";

/// mod_wsgi 6.0.5's directives.
const DIRECTIVES: &[(&str, Status)] = &[
    (
        "WSGIScriptAlias",
        Implemented(&["daemon_mode::root_mount_and_authorization_pass"]),
    ),
    (
        "WSGIScriptAliasMatch",
        Implemented(&["directives::script_alias_match_maps_the_url_to_the_script_it_names"]),
    ),
    (
        "WSGIDaemonProcess",
        Implemented(&["daemon_mode::threads_serve_requests_at_once"]),
    ),
    (
        "WSGIProcessGroup",
        Implemented(&["daemon_mode::threads_serve_requests_at_once"]),
    ),
    (
        "WSGIApplicationGroup",
        Implemented(&[
            "restarts::hard_restarts_cut_only_requests_in_flight_as_for_cgi",
            "subinterpreters::each_kind_of_group_gets_its_own_sub_interpreter_in_daemon_mode",
            "subinterpreters::each_kind_of_group_gets_its_own_sub_interpreter_in_embedded_mode",
        ]),
    ),
    (
        "WSGIPythonHome",
        Implemented(&["directives::python_home_and_python_path_set_up_embedded_python"]),
    ),
    (
        "WSGIPythonPath",
        Implemented(&["directives::python_home_and_python_path_set_up_embedded_python"]),
    ),
    (
        "WSGISocketPrefix",
        Implemented(&["faults::a_missing_socket_directory_is_a_clear_error_at_start"]),
    ),
    (
        "WSGISocketRotation",
        Implemented(&["directives::socket_rotation_off_is_accepted_and_on_is_refused_by_name"]),
    ),
    (
        "WSGIRestrictStdout",
        Implemented(&["pep3333::restrict_stdout_makes_print_fail"]),
    ),
    (
        "WSGIPassAuthorization",
        Implemented(&["security::authorization_reaches_the_app_only_with_wsgi_pass_authorization"]),
    ),
    (
        "WSGICallableObject",
        Implemented(&["daemon_mode::set_handler_and_callable_object"]),
    ),
    (
        "WSGIImportScript",
        Implemented(&[
            "directives::import_script_preloads_before_the_first_request",
            "phase_scripts::handler_script_runs_handle_request_via_sethandler_addhandler_and_rewrite",
            "phase_scripts::service_script_is_supervised_restarted_and_stopped_with_systemexit",
            "subinterpreters::embedded_import_script_preloads_into_the_sub_interpreter_of_its_group",
        ]),
    ),
    (
        "WSGIChunkedRequest",
        Implemented(&["pep3333::chunked_request_body_needs_wsgi_chunked_request"]),
    ),
    (
        "WSGIScriptReloading",
        Implemented(&[
            "lifecycle::script_reloading_off_keeps_the_process",
            "reload_hooks::one_shot_reload_required_serves_the_asking_request_with_new_code",
        ]),
    ),
    (
        "WSGIRestrictEmbedded",
        Implemented(&["embedded_mode::restrict_embedded_refuses_and_keeps_python_out"]),
    ),
    (
        "WSGIMapHEADToGET",
        Implemented(&["daemon_options::map_head_to_get_on_off_and_auto_in_both_modes"]),
    ),
    (
        "WSGITrustedProxies",
        Implemented(&["security::forwarding_headers_are_honoured_only_from_trusted_proxies"]),
    ),
    (
        "WSGITrustedProxyHeaders",
        Implemented(&["security::forwarding_headers_are_honoured_only_from_trusted_proxies"]),
    ),
    (
        "WSGIEnableSendfile",
        Implemented(&[
            "pep3333::file_wrapper_sends_the_file_from_its_position_and_honours_content_length",
        ]),
    ),
    // A documented no-op in mod_wsgi 6: accepted, and says so in the log.
    (
        "WSGIVerboseDebugging",
        Implemented(&["directives::verbose_debugging_is_a_logged_no_op_as_in_mod_wsgi_6"]),
    ),
    (
        "WSGIErrorOverride",
        Implemented(&[
            "phase_scripts::error_override_replaces_app_error_bodies_in_daemon_mode_only",
        ]),
    ),
    (
        "WSGIIgnoreActivity",
        Implemented(&["lifecycle::ignore_activity_requests_do_not_hold_off_inactivity_timeout"]),
    ),
    (
        "WSGIPassApacheRequest",
        Implemented(&[
            "phase_scripts::pass_apache_request_gives_code_in_the_apache_child_the_request_rec_capsule",
            "phase_scripts::pass_apache_request_case_sensitivity_and_accept_mutex_as_mod_wsgi_6",
        ]),
    ),
    (
        "WSGIDispatchScript",
        Implemented(&["auth_scripts::dispatch_script_chooses_groups_and_callable_per_request"]),
    ),
    (
        "WSGIHandlerScript",
        Implemented(&[
            "phase_scripts::handler_script_runs_handle_request_via_sethandler_addhandler_and_rewrite",
            "phase_scripts::mod_wsgi_express_setup_server_config_serves_with_only_load_module_changed",
            "conf_errors::bad_configs_fail_configtest_with_a_precise_message",
        ]),
    ),
    (
        "WSGIAccessScript",
        Implemented(&[
            "auth_scripts::access_script_refuses_before_the_application_runs",
            "subinterpreters::phase_scripts_run_in_the_sub_interpreter_of_their_application_group",
        ]),
    ),
    (
        "WSGIAuthUserScript",
        Implemented(&[
            "auth_scripts::basic_login_runs_check_password_and_the_app_sees_remote_user_in_both_modes",
            "auth_scripts::digest_login_runs_get_realm_hash",
            "auth_scripts::a_touched_auth_script_is_reloaded",
        ]),
    ),
    (
        "WSGIAuthGroupScript",
        Implemented(&["auth_scripts::require_wsgi_group_admits_members_only"]),
    ),
    (
        "WSGIGroupAuthoritative",
        Implemented(&[
            "auth_scripts::configtest_checks_require_wsgi_group_and_notes_group_authoritative_off",
        ]),
    ),
    (
        "WSGIRestrictProcess",
        Implemented(&["phase_scripts::restrict_process_refuses_other_groups_with_403_naming_them"]),
    ),
    (
        "WSGIAcceptMutex",
        Implemented(&[
            "phase_scripts::pass_apache_request_case_sensitivity_and_accept_mutex_as_mod_wsgi_6",
        ]),
    ),
    (
        "WSGIRestrictStdin",
        Implemented(&["pyhost::restrict_stdin_makes_every_use_raise_oserror_naming_sys_stdin"]),
    ),
    (
        "WSGIRestrictSignal",
        Implemented(&[
            "pyhost::restrict_signal_on_by_default_ignores_registrations_with_a_warning_and_the_stack",
            "pyhost::restrict_signal_off_passes_calls_to_python",
            "webware::development_mode_signal_handlers_are_ignored_with_a_warning",
        ]),
    ),
    (
        "WSGICaseSensitivity",
        Implemented(&[
            "phase_scripts::case_sensitivity_off_names_modules_and_resources_after_the_lower_cased_path",
            "phase_scripts::pass_apache_request_case_sensitivity_and_accept_mutex_as_mod_wsgi_6",
        ]),
    ),
    (
        "WSGIPythonOptimize",
        Implemented(&["pyhost::python_start_up_directives_reach_python_in_both_modes"]),
    ),
    (
        "WSGIDontWriteBytecode",
        Implemented(&["pyhost::python_start_up_directives_reach_python_in_both_modes"]),
    ),
    (
        "WSGIPythonWarnings",
        Implemented(&["pyhost::python_start_up_directives_reach_python_in_both_modes"]),
    ),
    (
        "WSGIPythonHashSeed",
        Implemented(&["pyhost::python_start_up_directives_reach_python_in_both_modes"]),
    ),
    (
        "WSGIPythonEggs",
        Implemented(&["pyhost::python_start_up_directives_reach_python_in_both_modes"]),
    ),
    (
        "WSGIDestroyInterpreter",
        Implemented(&[
            "pyhost::destroy_interpreter_off_runs_shutdown_callbacks_but_not_atexit_or_finalisation",
        ]),
    ),
    (
        "WSGISwitchInterval",
        Implemented(&["pyhost::python_start_up_directives_reach_python_in_both_modes"]),
    ),
    (
        "WSGIPerInterpreterGIL",
        Implemented(&[
            "conf_errors::per_interpreter_gil_on_is_refused_before_python_3_12_naming_the_version_and_accepted_after",
            "subinterpreters::per_interpreter_gil_groups_each_answer_from_their_own_interpreter_and_gil",
        ]),
    ),
    (
        "WSGIFreeThreading",
        Implemented(&[
            "conf_errors::free_threading_on_warns_on_a_gil_build_and_off_is_silent",
            "daemon_mode::free_threading_disables_the_gil_only_when_on_and_on_a_free_threaded_build",
            "daemon_mode::cpu_bound_requests_run_in_parallel_only_without_the_gil",
        ]),
    ),
    (
        "<WSGIInterpreterOptions>",
        Implemented(&[
            "subinterpreters::interpreter_options_sections_scope_python_path_and_stdout_to_their_interpreters",
            "conf_errors::bad_configs_fail_configtest_with_a_precise_message",
        ]),
    ),
    (
        "WSGIServerMetrics",
        Implemented(&[
            "openmetrics::server_metrics_follows_wsgiservermetrics_in_embedded_mode_only",
        ]),
    ),
    // mod_rwsgi's own (mod_wsgi has no equivalent).
    (
        "WSGIHeapPolicy",
        Implemented(&[
            "embedded_mode::heap_policy_limits_arenas_unless_turned_off",
            "conf_errors::bad_configs_fail_configtest_with_a_precise_message",
        ]),
    ),
    (
        "WSGITelemetryService",
        Implemented(&[
            TELEMETRY_TEST,
            "conf_errors::bad_configs_fail_configtest_with_a_precise_message",
        ]),
    ),
    ("WSGISlowRequests", Implemented(&[TELEMETRY_TEST])),
    ("WSGITelemetryOptions", Implemented(&[TELEMETRY_TEST])),
];

/// mod_wsgi 6.0.5's WSGIDaemonProcess options (and mod_rwsgi's own, at the end).
const DAEMON_OPTIONS: &[(&str, Status)] = &[
    (
        "processes",
        Implemented(&["daemon_mode::root_mount_and_authorization_pass"]),
    ),
    (
        "threads",
        Implemented(&[
            "daemon_mode::threads_serve_requests_at_once",
            "phase_scripts::service_script_is_supervised_restarted_and_stopped_with_systemexit",
            "phase_scripts::requests_for_a_service_script_group_are_refused_at_once_naming_it",
        ]),
    ),
    (
        "user",
        Implemented(&["daemon_mode::daemon_runs_as_configured_user_with_display_name_and_locale"]),
    ),
    (
        "group",
        Implemented(&["daemon_mode::daemon_runs_as_configured_user_with_display_name_and_locale"]),
    ),
    (
        "supplementary-groups",
        Implemented(&["daemon_options::identity_umask_and_python_path_options_reach_the_daemon"]),
    ),
    (
        "umask",
        Implemented(&["daemon_options::identity_umask_and_python_path_options_reach_the_daemon"]),
    ),
    (
        "home",
        Implemented(&["daemon_mode::daemon_runs_as_configured_user_with_display_name_and_locale"]),
    ),
    (
        "python-home",
        Implemented(&["daemon_mode::venv_packages_are_importable_through_python_home"]),
    ),
    (
        "python-path",
        Implemented(&["daemon_options::identity_umask_and_python_path_options_reach_the_daemon"]),
    ),
    (
        "python-eggs",
        Implemented(&["pyhost::python_start_up_directives_reach_python_in_both_modes"]),
    ),
    (
        "lang",
        Implemented(&["daemon_mode::daemon_runs_as_configured_user_with_display_name_and_locale"]),
    ),
    (
        "locale",
        Implemented(&["daemon_mode::daemon_runs_as_configured_user_with_display_name_and_locale"]),
    ),
    (
        "display-name",
        Implemented(&["daemon_mode::daemon_runs_as_configured_user_with_display_name_and_locale"]),
    ),
    ("chroot", NotYet("WSGIDaemonProcess g chroot=/jail")),
    (
        "socket-user",
        Implemented(&[
            "daemon_options::socket_user_owns_the_socket_and_listen_backlog_sizes_its_queue",
        ]),
    ),
    (
        "script-user",
        Implemented(&["daemon_options::script_user_and_group_refuse_scripts_they_do_not_own"]),
    ),
    (
        "script-group",
        Implemented(&["daemon_options::script_user_and_group_refuse_scripts_they_do_not_own"]),
    ),
    (
        "listen-backlog",
        Implemented(&[
            "daemon_options::socket_user_owns_the_socket_and_listen_backlog_sizes_its_queue",
        ]),
    ),
    (
        "connect-timeout",
        Implemented(&["daemon_mode::unreachable_daemon_gives_503_after_connect_timeout"]),
    ),
    (
        "socket-timeout",
        Implemented(&["lifecycle::queue_timeout_and_socket_timeout_answer_504"]),
    ),
    (
        "queue-timeout",
        Implemented(&["lifecycle::queue_timeout_and_socket_timeout_answer_504"]),
    ),
    (
        "request-timeout",
        Implemented(&["lifecycle::request_timeout_answers_504_logs_stacks_and_recycles"]),
    ),
    (
        "interrupt-timeout",
        Implemented(&[
            "lifecycle::interrupt_timeout_raises_request_timeout_in_the_thread_and_keeps_the_process",
        ]),
    ),
    (
        "deadlock-timeout",
        Implemented(&["lifecycle::deadlock_timeout_replaces_a_process_whose_gil_is_stuck"]),
    ),
    (
        "inactivity-timeout",
        Implemented(&[
            "lifecycle::inactivity_timeout_recycles_an_idle_process_without_deadlock_timeout",
        ]),
    ),
    (
        "startup-timeout",
        Implemented(&["lifecycle::startup_timeout_replaces_a_process_whose_script_does_not_load"]),
    ),
    (
        "graceful-timeout",
        Implemented(&["lifecycle::sigint_restarts_gracefully_and_finishes_the_request_in_flight"]),
    ),
    (
        "eviction-timeout",
        Implemented(&["lifecycle::sigusr1_evicts_after_requests_in_flight_finish"]),
    ),
    (
        "restart-interval",
        Implemented(&["lifecycle::restart_interval_recycles_the_process"]),
    ),
    (
        "shutdown-timeout",
        Implemented(&[
            "faults::a_stopped_daemon_gives_504_by_socket_timeout_and_apache_still_stops",
        ]),
    ),
    (
        "maximum-requests",
        Implemented(&["lifecycle::maximum_requests_recycles_without_failures"]),
    ),
    (
        "cpu-time-limit",
        Implemented(&[
            "daemon_options::cpu_time_limit_replaces_the_process_warm_after_its_request",
            "daemon_options::resource_limits_priority_and_thread_stacks_reach_the_daemon",
        ]),
    ),
    (
        "cpu-priority",
        Implemented(&[
            "daemon_options::resource_limits_priority_and_thread_stacks_reach_the_daemon",
        ]),
    ),
    (
        "memory-limit",
        Implemented(&[
            "daemon_options::an_allocation_past_memory_limit_is_a_500_and_the_daemon_serves_on",
        ]),
    ),
    (
        "virtual-memory-limit",
        Implemented(&[
            "daemon_options::an_allocation_past_virtual_memory_limit_is_a_500_and_the_daemon_serves_on",
        ]),
    ),
    (
        "stack-size",
        Implemented(&[
            "daemon_options::resource_limits_priority_and_thread_stacks_reach_the_daemon",
        ]),
    ),
    (
        "send-buffer-size",
        Implemented(&["daemon_options::socket_buffer_sizes_apply_to_the_daemons_connections"]),
    ),
    (
        "receive-buffer-size",
        Implemented(&["daemon_options::socket_buffer_sizes_apply_to_the_daemons_connections"]),
    ),
    (
        "header-buffer-size",
        Implemented(&["daemon_options::a_header_line_over_header_buffer_size_is_a_500_naming_it"]),
    ),
    (
        "response-buffer-size",
        Implemented(&[
            "daemon_options::response_buffer_size_forces_flushes_in_a_long_unflushed_body",
        ]),
    ),
    (
        "response-socket-timeout",
        Implemented(&[
            "daemon_options::response_socket_timeout_ends_a_response_the_client_does_not_read",
        ]),
    ),
    (
        "response-flush-delay",
        Implemented(&["daemon_options::response_flush_delay_holds_a_flush_while_more_data_comes"]),
    ),
    (
        "switch-interval",
        Implemented(&["pyhost::python_start_up_directives_reach_python_in_both_modes"]),
    ),
    (
        "server-metrics",
        Implemented(&[
            "openmetrics::server_metrics_shows_the_scoreboard_to_a_group_that_asks",
            "openmetrics::server_metrics_follows_wsgiservermetrics_in_embedded_mode_only",
        ]),
    ),
    // mod_rwsgi's own.
    (
        "maximum-rss",
        Implemented(&[
            "daemon_options::maximum_rss_recycles_a_leaking_process_without_failed_requests",
        ]),
    ),
    (
        "env",
        Implemented(&["daemon_options::env_and_env_file_are_in_os_environ_at_import_time"]),
    ),
    (
        "env-file",
        Implemented(&[
            "daemon_options::env_and_env_file_are_in_os_environ_at_import_time",
            "daemon_options::a_missing_env_file_is_a_clear_error_at_start",
        ]),
    ),
];

/// mod_wsgi 6.0.5's names, from its sources: a table that drops one fails here.
const MOD_WSGI_DIRECTIVES: &str = "WSGIAcceptMutex WSGIAccessScript WSGIApplicationGroup \
    WSGIAuthGroupScript WSGIAuthUserScript WSGICallableObject WSGICaseSensitivity \
    WSGIChunkedRequest WSGIDaemonProcess WSGIDestroyInterpreter WSGIDispatchScript \
    WSGIDontWriteBytecode WSGIEnableSendfile WSGIErrorOverride WSGIFreeThreading \
    WSGIGroupAuthoritative WSGIHandlerScript WSGIIgnoreActivity WSGIImportScript \
    <WSGIInterpreterOptions> WSGIMapHEADToGET WSGIPassApacheRequest WSGIPassAuthorization \
    WSGIPerInterpreterGIL WSGIProcessGroup WSGIPythonEggs WSGIPythonHashSeed WSGIPythonHome \
    WSGIPythonOptimize WSGIPythonPath WSGIPythonWarnings WSGIRestrictEmbedded \
    WSGIRestrictProcess WSGIRestrictSignal WSGIRestrictStdin WSGIRestrictStdout \
    WSGIScriptAlias WSGIScriptAliasMatch WSGIScriptReloading WSGIServerMetrics \
    WSGISlowRequests WSGISocketPrefix WSGISocketRotation WSGISwitchInterval \
    WSGITelemetryOptions WSGITelemetryService WSGITrustedProxies WSGITrustedProxyHeaders \
    WSGIVerboseDebugging";
const MOD_WSGI_DAEMON_OPTIONS: &str = "chroot connect-timeout cpu-priority cpu-time-limit \
    deadlock-timeout display-name eviction-timeout graceful-timeout group header-buffer-size \
    home inactivity-timeout interrupt-timeout lang listen-backlog locale maximum-requests \
    memory-limit processes python-eggs python-home python-path queue-timeout \
    receive-buffer-size request-timeout response-buffer-size response-flush-delay \
    response-socket-timeout restart-interval script-group script-user send-buffer-size \
    server-metrics shutdown-timeout socket-timeout socket-user stack-size startup-timeout \
    supplementary-groups switch-interval threads umask user virtual-memory-limit";

fn assert_lists_every(table: &[(&str, Status)], names: &str) {
    for name in names.split_whitespace() {
        assert!(
            table.iter().any(|(n, _)| *n == name),
            "{name} (mod_wsgi 6.0.5) has no line in the coverage table"
        );
    }
}

/// Every `file::function` named must be a `#[test]` in tests/file.rs.
fn assert_tests_exist(table: &[(&str, Status)]) {
    for (name, status) in table {
        let Implemented(tests) = status else { continue };
        assert!(!tests.is_empty(), "{name}: implemented, but no test named");
        for test in *tests {
            let (file, function) = test.split_once("::").unwrap();
            let path = repo_dir().join("tests").join(format!("{file}.rs"));
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{name}: {}: {e}", path.display()));
            let at = source
                .find(&format!("fn {function}()"))
                .unwrap_or_else(|| panic!("{name}: no fn {function} in {}", path.display()));
            let before = source[..at].trim_end();
            assert!(
                before.ends_with("#[test]"),
                "{name}: {test} is not a #[test]"
            );
        }
    }
}

#[test]
fn every_mod_wsgi_directive_is_implemented_with_a_test_or_refused() {
    assert_lists_every(DIRECTIVES, MOD_WSGI_DIRECTIVES);
    assert_tests_exist(DIRECTIVES);
    for (name, status) in DIRECTIVES {
        let NotYet(conf) = status else { continue };
        let (ok, out) = ApacheConfig::new("coverage").conf(conf).configtest();
        assert!(
            !ok && out.contains("is not supported by mod_rwsgi yet"),
            "{name} is neither implemented nor refused by configtest:\n{out}"
        );
    }
}

#[test]
fn every_daemon_option_is_implemented_with_a_test_or_refused() {
    assert_lists_every(DAEMON_OPTIONS, MOD_WSGI_DAEMON_OPTIONS);
    assert_tests_exist(DAEMON_OPTIONS);
    for (name, status) in DAEMON_OPTIONS {
        let NotYet(conf) = status else { continue };
        let (ok, out) = ApacheConfig::new("coverage").conf(conf).configtest();
        assert!(
            !ok && out.contains(&format!("{name}= is not supported by mod_rwsgi yet")),
            "{name}= is neither implemented nor refused by configtest:\n{out}"
        );
    }
}

/// README's compatibility table may not call anything "parsed" or "no effect": each row is
/// implemented or "not yet" (WSGIVerboseDebugging, a no-op in mod_wsgi 6 too, excepted).
#[test]
fn readme_compatibility_table_has_no_silently_ignored_rows() {
    let readme = std::fs::read_to_string(repo_dir().join("README.md")).unwrap();
    let table = readme
        .split("## Compatibility with mod_wsgi's directives")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has the compatibility section");
    for row in table.lines().filter(|l| l.starts_with("| WSGI")) {
        if row.starts_with("| WSGIVerboseDebugging") {
            continue;
        }
        let status = row.rsplit('|').nth(1).unwrap_or("").to_ascii_lowercase();
        assert!(
            !status.contains("no effect") && !status.trim_start().starts_with("parsed"),
            "README row says an option is accepted without effect: {row}"
        );
    }
}
