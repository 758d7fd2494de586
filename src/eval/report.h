/* report.h — `vigil eval`'s output: the readable table on stdout and the
 * --json file with every number.
 *
 * Owns: the targets each type is judged against (PASS/FAIL), the table
 * layout and the JSON schema (docs/detection.md). Does not own: computing
 * the numbers (match.h) or running anything. */
#ifndef VG_EVAL_REPORT_H
#define VG_EVAL_REPORT_H

#include "detect/detect.h"
#include "eval/csv.h"
#include "eval/match.h"
#include "eval/scenario.h"
#include "eval/sub.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define VG_EVALREPORT_MAX_OTHER 16
#define VG_EVALREPORT_FALSE_PER_DAY 0.01 /* target: false alerts per normal device-day */

enum { VG_EVALREPORT_SYNTHETIC = 0, VG_EVALREPORT_CSV, VG_EVALREPORT_DRY_RUN };

typedef struct {
    int mode;
    const vg_detect_cfg_t *dcfg;
    const char *detect_config; /* path or NULL */
    double interval_s;         /* the sampling interval the delay targets assume */

    /* the run (not for DRY_RUN) */
    uint64_t published, acked;
    double publish_s, wait_s, total_s;
    bool incomplete;                                 /* the processing wait timed out */
    int server_exit;                                 /* the server's exit status (0 = clean) */
    vg_evalsub_stats_t stats;                        /* the last stats the server sent */
    uint64_t events[5];                              /* OPEN, UPDATE, RESOLVED, ACKNOWLEDGED, other */
    uint64_t unparsed;                               /* alert messages that were not JSON objects we understand */
    const char *other_name[VG_EVALREPORT_MAX_OTHER]; /* OPENs of type names we do not know */
    uint64_t other_count[VG_EVALREPORT_MAX_OTHER];
    size_t n_other;

    /* SYNTHETIC and DRY_RUN */
    const vg_scen_cfg_t *scfg;
    const vg_scen_t *scen;
    const vg_evalmatch_t *m;
    const vg_evalalert_t *alerts; /* the OPENs, in the order m's verdicts refer to */
    size_t n_alerts;
    uint64_t samples;

    /* CSV */
    const char *csv_path;
    const vg_evalcsv_t *csv;
    double csv_device_days;
    uint64_t csv_opens[VG_ALERT__COUNT], csv_devices[VG_ALERT__COUNT], csv_ignored;
    uint64_t csv_rule_alerts;
    char *const *open_payloads; /* the OPEN events' JSON, for --json */
    size_t n_open;
} vg_evalreport_t;

/* Recall target of type t (0.999 for the sustained-at-rest types, 0.99
 * otherwise). */
double vg_evalreport_target_recall(int t);
/* Median-delay target of type t in seconds (the rule's window or threshold
 * plus two samples), or NaN for report-only types. */
double vg_evalreport_target_delay(int t, const vg_detect_cfg_t *c, double interval_s);

/* Prints the report; returns true when every verdict is PASS (always true
 * for CSV and DRY_RUN, which have no targets). */
bool vg_evalreport_print(const vg_evalreport_t *r, FILE *out);
/* Writes the JSON report to path. VG_OK or VG_EIO. */
int vg_evalreport_json(const vg_evalreport_t *r, const char *path);

#endif
