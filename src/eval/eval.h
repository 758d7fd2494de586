/* eval.h — `vigil eval`: detection quality of the real pipeline.
 *
 * Runs `vigil serve` as a child on a free port with a fresh data directory,
 * replays a labelled synthetic fleet (scenario.h) or a recorded one
 * (csv.h) through MQTT in arrival order, collects the alerts, and reports
 * per alert type recall, precision, false alerts per device-day and
 * detection delay against the labels (match.h), side by side with the
 * naive "heart rate > 140" rule (report.h prints; docs/detection.md
 * explains). The pieces: child.h (the server), pub.h (publishing), sub.h
 * (alerts and stats). */
#ifndef VG_EVAL_EVAL_H
#define VG_EVAL_EVAL_H

#include "detect/detect.h"

#include <stdio.h>

/* Reads a detector config file (path) into *out (its global values),
 * printing "FILE:LINE: reason" to err on failure. Provided by the caller
 * (app/main.c owns the config-file reader) so that eval does not depend on
 * app. Returns 0 or a negative VG_* code. */
typedef int (*vg_eval_detect_loader_fn)(const char *path, vg_detect_cfg_t *out, FILE *err);

/* Runs the command; argv[0] is "eval". Progress goes to stderr, the report
 * to stdout. Returns the exit code: 0 when the run completed (whatever the
 * PASS/FAIL verdicts), 1 when the pipeline could not be run to the end, 2
 * on usage errors and malformed --csv input. */
int vg_eval_main(int argc, char **argv, vg_eval_detect_loader_fn load);

#endif
