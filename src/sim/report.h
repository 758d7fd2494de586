/* report.h — what a simulator worker measured, how it travels to the parent
 * and how the parent prints it.
 *
 * Owns: the counters, the labelled-episode record, the worker→parent pipe
 * message (one format for the per-second progress snapshot and the final
 * result), merging across workers, and the final text table / JSON object.
 * Does not own: measuring (worker.h) or the progress line (sim.c).
 *
 * Pipe message, host byte order (both ends are forks of one binary):
 *   u32 kind (VG_SIMREPORT_PROGRESS | VG_SIMREPORT_FINAL), u32 body length,
 *   body: vg_simcounters_t as is, the PUBACK histogram, the PUBACK
 *   histogram of the connected fleet and the alert histogram (each
 *   vg_simhist_encode), u64 episode count, the episodes as is.
 * Snapshots are cumulative, so the parent simply keeps the latest one per
 * worker; a lost or late snapshot costs nothing but a stale progress line. */
#ifndef VG_SIM_REPORT_H
#define VG_SIM_REPORT_H

#include "sim/hist.h"

#include <stdint.h>
#include <stdio.h>

enum { VG_SIMREPORT_PROGRESS = 1, VG_SIMREPORT_FINAL = 2 };

typedef struct {
    uint64_t devices;          /* devices this report covers */
    uint64_t connected;        /* devices whose CONNACK accepted them */
    uint64_t connect_failures; /* refused, timed out, or never attempted before the run ended */
    uint64_t sent;             /* PUBLISH packets queued */
    uint64_t acked;            /* PUBACKs matched to an in-flight publish */
    uint64_t failed;           /* QoS 1: not acked by the end of drain; QoS 0: lost in a closed socket's buffer */
    uint64_t disconnects;      /* established connections that closed under us */
    uint64_t deferred;         /* sends postponed because the in-flight window or buffer was full */
    uint64_t alerts_received;  /* alert messages (every event of every alert) for this report's devices */
    uint64_t false_alerts;     /* cardiac alerts (OPEN) explained by no injected episode */
    uint64_t injected;         /* anomaly episodes started */
    uint64_t detected;         /* episodes matched by at least one alert */
    uint64_t alert_sub_ok;     /* workers whose alerts/# subscription was granted */
    uint64_t send_us;          /* length of the send phase, microseconds (max over workers) */
    /* Appended for the alert lifecycle (OPEN / UPDATE / ACKNOWLEDGED /
     * RESOLVED events per alert; ledger.h has the rules). Keep new fields
     * at the end and all u64: vg_simreport_merge sums the struct as an
     * array. */
    uint64_t alerts_opened;    /* new alerts: OPEN events, or old-format alerts */
    uint64_t alert_followups;  /* later events of an alert (UPDATE, ACKNOWLEDGED, RESOLVED, redeliveries) */
    uint64_t duplicate_alerts; /* extreme alerts (OPEN) for an episode some other alert already detected */
    uint64_t secondary_alerts; /* other cardiac alerts (OPEN) during or near an injected episode */
    uint64_t quality_alerts;   /* data-quality alerts (OPEN): gaps, offline, skew...; never false */
    uint64_t resolved;         /* detected episodes whose detecting alert was RESOLVED */
    uint64_t episodes_cut;     /* episodes whose last sample was never sent (the run ended first) */
    /* Appended for TLS and reconnects. */
    uint64_t reconnects;     /* connects of devices that had closed before (--reconnect) */
    uint64_t tls_handshakes; /* TLS handshakes our side finished */
    uint64_t tls_resumed;    /* ... of them on a resumed session */
    /* connect_failures by reason (they add up to it; VG_SIMREPORT_CF_*) */
    uint64_t cf[11];
} vg_simcounters_t;

/* Why a connect failed: the index into vg_simcounters_t.cf and its name in
 * the report (vg_simreport_cf_name). */
enum {
    VG_SIMREPORT_CF_TCP = 0,          /* socket() or the TCP connect failed */
    VG_SIMREPORT_CF_TIMEOUT,          /* no CONNACK (or TLS handshake) within the connect timeout */
    VG_SIMREPORT_CF_CONNACK,          /* CONNACK with a refusal code */
    VG_SIMREPORT_CF_CLOSED,           /* the server closed (or reset) before CONNACK, without a TLS alert */
    VG_SIMREPORT_CF_TLS_UNTRUSTED,    /* we could not verify the server's certificate (--ca, host) */
    VG_SIMREPORT_CF_TLS_REVOKED,      /* the server answered our certificate with certificate_revoked */
    VG_SIMREPORT_CF_TLS_CERT_REFUSED, /* another alert about our certificate (unknown, bad, expired, required, denied)
                                       */
    VG_SIMREPORT_CF_TLS_OTHER,        /* any other TLS failure (protocol version, ciphers, ...) */
    VG_SIMREPORT_CF_CREDENTIALS,      /* the device's certificate or key file could not be loaded */
    VG_SIMREPORT_CF_UNFINISHED,       /* still connecting, or never started, when the send phase ended */
    VG_SIMREPORT_CF_OTHER,            /* malformed or unexpected packets, out of memory */
    VG_SIMREPORT_CF__COUNT
};

/* "tcp", "timeout", "connack_refused", ... */
const char *vg_simreport_cf_name(int reason);

typedef struct {
    uint32_t device; /* fleet-wide device index */
    uint8_t type;    /* vg_simdev_anomaly_t: HIGH or LOW */
    uint8_t detected;
    uint8_t resolved;    /* the detecting alert's RESOLVED arrived */
    uint8_t complete;    /* the episode's last sample was sent */
    int64_t first_ts_ms; /* timestamp of the episode's first event */
    int64_t last_ts_ms;  /* ... and of its last event sent */
} vg_simepisode_t;

typedef struct {
    vg_simcounters_t c;
    vg_simhist_t ack; /* publish → PUBACK, µs */
    /* The same for publishes sent once all of a worker's devices were
     * connected: the steady state, without the connect ramp, where the
     * server and the load generator also spend CPU on new connections. */
    vg_simhist_t ack_connected;
    vg_simhist_t alert; /* publish → alert, µs */
    vg_simepisode_t *episodes;
    size_t n_episodes;
} vg_simreport_t;

/* What the final report says about the run besides the measurements. */
typedef struct {
    const char *target;
    unsigned workers;
    int qos;
    double interval_s;
    const char *prefix;
    unsigned id_width;
} vg_simreport_meta_t;

/* Allocates an empty report (the histograms make it ~75 KB). Returns NULL
 * on allocation failure; release with vg_simreport_free (NULL accepted). */
vg_simreport_t *vg_simreport_new(void);
void vg_simreport_free(vg_simreport_t *r);

/* Writes one message to fd (blocking, whole or error). Returns VG_OK,
 * VG_ENOMEM, or VG_EIO if the pipe is gone. */
int vg_simreport_write(int fd, int kind, const vg_simcounters_t *c, const vg_simhist_t *ack,
                       const vg_simhist_t *ack_connected, const vg_simhist_t *alert, const vg_simepisode_t *eps,
                       size_t n);

/* Looks for one complete message at buf[0..len). Returns VG_AGAIN if it is
 * not all there yet; VG_OK with *used and *kind set and `into` replaced by
 * its contents (episodes are copied; `into` owns them); VG_EMALFORMED or
 * VG_ENOMEM otherwise. */
int vg_simreport_read(const uint8_t *buf, size_t len, size_t *used, int *kind, vg_simreport_t *into);

/* Adds src to dst: counters summed (send_us: the maximum), histograms
 * merged, episodes appended. Returns VG_OK or VG_ENOMEM (dst then lacks
 * src's episodes but is otherwise merged). */
int vg_simreport_merge(vg_simreport_t *dst, const vg_simreport_t *src);

/* The final report as a human-readable table, or as one JSON object and a
 * newline (the keys the brief defines, plus "qos", "interval_s" and
 * "deferred", and for the alert lifecycle "anomalies.resolved",
 * "anomalies.cut", "alerts_opened", "alert_followups", "duplicate_alerts",
 * "secondary_alerts" and "quality_alerts"; "reconnects", "tls" with its
 * handshake counts, "connect_failure_reasons" with a count per
 * vg_simreport_cf_name). */
void vg_simreport_print_text(FILE *f, const vg_simreport_t *r, const vg_simreport_meta_t *m);
void vg_simreport_print_json(FILE *f, const vg_simreport_t *r, const vg_simreport_meta_t *m);

#endif
