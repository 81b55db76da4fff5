/*
 * The few APR bucket-brigade operations that exist only as C macros.
 * No logic here: each function is one macro, so Rust can call it.
 */
#include <apr_buckets.h>
#include <util_filter.h>

void rwsgi_brigade_insert_tail(apr_bucket_brigade *bb, apr_bucket *b)
{
    APR_BRIGADE_INSERT_TAIL(bb, b);
}

int rwsgi_brigade_empty(apr_bucket_brigade *bb)
{
    return APR_BRIGADE_EMPTY(bb);
}

apr_bucket *rwsgi_brigade_first(apr_bucket_brigade *bb)
{
    return APR_BRIGADE_FIRST(bb);
}

apr_bucket *rwsgi_brigade_sentinel(apr_bucket_brigade *bb)
{
    return APR_BRIGADE_SENTINEL(bb);
}

apr_bucket *rwsgi_bucket_next(apr_bucket *b)
{
    return APR_BUCKET_NEXT(b);
}

int rwsgi_bucket_is_eos(apr_bucket *b)
{
    return APR_BUCKET_IS_EOS(b);
}

int rwsgi_bucket_is_metadata(apr_bucket *b)
{
    return APR_BUCKET_IS_METADATA(b);
}

apr_status_t rwsgi_bucket_read(apr_bucket *b, const char **str, apr_size_t *len,
                               apr_read_type_e block)
{
    return apr_bucket_read(b, str, len, block);
}

void rwsgi_bucket_delete(apr_bucket *b)
{
    apr_bucket_delete(b);
}
