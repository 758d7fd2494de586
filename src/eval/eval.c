/* eval.c — see eval.h. Owns the command line and the order of a run:
 *
 *   start the server (child.h) -> subscribe to alerts and stats (sub.h) ->
 *   connect one MQTT client per device (pub.h) -> publish every sample in
 *   arrival order, computing the naive rule on the way -> wait for every
 *   PUBACK -> wait until the server reports that it processed everything
 *   (accepted + dead letters = published, processed = accepted, lag 0) and
 *   no alert arrived for the quiet period -> close the devices, SIGTERM the
 *   server, stop the subscriber -> judge the OPEN events (match.h) -> print
 *   (report.h) -> remove the temporary directory.
 *
 * The signal flag is the one piece of static mutable state: a handler can
 * reach nothing else. */
#include "eval/eval.h"

#include "alert/alert.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/event.h"
#include "core/json.h"
#include "core/num.h"
#include "core/strmap.h"
#include "eval/child.h"
#include "eval/csv.h"
#include "eval/match.h"
#include "eval/pub.h"
#include "eval/report.h"
#include "eval/scenario.h"
#include "eval/sub.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NS 1000000000ull
#define MAX_SERVER_ARGS 32
#define RULE_BPM 140.0
#define DEV_MAX (VG_EVENT_MAX_DEVICE_ID + 1)

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

typedef struct {
    vg_scen_cfg_t scfg;
    const char *detect_config, *csv_path, *json_path, *fsync;
    bool keep, dry_run;
    uint32_t window, global_window;
    uint32_t connections; /* 0: one per device */
    double lead_s;        /* 0: 0.4 x the sampling interval (2 s for --csv) */
    double quiet_s, timeout_s;
    const char *server_args[MAX_SERVER_ARGS];
    size_t n_server_args;
} opts_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vigil eval [options]            synthetic labelled fleet through the real pipeline\n"
            "       vigil eval --csv FILE [options] replay a recording through the real pipeline\n\n"
            "Starts `vigil serve` on a free loopback port with a fresh data directory, publishes every\n"
            "sample over MQTT (QoS 1, each device always on the same connection) in arrival order, collects\n"
            "the alerts on alerts/#, and reports per alert type recall, precision, false alerts per device-day\n"
            "and detection delay against the labels, next to the naive rule \"heart rate > 140\".\n"
            "The scenario model and the matching rules: docs/detection.md.\n\n"
            "scenario:\n"
            "  --seed N               random seed (1); the same seed gives the same samples and labels\n"
            "  --devices N            ordinary devices (200)\n"
            "  --days D               their span in days from 2026-01-05T00:00Z (3)\n"
            "  --drift-devices N      devices with a baseline drift episode (10), each over --drift-days\n"
            "  --drift-days D         span of the drift devices (14, at least 12)\n"
            "  --interval S           seconds between samples (5; jitter +-0.3 s)\n"
            "  --normal-share F       share of device-days kept free of episodes (0.5)\n"
            "  --rate R               episodes per kind per episode day, every kind (0.4)\n"
            "  --rate KIND=R          one kind: rest_high rest_low extreme_high extreme_low sudden gap\n"
            "                         offline flatline skew impossible out_of_order stale\n"
            "  --dry-run              generate only: labels, sample count and the naive rule, no server\n"
            "recording:\n"
            "  --csv FILE             deviceId,timestamp,heartRate[,steps] lines (docs/detection.md)\n"
            "pipeline:\n"
            "  --detect-config FILE   detector thresholds: passed to the server, and used for the targets\n"
            "  --fsync POLICY         the server's --fsync (default none: detection does not depend on it)\n"
            "  --server-arg ARG       one more argument for `vigil serve` (repeatable)\n"
            "  --connections N        MQTT connections the devices share, each device always on the same one\n"
            "                         (16; 0 = one connection per device, as real devices)\n"
            "  --window N             unacknowledged publishes per connection (256)\n"
            "  --global-window N      unacknowledged publishes in all (8192)\n"
            "  --lead S               unacknowledged publishes span at most S seconds of arrival time, so the\n"
            "                         server sees the fleet in arrival order (default 0.4 x --interval; 2 for --csv)\n"
            "  --quiet S              seconds without a new alert before the run ends (2)\n"
            "  --timeout S            give up waiting for the pipeline to catch up after S seconds (600)\n"
            "  --keep-data            keep the server's data directory and log\n"
            "output:\n"
            "  --json FILE            every number as JSON ('-' = stdout after the table)\n"
            "  --help                 this text\n\n"
            "Exit status: 0 when the run completed (PASS or FAIL is in the report), 1 when the pipeline\n"
            "could not be run to the end, 2 for usage errors and malformed --csv input.\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno)
        return false;
    *out = v;
    return true;
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
    memset(o, 0, sizeof *o);
    vg_scen_cfg_default(&o->scfg);
    o->window = 256;
    o->connections = 16;
    o->global_window = 8192;
    o->quiet_s = 2;
    o->timeout_s = 600;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t u;
        double d;
#define NEEDV()                                                                                                        \
    do {                                                                                                               \
        if (!v) {                                                                                                      \
            fprintf(stderr, "vigil eval: %s needs a value\n", a);                                                      \
            return 2;                                                                                                  \
        }                                                                                                              \
        i++;                                                                                                           \
    } while (0)
#define BAD()                                                                                                          \
    do {                                                                                                               \
        fprintf(stderr, "vigil eval: bad value for %s: '%s'\n", a, v);                                                 \
        return 2;                                                                                                      \
    } while (0)
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "--seed") == 0) {
            NEEDV();
            if (!parse_u64(v, &u))
                BAD();
            o->scfg.seed = u;
        } else if (strcmp(a, "--devices") == 0) {
            NEEDV();
            if (!parse_u64(v, &u) || u > 1000000)
                BAD();
            o->scfg.devices = (uint32_t)u;
        } else if (strcmp(a, "--drift-devices") == 0) {
            NEEDV();
            if (!parse_u64(v, &u) || u > 1000000)
                BAD();
            o->scfg.drift_devices = (uint32_t)u;
        } else if (strcmp(a, "--days") == 0) {
            NEEDV();
            if (vg_num_parse_double(v, &o->scfg.days) != VG_OK)
                BAD();
        } else if (strcmp(a, "--drift-days") == 0) {
            NEEDV();
            if (vg_num_parse_double(v, &o->scfg.drift_days) != VG_OK)
                BAD();
        } else if (strcmp(a, "--interval") == 0) {
            NEEDV();
            if (vg_num_parse_double(v, &o->scfg.interval_s) != VG_OK)
                BAD();
        } else if (strcmp(a, "--normal-share") == 0) {
            NEEDV();
            if (vg_num_parse_double(v, &o->scfg.normal_share) != VG_OK)
                BAD();
        } else if (strcmp(a, "--rate") == 0) {
            NEEDV();
            const char *eq = strchr(v, '=');
            if (!eq) {
                if (vg_num_parse_double(v, &d) != VG_OK)
                    BAD();
                for (int k = 0; k < VG_SCEN__KINDS; k++)
                    if (k != VG_SCEN_DRIFT)
                        o->scfg.rate[k] = d;
            } else {
                char name[32];
                size_t n = (size_t)(eq - v);
                if (n >= sizeof name)
                    BAD();
                memcpy(name, v, n);
                name[n] = '\0';
                int k = vg_scen_kind_parse(name);
                if (k < 0 || k == VG_SCEN_DRIFT) {
                    fprintf(stderr, "vigil eval: unknown episode kind '%s' in --rate (see --help)\n", name);
                    return 2;
                }
                if (vg_num_parse_double(eq + 1, &d) != VG_OK)
                    BAD();
                o->scfg.rate[k] = d;
            }
        } else if (strcmp(a, "--dry-run") == 0 || strcmp(a, "--labels-only") == 0) {
            o->dry_run = true;
        } else if (strcmp(a, "--csv") == 0) {
            NEEDV();
            o->csv_path = v;
        } else if (strcmp(a, "--detect-config") == 0) {
            NEEDV();
            o->detect_config = v;
        } else if (strcmp(a, "--fsync") == 0) {
            NEEDV();
            o->fsync = v;
        } else if (strcmp(a, "--server-arg") == 0) {
            NEEDV();
            if (o->n_server_args == MAX_SERVER_ARGS) {
                fprintf(stderr, "vigil eval: too many --server-arg\n");
                return 2;
            }
            o->server_args[o->n_server_args++] = v;
        } else if (strcmp(a, "--window") == 0) {
            NEEDV();
            if (!parse_u64(v, &u) || u < 1 || u > 60000)
                BAD();
            o->window = (uint32_t)u;
        } else if (strcmp(a, "--global-window") == 0) {
            NEEDV();
            if (!parse_u64(v, &u) || u < 1 || u > 10000000)
                BAD();
            o->global_window = (uint32_t)u;
        } else if (strcmp(a, "--connections") == 0) {
            NEEDV();
            if (!parse_u64(v, &u) || u > 1000000)
                BAD();
            o->connections = (uint32_t)u;
        } else if (strcmp(a, "--lead") == 0) {
            NEEDV();
            if (vg_num_parse_double(v, &o->lead_s) != VG_OK || o->lead_s <= 0 || o->lead_s > 86400)
                BAD();
        } else if (strcmp(a, "--quiet") == 0) {
            NEEDV();
            if (vg_num_parse_double(v, &o->quiet_s) != VG_OK || o->quiet_s < 0 || o->quiet_s > 3600)
                BAD();
        } else if (strcmp(a, "--timeout") == 0) {
            NEEDV();
            if (vg_num_parse_double(v, &o->timeout_s) != VG_OK || o->timeout_s <= 0)
                BAD();
        } else if (strcmp(a, "--keep-data") == 0) {
            o->keep = true;
        } else if (strcmp(a, "--json") == 0) {
            NEEDV();
            o->json_path = v;
        } else {
            fprintf(stderr, "vigil eval: unknown option '%s' (see vigil eval --help)\n", a);
            return 2;
        }
#undef NEEDV
#undef BAD
    }
    const char *why = NULL;
    if (!o->csv_path && vg_scen_cfg_check(&o->scfg, &why) != VG_OK) {
        fprintf(stderr, "vigil eval: %s\n", why);
        return 2;
    }
    if (o->csv_path && o->dry_run) {
        fprintf(stderr, "vigil eval: --dry-run generates the synthetic fleet; it does not apply to --csv\n");
        return 2;
    }
    return 0;
}

/* ---- one run of the pipeline ---- */

typedef struct {
    const opts_t *o;
    uint32_t ndev;
    const char *const *ids;
    uint32_t nconn;      /* device d publishes on connection d % nconn */
    char (*conn_id)[64]; /* client ids when connections are shared */
    const char **conn_idp;
    vg_strmap_t idmap;
    vg_evalchild_t child;
    bool child_up;
    vg_evalsub_t *sub;
    vg_evalpub_t *pub;
    /* the naive rule */
    uint8_t *rule_in;
    vg_evalrule_t *rule;
    size_t n_rule, cap_rule;
    /* timings */
    uint64_t t_start, t_pub_end, t_wait_end;
    bool incomplete;
    int server_exit;
    vg_evalsub_stats_t stats;
    char **payloads;
    size_t n_payloads;
} run_t;

/* The next sample to publish: device, payload, heart rate, timestamp and
 * arrival time (non-decreasing). Returns 1, or 0 at the end. */
typedef int (*next_fn)(void *ctx, uint32_t *dev, char *payload, size_t cap, size_t *len, double *hr, int64_t *ts,
                       int64_t *arrival);

static int rule_feed(run_t *R, uint32_t dev, double hr, int64_t ts)
{
    if (hr <= RULE_BPM) {
        R->rule_in[dev] = 0;
        return VG_OK;
    }
    if (R->rule_in[dev])
        return VG_OK;
    R->rule_in[dev] = 1;
    if (R->n_rule == R->cap_rule) {
        size_t cap = R->cap_rule ? 2 * R->cap_rule : 4096;
        vg_evalrule_t *nr = vg_realloc(VG_MEM_EVAL, R->rule, cap * sizeof *nr);
        if (!nr)
            return VG_ENOMEM;
        R->rule = nr;
        R->cap_rule = cap;
    }
    R->rule[R->n_rule++] = (vg_evalrule_t){dev, ts};
    return VG_OK;
}

static int run_init(run_t *R, const opts_t *o, uint32_t ndev, const char *const *ids)
{
    memset(R, 0, sizeof *R);
    R->o = o;
    R->ndev = ndev;
    R->ids = ids;
    R->server_exit = -1;
    vg_strmap_init(&R->idmap, VG_MEM_EVAL);
    R->rule_in = vg_calloc(VG_MEM_EVAL, ndev ? ndev : 1, 1);
    if (!R->rule_in)
        return VG_ENOMEM;
    R->nconn = o->connections == 0 || o->connections >= ndev ? ndev : o->connections;
    if (R->nconn < ndev) {
        R->conn_id = vg_calloc(VG_MEM_EVAL, R->nconn, sizeof *R->conn_id);
        R->conn_idp = vg_calloc(VG_MEM_EVAL, R->nconn, sizeof *R->conn_idp);
        if (!R->conn_id || !R->conn_idp)
            return VG_ENOMEM;
        for (uint32_t i = 0; i < R->nconn; i++) {
            snprintf(R->conn_id[i], sizeof R->conn_id[i], "vigil-eval-%d-c%u", (int)getpid(), i);
            R->conn_idp[i] = R->conn_id[i];
        }
    }
    for (uint32_t i = 0; i < ndev; i++)
        if (vg_strmap_put(&R->idmap, ids[i], strlen(ids[i]), i, NULL) != VG_OK)
            return VG_ENOMEM;
    return VG_OK;
}

static void run_free(run_t *R)
{
    vg_evalpub_close(R->pub);
    R->pub = NULL;
    if (R->child_up) {
        vg_evalchild_stop(&R->child, 30000);
        vg_evalchild_cleanup(&R->child, R->o->keep);
        R->child_up = false;
    }
    if (R->sub) {
        char **p;
        size_t n;
        vg_evalsub_finish(R->sub, &p, &n);
        for (size_t i = 0; i < n; i++)
            vg_free(p[i]);
        vg_free(p);
        R->sub = NULL;
    }
    for (size_t i = 0; i < R->n_payloads; i++)
        vg_free(R->payloads[i]);
    vg_free(R->payloads);
    vg_free(R->rule_in);
    vg_free(R->rule);
    vg_free(R->conn_id);
    vg_free(R->conn_idp);
    vg_strmap_deinit(&R->idmap);
}

static int start_pipeline(run_t *R)
{
    const opts_t *o = R->o;
    const char *extra[MAX_SERVER_ARGS + 8];
    size_t n = 0;
    extra[n++] = "--log-level";
    extra[n++] = "warn";
    /* Detection does not depend on durability, and with fsync every round
     * trip waits for a disk flush while the lead limit keeps only a few
     * hundred publishes in flight: a default run would take several times
     * longer. --fsync always measures the durable configuration. */
    extra[n++] = "--fsync";
    extra[n++] = o->fsync ? o->fsync : "none";
    if (o->detect_config) {
        extra[n++] = "--detect-config";
        extra[n++] = o->detect_config;
    }
    for (size_t i = 0; i < o->n_server_args; i++)
        extra[n++] = o->server_args[i];
    const char *why = NULL;
    fprintf(stderr, "eval: starting the server\n");
    if (vg_evalchild_start(&R->child, "/proc/self/exe", extra, n, 15000, o->keep, &why) != VG_OK) {
        fprintf(stderr, "vigil eval: %s\n", why);
        return VG_EIO;
    }
    R->child_up = true;
    fprintf(stderr, "eval: server pid %d on 127.0.0.1:%d, data in %s\n", (int)R->child.pid, R->child.port,
            R->child.data);
    char sid[64];
    snprintf(sid, sizeof sid, "vigil-eval-alerts-%d", (int)getpid());
    if (vg_evalsub_start((const struct sockaddr *)&R->child.addr, R->child.addr_len, sid, 10000, &R->sub, &why) !=
        VG_OK) {
        fprintf(stderr, "vigil eval: %s\n", why);
        return VG_EIO;
    }
    /* A device's sample can reach the processor up to `lead` after samples
     * of others that arrived later, and its previous one up to `lead`
     * before: it can look silent for interval + 2 x lead of stream time.
     * That must stay well below the gap detector's 3 intervals. */
    double lead = o->lead_s > 0 ? o->lead_s : 0.4 * (o->csv_path ? 5.0 : o->scfg.interval_s);
    vg_evalpub_opts_t po = {.window = o->window, .global_window = o->global_window, .lead_ms = (int64_t)(lead * 1000)};
    const char *const *cids = R->nconn < R->ndev ? R->conn_idp : R->ids;
    if (vg_evalpub_open((const struct sockaddr *)&R->child.addr, R->child.addr_len, R->nconn, cids, &po, 30000, &R->pub,
                        &why) != VG_OK) {
        fprintf(stderr, "vigil eval: %s\n", why);
        return VG_EIO;
    }
    if (R->nconn < R->ndev)
        fprintf(stderr, "eval: %u devices on %u connections\n", R->ndev, R->nconn);
    else
        fprintf(stderr, "eval: %u device connections up\n", R->ndev);
    return VG_OK;
}

static void progress_line(run_t *R, uint64_t total, int64_t ts)
{
    double el = (double)(vg_clock_mono_ns() - R->t_start) / 1e9;
    uint64_t sent = R->pub ? vg_evalpub_sent(R->pub) : 0;
    vg_evalsub_stats_t st = {0};
    if (R->sub)
        vg_evalsub_stats(R->sub, &st);
    char iso[32];
    vg_clock_format_iso(ts, iso, sizeof iso);
    fprintf(stderr,
            "eval: %5.1f%% published %llu (%.0f/s), acked %llu, processed %lld, event time %.16s, alerts %llu\n",
            total ? 100.0 * (double)sent / (double)total : 0.0, (unsigned long long)sent, el > 0 ? sent / el : 0.0,
            (unsigned long long)(R->pub ? vg_evalpub_acked(R->pub) : 0), (long long)st.processed, iso,
            (unsigned long long)st.alerts);
}

/* Publishes (or, without a pipeline, only walks) every sample. */
static int publish_all(run_t *R, next_fn next, void *ctx, uint64_t total)
{
    char payload[512];
    size_t len;
    uint32_t dev;
    double hr;
    int64_t ts = 0, arrival = 0;
    uint64_t count = 0, next_report = vg_clock_mono_ns() + 2 * NS;
    while (!stop_requested && next(ctx, &dev, payload, sizeof payload, &len, &hr, &ts, &arrival)) {
        if (rule_feed(R, dev, hr, ts) != VG_OK)
            return VG_ENOMEM;
        if (R->pub) {
            for (;;) {
                int rc = vg_evalpub_publish(R->pub, dev % R->nconn, arrival, payload, len);
                if (rc == VG_OK)
                    break;
                if (rc != VG_AGAIN || vg_evalpub_poll(R->pub, 100) != VG_OK || stop_requested) {
                    if (!stop_requested)
                        fprintf(stderr, "vigil eval: %s\n",
                                vg_evalpub_error(R->pub) ? vg_evalpub_error(R->pub) : "publishing failed");
                    return VG_EIO;
                }
            }
        }
        if ((++count & 4095) == 0) {
            uint64_t now = vg_clock_mono_ns();
            if (now >= next_report) {
                next_report = now + 2 * NS;
                if (R->pub) {
                    if (!vg_evalchild_alive(&R->child)) {
                        fprintf(stderr, "vigil eval: the server exited during the run\n");
                        vg_evalchild_tail_log(&R->child, 20);
                        R->child_up = false;
                        return VG_EIO;
                    }
                    progress_line(R, total, ts);
                }
            }
        }
    }
    return stop_requested ? VG_ECLOSED : VG_OK;
}

/* Waits for the PUBACKs, then for the processors, then for quiet. */
static int wait_pipeline(run_t *R)
{
    const opts_t *o = R->o;
    fprintf(stderr, "eval: published %llu; waiting for acknowledgements\n",
            (unsigned long long)vg_evalpub_sent(R->pub));
    if (vg_evalpub_drain(R->pub, 120000) != VG_OK) {
        fprintf(stderr, "vigil eval: %s\n", vg_evalpub_error(R->pub));
        return VG_EIO;
    }
    R->t_pub_end = vg_clock_mono_ns();
    uint64_t published = vg_evalpub_sent(R->pub);
    uint64_t t0 = R->t_pub_end, caught_at = 0, next_report = t0 + 2 * NS;
    fprintf(stderr, "eval: all %llu acknowledged after %.1f s; waiting for the processors\n",
            (unsigned long long)published, (double)(t0 - R->t_start) / 1e9);
    while (!stop_requested) {
        usleep(100000);
        uint64_t now = vg_clock_mono_ns();
        vg_evalsub_stats_t st;
        vg_evalsub_stats(R->sub, &st);
        R->stats = st;
        if (!vg_evalchild_alive(&R->child)) {
            fprintf(stderr, "vigil eval: the server exited while processing\n");
            vg_evalchild_tail_log(&R->child, 20);
            R->child_up = false;
            return VG_EIO;
        }
        if (st.failed) {
            fprintf(stderr, "vigil eval: the alert subscription broke\n");
            return VG_EIO;
        }
        int64_t dl = st.deadletter > 0 ? st.deadletter : 0;
        bool done =
            st.accepted >= 0 && (uint64_t)(st.accepted + dl) >= published && st.processed >= st.accepted && st.lag == 0;
        if (done && !caught_at)
            caught_at = now;
        if (caught_at) {
            uint64_t last = st.last_alert_ns > caught_at ? st.last_alert_ns : caught_at;
            if (now - last >= (uint64_t)(o->quiet_s * 1e9))
                break;
        }
        if (now - t0 > (uint64_t)(o->timeout_s * 1e9)) {
            fprintf(stderr, "vigil eval: the pipeline did not catch up within %.0f s; reporting what arrived\n",
                    o->timeout_s);
            R->incomplete = true;
            break;
        }
        if (now >= next_report) {
            next_report = now + 2 * NS;
            fprintf(stderr, "eval: waiting: accepted %lld, processed %lld, lag %lld, alerts %llu\n",
                    (long long)st.accepted, (long long)st.processed, (long long)st.lag, (unsigned long long)st.alerts);
        }
    }
    R->t_wait_end = vg_clock_mono_ns();
    return stop_requested ? VG_ECLOSED : VG_OK;
}

/* Closes the devices, stops the server, collects the alerts. */
static void finish_pipeline(run_t *R)
{
    vg_evalpub_close(R->pub);
    R->pub = NULL;
    if (R->child_up) {
        R->server_exit = vg_evalchild_stop(&R->child, 30000);
        if (R->server_exit != 0) {
            fprintf(stderr, "vigil eval: the server exited with status %d; its log:\n", R->server_exit);
            vg_evalchild_tail_log(&R->child, 20);
        }
        vg_evalchild_cleanup(&R->child, R->o->keep);
        R->child_up = false;
    }
    if (R->sub) {
        vg_evalsub_stats(R->sub, &R->stats);
        vg_evalsub_finish(R->sub, &R->payloads, &R->n_payloads);
        R->sub = NULL;
        /* The last stats are up to a second old, so they can only
         * undercount what the server emitted. */
        if (R->stats.emitted > 0 && (uint64_t)R->stats.emitted > R->n_payloads)
            fprintf(stderr,
                    "vigil eval: warning: the server emitted %lld alert events but only %zu arrived on alerts/#\n",
                    (long long)R->stats.emitted, R->n_payloads);
    }
}

/* ---- reading alerts ---- */

typedef struct {
    vg_evalalert_t *open;
    size_t n_open;
    char **open_payload; /* parallel to open (borrowed from the run) */
    uint64_t events[5], unparsed;
    char other_name[VG_EVALREPORT_MAX_OTHER][48];
    uint64_t other_count[VG_EVALREPORT_MAX_OTHER];
    size_t n_other;
} alerts_t;

static void note_other(alerts_t *A, const char *name, size_t len)
{
    for (size_t i = 0; i < A->n_other; i++)
        if (strlen(A->other_name[i]) == len && memcmp(A->other_name[i], name, len) == 0) {
            A->other_count[i]++;
            return;
        }
    if (A->n_other == VG_EVALREPORT_MAX_OTHER)
        return;
    size_t n = len < sizeof A->other_name[0] - 1 ? len : sizeof A->other_name[0] - 1;
    memcpy(A->other_name[A->n_other], name, n);
    A->other_name[A->n_other][n] = '\0';
    A->other_count[A->n_other++] = 1;
}

static int parse_alerts(run_t *R, alerts_t *A)
{
    memset(A, 0, sizeof *A);
    A->open = vg_calloc(VG_MEM_EVAL, R->n_payloads + 1, sizeof *A->open);
    A->open_payload = vg_calloc(VG_MEM_EVAL, R->n_payloads + 1, sizeof *A->open_payload);
    if (!A->open || !A->open_payload)
        return VG_ENOMEM;
    for (size_t i = 0; i < R->n_payloads; i++) {
        const char *p = R->payloads[i];
        vg_alert_seen_t m;
        if (vg_alert_json_read(p, strlen(p), &m) != VG_OK || !m.device_id.key || m.device_id.type != VG_JSON_STRING ||
            !m.type.key || m.type.type != VG_JSON_STRING || !m.has_event_time) {
            A->unparsed++;
            continue;
        }
        int64_t ev_ms = m.event_time_ms, op_ms = m.has_opened_at ? m.opened_at_ms : ev_ms;
        /* events[]: OPEN, UPDATE, RESOLVED, ACKNOWLEDGED, anything else. The
         * old detector's alerts have no "event": each one opened. */
        static const int slot[] = {[0] = 4, [VG_AEV_OPEN] = 0, [VG_AEV_UPDATE] = 1, [VG_AEV_RESOLVED] = 2,
                                   [VG_AEV_ACK] = 3};
        int kind = slot[m.kind];
        A->events[kind]++;
        if (kind != 0)
            continue;
        char dev[DEV_MAX];
        size_t dlen;
        if (vg_json_unescape(m.device_id.raw, m.device_id.raw_len, dev, sizeof dev, &dlen) != VG_OK) {
            A->unparsed++;
            continue;
        }
        uint64_t idx;
        vg_evalalert_t *a = &A->open[A->n_open];
        a->device = vg_strmap_get(&R->idmap, dev, dlen, &idx) == VG_OK ? (uint32_t)idx : UINT32_MAX;
        a->type = (uint8_t)vg_alert_type_parse(m.type.raw, m.type.raw_len);
        if (a->type == VG_ALERT_NONE)
            note_other(A, m.type.raw, m.type.raw_len);
        a->opened_ms = op_ms;
        a->event_ms = ev_ms;
        A->open_payload[A->n_open] = R->payloads[i];
        A->n_open++;
    }
    return VG_OK;
}

static void alerts_free(alerts_t *A)
{
    vg_free(A->open);
    vg_free(A->open_payload);
}

static void fill_run_report(vg_evalreport_t *rep, const run_t *R, const alerts_t *A, uint64_t published, uint64_t acked)
{
    rep->published = published;
    rep->acked = acked;
    rep->publish_s = (double)(R->t_pub_end - R->t_start) / 1e9;
    rep->wait_s = (double)(R->t_wait_end - R->t_pub_end) / 1e9;
    rep->total_s = (double)(vg_clock_mono_ns() - R->t_start) / 1e9;
    rep->incomplete = R->incomplete;
    rep->server_exit = R->server_exit;
    rep->stats = R->stats;
    memcpy(rep->events, A->events, sizeof rep->events);
    rep->unparsed = A->unparsed;
    rep->n_other = A->n_other;
    for (size_t i = 0; i < A->n_other; i++) {
        rep->other_name[i] = A->other_name[i];
        rep->other_count[i] = A->other_count[i];
    }
}

static int emit_report(const vg_evalreport_t *rep, const char *json_path)
{
    bool to_stdout = json_path && strcmp(json_path, "-") == 0;
    vg_evalreport_print(rep, stdout);
    fflush(stdout);
    if (json_path) {
        if (to_stdout)
            printf("\n");
        if (vg_evalreport_json(rep, json_path) != VG_OK) {
            fprintf(stderr, "vigil eval: cannot write %s: %s\n", json_path, strerror(errno));
            return 1;
        }
        if (!to_stdout)
            fprintf(stderr, "eval: JSON report written to %s\n", json_path);
    }
    return 0;
}

/* ---- the synthetic fleet ---- */

typedef struct {
    vg_scen_t *s;
    char (*id)[16];
} scen_src_t;

static int scen_next(void *ctx, uint32_t *dev, char *payload, size_t cap, size_t *len, double *hr, int64_t *ts,
                     int64_t *arrival)
{
    scen_src_t *src = ctx;
    vg_scen_sample_t x;
    if (vg_scen_next(src->s, &x) != VG_OK)
        return 0;
    int n = snprintf(payload, cap, "{\"deviceId\":\"%s\",\"heartRate\":%d,\"steps\":%d,\"timestamp\":%lld}",
                     src->id[x.device], x.hr, x.steps, (long long)x.ts_ms);
    *len = n > 0 && (size_t)n < cap ? (size_t)n : 0;
    *dev = x.device;
    *hr = x.hr;
    *ts = x.ts_ms;
    *arrival = x.arrival_ms;
    return 1;
}

static int run_synthetic(const opts_t *o, const vg_detect_cfg_t *dcfg)
{
    int exit_code = 1;
    vg_scen_t *s = NULL;
    char(*ids)[16] = NULL;
    const char **idp = NULL;
    int64_t *span_end = NULL;
    run_t R;
    alerts_t A = {0};
    vg_evalmatch_t M = {0};
    bool run_ready = false;
    int rc = vg_scen_new(&o->scfg, &s);
    if (rc != VG_OK) {
        fprintf(stderr, "vigil eval: cannot plan the scenario: %s\n", vg_strerror(rc));
        return 1;
    }
    uint32_t n = vg_scen_devices(s);
    ids = vg_calloc(VG_MEM_EVAL, n, sizeof *ids);
    idp = vg_calloc(VG_MEM_EVAL, n, sizeof *idp);
    span_end = vg_calloc(VG_MEM_EVAL, n, sizeof *span_end);
    if (!ids || !idp || !span_end)
        goto cleanup;
    for (uint32_t i = 0; i < n; i++) {
        vg_scen_device_id(s, i, ids[i], sizeof ids[i]);
        idp[i] = ids[i];
        span_end[i] = vg_scen_device_end(s, i);
    }
    /* Roughly how many samples there will be, for the progress line. */
    uint64_t total = (uint64_t)((o->scfg.devices * o->scfg.days + o->scfg.drift_devices * o->scfg.drift_days) *
                                86400.0 / o->scfg.interval_s);
    if (run_init(&R, o, n, idp) != VG_OK)
        goto cleanup;
    run_ready = true;
    fprintf(stderr, "eval: seed %llu: %u devices, about %llu samples, %zu labelled episodes\n",
            (unsigned long long)o->scfg.seed, n, (unsigned long long)total, vg_scen_label_count(s));
    R.t_start = vg_clock_mono_ns();
    if (!o->dry_run && start_pipeline(&R) != VG_OK)
        goto cleanup;
    R.t_start = vg_clock_mono_ns();
    scen_src_t src = {s, ids};
    rc = publish_all(&R, scen_next, &src, total);
    if (rc != VG_OK) {
        if (rc == VG_ECLOSED)
            fprintf(stderr, "vigil eval: interrupted\n");
        goto cleanup;
    }
    R.t_pub_end = R.t_wait_end = vg_clock_mono_ns();
    uint64_t published = 0, acked = 0;
    if (!o->dry_run) {
        if (wait_pipeline(&R) != VG_OK)
            goto cleanup;
        published = vg_evalpub_sent(R.pub);
        acked = vg_evalpub_acked(R.pub);
        finish_pipeline(&R);
        if (parse_alerts(&R, &A) != VG_OK)
            goto cleanup;
    }
    vg_evalmatch_in_t in = {
        .labels = vg_scen_labels(s),
        .n_labels = vg_scen_label_count(s),
        .devices = n,
        .span_end = span_end,
        .t0_ms = o->scfg.t0_ms,
        .offline_after_ms = (int64_t)(dcfg->offline_after_s * 1000.0),
    };
    if (vg_evalmatch_run(&in, A.open, A.n_open, R.rule, R.n_rule, &M) != VG_OK)
        goto cleanup;
    vg_evalreport_t rep = {
        .mode = o->dry_run ? VG_EVALREPORT_DRY_RUN : VG_EVALREPORT_SYNTHETIC,
        .dcfg = dcfg,
        .detect_config = o->detect_config,
        .interval_s = o->scfg.interval_s,
        .scfg = &o->scfg,
        .scen = s,
        .m = &M,
        .alerts = A.open,
        .n_alerts = A.n_open,
        .samples = vg_scen_yielded(s),
    };
    if (!o->dry_run)
        fill_run_report(&rep, &R, &A, published, acked);
    exit_code = emit_report(&rep, o->json_path);
    if (!o->dry_run && R.incomplete)
        exit_code = 1;

cleanup:
    vg_evalmatch_free(&M);
    alerts_free(&A);
    if (run_ready)
        run_free(&R);
    vg_free(ids);
    vg_free(idp);
    vg_free(span_end);
    vg_scen_free(s);
    return exit_code;
}

/* ---- a recording ---- */

typedef struct {
    const vg_evalcsv_t *c;
    char **esc; /* JSON-escaped device ids */
    size_t i;
} csv_src_t;

static int csv_next(void *ctx, uint32_t *dev, char *payload, size_t cap, size_t *len, double *hr, int64_t *ts,
                    int64_t *arrival)
{
    csv_src_t *src = ctx;
    if (src->i >= src->c->n)
        return 0;
    const vg_evalcsv_row_t *r = &src->c->rows[src->i++];
    int n = snprintf(payload, cap, "{\"deviceId\":\"%s\",\"heartRate\":%.10g,\"steps\":%lld,\"timestamp\":%lld}",
                     src->esc[r->device], r->hr, (long long)r->steps, (long long)r->ts_ms);
    *len = n > 0 && (size_t)n < cap ? (size_t)n : 0;
    *dev = r->device;
    *hr = r->hr;
    *ts = r->ts_ms;
    *arrival = r->ts_ms;
    return 1;
}

static int run_csv(const opts_t *o, const vg_detect_cfg_t *dcfg)
{
    vg_evalcsv_t c;
    char err[512];
    int rc = vg_evalcsv_read(o->csv_path, &c, err, sizeof err);
    if (rc != VG_OK) {
        fprintf(stderr, "vigil eval: %s\n", err);
        return rc == VG_ENOMEM ? 1 : 2;
    }
    int exit_code = 1;
    run_t R;
    alerts_t A = {0};
    bool run_ready = false;
    char **esc = vg_calloc(VG_MEM_EVAL, c.n_ids, sizeof *esc);
    int64_t *first = vg_calloc(VG_MEM_EVAL, c.n_ids, sizeof *first);
    int64_t *last = vg_calloc(VG_MEM_EVAL, c.n_ids, sizeof *last);
    uint8_t *seen = vg_calloc(VG_MEM_EVAL, (size_t)c.n_ids * VG_ALERT__COUNT + 1, 1);
    if (!esc || !first || !last || !seen)
        goto cleanup;
    for (uint32_t i = 0; i < c.n_ids; i++) {
        char buf[DEV_MAX * 6 + 1];
        int n = vg_json_escape(c.ids[i], strlen(c.ids[i]), buf, sizeof buf);
        esc[i] = n >= 0 ? vg_strndup(VG_MEM_EVAL, buf, (size_t)n) : NULL;
        if (!esc[i])
            goto cleanup;
        first[i] = INT64_MAX;
        last[i] = INT64_MIN;
    }
    for (size_t i = 0; i < c.n; i++) {
        const vg_evalcsv_row_t *r = &c.rows[i];
        if (r->ts_ms < first[r->device])
            first[r->device] = r->ts_ms;
        if (r->ts_ms > last[r->device])
            last[r->device] = r->ts_ms;
    }
    if (run_init(&R, o, c.n_ids, (const char *const *)c.ids) != VG_OK)
        goto cleanup;
    run_ready = true;
    fprintf(stderr, "eval: %s: %zu samples from %u devices\n", o->csv_path, c.n, c.n_ids);
    if (start_pipeline(&R) != VG_OK)
        goto cleanup;
    R.t_start = vg_clock_mono_ns();
    csv_src_t src = {&c, esc, 0};
    rc = publish_all(&R, csv_next, &src, c.n);
    if (rc != VG_OK) {
        if (rc == VG_ECLOSED)
            fprintf(stderr, "vigil eval: interrupted\n");
        goto cleanup;
    }
    if (wait_pipeline(&R) != VG_OK)
        goto cleanup;
    uint64_t published = vg_evalpub_sent(R.pub), acked = vg_evalpub_acked(R.pub);
    finish_pipeline(&R);
    if (parse_alerts(&R, &A) != VG_OK)
        goto cleanup;

    vg_evalreport_t rep = {
        .mode = VG_EVALREPORT_CSV,
        .dcfg = dcfg,
        .detect_config = o->detect_config,
        .interval_s = 0,
        .csv_path = o->csv_path,
        .csv = &c,
        .csv_rule_alerts = R.n_rule,
    };
    fill_run_report(&rep, &R, &A, published, acked);
    for (uint32_t i = 0; i < c.n_ids; i++) {
        double d = (double)(last[i] - first[i]) / (double)VG_SCEN_DAY_MS;
        rep.csv_device_days += d > 1 ? d : 1;
    }
    /* Keep the OPENs up to each device's last sample; later ones come from
     * the end of the recording (the devices fall silent). */
    size_t kept = 0;
    for (size_t i = 0; i < A.n_open; i++) {
        const vg_evalalert_t *a = &A.open[i];
        if (a->device < c.n_ids && a->event_ms > last[a->device]) {
            rep.csv_ignored++;
            continue;
        }
        int t = a->type < VG_ALERT__COUNT ? a->type : 0;
        rep.csv_opens[t]++;
        if (a->device < c.n_ids && !seen[(size_t)a->device * VG_ALERT__COUNT + (size_t)t]) {
            seen[(size_t)a->device * VG_ALERT__COUNT + (size_t)t] = 1;
            rep.csv_devices[t]++;
        }
        A.open_payload[kept++] = A.open_payload[i];
    }
    rep.open_payloads = A.open_payload;
    rep.n_open = kept;
    exit_code = emit_report(&rep, o->json_path);
    if (R.incomplete)
        exit_code = 1;

cleanup:
    alerts_free(&A);
    if (run_ready)
        run_free(&R);
    for (uint32_t i = 0; esc && i < c.n_ids; i++)
        vg_free(esc[i]);
    vg_free(esc);
    vg_free(first);
    vg_free(last);
    vg_free(seen);
    vg_evalcsv_free(&c);
    return exit_code;
}

int vg_eval_main(int argc, char **argv, vg_eval_detect_loader_fn load)
{
    opts_t o;
    int rc = parse_opts(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    vg_detect_cfg_t dcfg;
    vg_detect_cfg_default(&dcfg);
    if (o.detect_config) {
        if (!load) {
            fprintf(stderr, "vigil eval: --detect-config is not supported by this build\n");
            return 2;
        }
        if (load(o.detect_config, &dcfg, stderr) != 0)
            return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    struct sigaction old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    signal(SIGPIPE, SIG_IGN);
    rc = o.csv_path ? run_csv(&o, &dcfg) : run_synthetic(&o, &dcfg);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (stop_requested)
        return 130;
    return rc;
}
