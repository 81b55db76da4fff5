/* The only header list bindgen sees (build.rs). Keep it to what mod_rwsgi uses. */
#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_log.h>
#include <http_main.h>
#include <http_protocol.h>
#include <http_request.h>
#include <ap_mpm.h>
#include <ap_mmn.h>
#include <ap_regex.h>
#include <mpm_common.h>
#include <util_filter.h>
#include <util_script.h>
#include <unixd.h>
#include <mod_unixd.h>
#include <mod_auth.h>
#include <ap_listen.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <apr_buckets.h>
#include <apr_thread_proc.h>
#include <apr_file_io.h>

/* Macro expressions bindgen cannot evaluate, as constants. */
const unsigned long RWSGI_MODULE_MAGIC_COOKIE = MODULE_MAGIC_COOKIE;
const int RWSGI_MMN_MAJOR = MODULE_MAGIC_NUMBER_MAJOR;
const int RWSGI_MMN_MINOR = MODULE_MAGIC_NUMBER_MINOR;
