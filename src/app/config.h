/* config.h — `vigil serve` settings: defaults, the config file, flags.
 *
 * One table lists every setting once; it drives flag parsing, config-file
 * parsing (`key = value`, '#' comments, key = flag name with '-' or '_') and
 * --help, so the three can never disagree. Precedence: defaults < file <
 * flags. A repeatable setting (--webhook) adds one entry per occurrence; an
 * entry with the name of an earlier one replaces it, so a flag overrides the
 * file's endpoint of the same name. */
#ifndef VG_APP_CONFIG_H
#define VG_APP_CONFIG_H

#include "alert/webhook.h"
#include "stream/log.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>

/* A listener address; off = disabled ("off" on the command line). */
typedef struct {
    char host[256];
    uint16_t port;
    bool off;
} vg_listen_addr_t;

typedef struct {
    char listen_host[256];
    uint16_t listen_port;
    vg_listen_addr_t ws_listen;   /* MQTT over WebSocket */
    vg_listen_addr_t http_listen; /* HTTP publish */
    vg_listen_addr_t tls_listen;  /* MQTT over TLS */
    vg_listen_addr_t wss_listen;  /* MQTT over secure WebSocket */
    vg_listen_addr_t https_listen;/* HTTPS publish */
    char tls_cert[PATH_MAX];      /* "" = <data-dir>/pki/server.crt if it exists */
    char tls_key[PATH_MAX];       /* "" = <data-dir>/pki/server.key */
    char tls_client_ca[PATH_MAX]; /* "" = <data-dir>/pki/ca.crt if it exists */
    char tls_client_auth[16];     /* none | optional | required; "" = required when there is a client CA */
    uint32_t tls_handshake_timeout_ms;
    bool allow_anonymous;         /* anonymous access on non-loopback listeners too */
    double conn_rate_per_source;  /* new connections per second per source address, 0 = no limit */
    uint32_t max_connections_per_source; /* 0 = no limit */
    uint32_t auth_fail_delay_ms;  /* first delay of a refusal after repeated failures */
    double publish_rate;          /* PUBLISHes per second per connection, 0 = no limit */
    char data_dir[PATH_MAX];
    char config_file[PATH_MAX];
    uint32_t workers;
    uint32_t shards;
    vg_fsync_policy_t fsync;
    uint32_t fsync_interval_ms;
    uint64_t segment_bytes;
    uint64_t segment_prealloc_bytes; /* 0: off */
    uint64_t max_pending_bytes;
    uint64_t store_max_pending_bytes;
    uint64_t retention_telemetry_ms; /* per stream, see log.h; 0 never happens (minimum 1 s) */
    uint64_t retention_alerts_ms;
    uint64_t retention_deadletter_ms;
    uint64_t retention_bytes_telemetry; /* 0 = no cap */
    uint64_t retention_bytes_alerts;
    uint64_t retention_bytes_deadletter;
    uint64_t max_packet_size;
    uint32_t max_connections;
    uint32_t max_inflight;
    uint32_t max_subs_per_packet;
    uint64_t max_outbuf;
    uint32_t slow_consumer_ms;
    uint32_t max_keepalive;
    uint32_t max_inflight_out;
    uint32_t max_ws_connections;
    uint32_t max_http_connections;
    uint32_t max_queued_per_client;
    uint64_t max_queued_bytes;
    uint32_t topic_alias_max;
    uint32_t max_session_expiry;
    uint64_t max_retained;
    uint64_t max_retained_bytes;
    char telemetry_topic[256];
    double rest_high_bpm; /* 0 = not set */
    double rest_low_bpm;  /* 0 = not set */
    char detect_config[PATH_MAX];
    char control_topic[256];
    uint32_t connect_timeout_ms;
    uint32_t linger_ms;
    uint64_t linger_bytes;
    uint32_t stats_interval_ms;
    uint32_t checkpoint_interval_ms;
    int log_level;
    vg_webhook_endpoint_t webhooks[VG_WEBHOOK_MAX_ENDPOINTS]; /* --webhook, repeatable */
    uint32_t nwebhooks;
    uint32_t webhook_timeout_ms;
    uint32_t webhook_retry_base_ms;
    uint32_t webhook_retry_max_ms;
} vg_config_t;

void vg_config_default(vg_config_t *c);

/* Parses argv[first..argc) (flags of `vigil serve`), reading --config FILE
 * first if present. On error writes a one-line reason to err and returns
 * VG_EINVAL. Returns VG_AGAIN if --help was given (help already printed). */
int vg_config_parse_args(vg_config_t *c, int argc, char **argv, int first, FILE *err);

/* Applies a config file. VG_EINVAL (with a line-numbered reason) on error. */
int vg_config_load_file(vg_config_t *c, const char *path, FILE *err);

void vg_config_help(FILE *out);

#endif
