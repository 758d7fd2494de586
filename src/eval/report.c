/* report.c — see report.h. */
#include "eval/report.h"

#include "core/clock.h"
#include "core/err.h"
#include "core/json.h"

#include <math.h>
#include <string.h>

double vg_evalreport_target_recall(int t)
{
    return t == VG_ALERT_HIGH_HR_AT_REST || t == VG_ALERT_LOW_HR_AT_REST ? 0.999 : 0.99;
}

double vg_evalreport_target_delay(int t, const vg_detect_cfg_t *c, double iv)
{
    double two = 2 * iv;
    switch (t) {
    case VG_ALERT_HIGH_HR_AT_REST:
    case VG_ALERT_LOW_HR_AT_REST:
        return c->rest_window_s + two;
    case VG_ALERT_EXTREME_HIGH_HR:
    case VG_ALERT_EXTREME_LOW_HR:
        return c->extreme_sustain_s + two;
    case VG_ALERT_SUDDEN_CHANGE:
        return 60 + two;
    case VG_ALERT_IMPOSSIBLE_VALUE:
        return two;
    case VG_ALERT_FLATLINE:
        return c->flatline_s + two;
    case VG_ALERT_DATA_GAP:
        return c->gap_factor * iv + two;
    case VG_ALERT_DEVICE_OFFLINE:
        return c->offline_after_s + two;
    case VG_ALERT_OUT_OF_ORDER:
        return two;
    case VG_ALERT_STALE_DATA:
        return c->stale_after_s + two;
    case VG_ALERT_CLOCK_SKEW:
        return c->skew_confirm_samples * iv + two;
    default:
        return NAN; /* drift and nightly: report only */
    }
}

static double ratio(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : NAN;
}

typedef struct {
    bool na, recall_ok, delay_ok, dup_ok;
} verdict_t;

static verdict_t judge(const vg_evalreport_t *r, int t)
{
    const vg_evaltype_t *s = &r->m->type[t];
    verdict_t v = {.na = s->episodes == 0};
    v.recall_ok = ratio(s->detected, s->episodes) >= vg_evalreport_target_recall(t);
    double d = vg_evalreport_target_delay(t, r->dcfg, r->interval_s);
    v.delay_ok = isnan(d) || (!isnan(s->delay_median) && s->delay_median <= d);
    v.dup_ok = s->duplicates == 0;
    return v;
}

static const char *verdict_text(verdict_t v, char *buf, size_t cap)
{
    if (v.na)
        return "n/a";
    if (v.recall_ok && v.delay_ok && v.dup_ok)
        return "PASS";
    snprintf(buf, cap, "FAIL(%s%s%s)", v.recall_ok ? "" : "recall ", v.delay_ok ? "" : "delay ",
             v.dup_ok ? "" : "dup ");
    size_t n = strlen(buf);
    if (n >= 2 && buf[n - 2] == ' ')
        memmove(buf + n - 2, buf + n - 1, 2);
    return buf;
}

static void fmt_pct(char *b, size_t cap, double x)
{
    if (isnan(x))
        snprintf(b, cap, "-");
    else
        snprintf(b, cap, "%.1f%%", 100 * x);
}

static void fmt_delay(char *b, size_t cap, double x, bool days)
{
    if (isnan(x))
        snprintf(b, cap, "-");
    else if (days)
        snprintf(b, cap, "%.2f d", x);
    else
        snprintf(b, cap, "%.0f s", x);
}

static bool normal_ok(uint64_t n, double days)
{
    return days <= 0 || (double)n / days <= VG_EVALREPORT_FALSE_PER_DAY;
}

static void print_run(const vg_evalreport_t *r, FILE *out)
{
    fprintf(out,
            "published %llu samples (%llu acknowledged) in %.1f s (%.0f/s); processing wait %.1f s; total %.1f s%s\n",
            (unsigned long long)r->published, (unsigned long long)r->acked, r->publish_s,
            r->publish_s > 0 ? (double)r->published / r->publish_s : 0.0, r->wait_s, r->total_s,
            r->incomplete ? " (INCOMPLETE: the pipeline did not catch up in time)" : "");
    fprintf(out,
            "server: accepted %lld, dead letters %lld, processed %lld, alerts emitted %lld; exit status %d\n"
            "alert events received: %llu OPEN, %llu UPDATE, %llu RESOLVED, %llu ACKNOWLEDGED, %llu other, %llu "
            "unparsed\n",
            (long long)r->stats.accepted, (long long)r->stats.deadletter, (long long)r->stats.processed,
            (long long)r->stats.emitted, r->server_exit, (unsigned long long)r->events[0],
            (unsigned long long)r->events[1], (unsigned long long)r->events[2], (unsigned long long)r->events[3],
            (unsigned long long)r->events[4], (unsigned long long)r->unparsed);
    for (size_t i = 0; i < r->n_other; i++)
        fprintf(out, "  OPENs of a type this eval does not know: %s x %llu (counted as false)\n", r->other_name[i],
                (unsigned long long)r->other_count[i]);
}

static bool print_synthetic(const vg_evalreport_t *r, FILE *out)
{
    const vg_scen_cfg_t *c = r->scfg;
    const vg_evalmatch_t *m = r->m;
    bool all = true;
    char b1[32], b2[32], b3[32], b4[32], b5[48], b6[48];
    fprintf(out, "vigil eval%s — seed %llu, %u devices x %g days + %u drift devices x %g days, interval %g s%s%s\n",
            r->mode == VG_EVALREPORT_DRY_RUN ? " --dry-run" : "", (unsigned long long)c->seed, c->devices, c->days,
            c->drift_devices, c->drift_days, c->interval_s, r->detect_config ? ", detect config " : "",
            r->detect_config ? r->detect_config : "");
    fprintf(out, "samples %llu; labelled episodes %zu (%zu did not fit); device-days %.1f, normal device-days %.1f\n",
            (unsigned long long)r->samples, vg_scen_label_count(r->scen), vg_scen_unplaced(r->scen), m->device_days,
            m->normal_device_days);
    if (r->mode != VG_EVALREPORT_DRY_RUN)
        print_run(r, out);
    fprintf(out, "\n");
    if (r->mode != VG_EVALREPORT_DRY_RUN) {
        fprintf(out, "%-26s %5s %5s %5s %4s %5s %5s %4s %7s %7s %8s %8s %8s %-22s %s\n", "type", "eps", "det", "miss",
                "dup", "2nd", "false", "ign", "recall", "prec", "false/dd", "median", "p95", "target", "result");
        for (int t = 1; t < VG_ALERT__COUNT; t++) {
            const vg_evaltype_t *s = &m->type[t];
            bool days = vg_evalmatch_in_days(t);
            fmt_pct(b1, sizeof b1, ratio(s->detected, s->episodes));
            fmt_pct(b2, sizeof b2, ratio(s->detected + s->duplicates, s->detected + s->duplicates + s->false_alerts));
            fmt_delay(b3, sizeof b3, s->delay_median, days);
            fmt_delay(b4, sizeof b4, s->delay_p95, days);
            double td = vg_evalreport_target_delay(t, r->dcfg, r->interval_s);
            if (isnan(td))
                snprintf(b5, sizeof b5, ">=%.0f%%, delay: report", 100 * vg_evalreport_target_recall(t));
            else
                snprintf(b5, sizeof b5, ">=%g%%, <=%.0f s", 100 * vg_evalreport_target_recall(t), td);
            verdict_t v = judge(r, t);
            if (!v.na && !(v.recall_ok && v.delay_ok && v.dup_ok))
                all = false;
            fprintf(out, "%-26s %5llu %5llu %5llu %4llu %5llu %5llu %4llu %7s %7s %8.4f %8s %8s %-22s %s\n",
                    vg_alert_type_name((vg_alert_type_t)t), (unsigned long long)s->episodes,
                    (unsigned long long)s->detected, (unsigned long long)s->missed, (unsigned long long)s->duplicates,
                    (unsigned long long)s->secondary, (unsigned long long)s->false_alerts,
                    (unsigned long long)s->ignored, b1, b2,
                    m->device_days > 0 ? (double)s->false_alerts / m->device_days : 0.0, b3, b4, b5,
                    verdict_text(v, b6, sizeof b6));
        }
        const vg_evaltype_t *o = &m->type[VG_ALERT_NONE];
        if (o->opens)
            fprintf(out, "%-26s %5s %5s %5s %4s %5s %5llu %4llu\n", "(unknown types)", "-", "-", "-", "-", "-",
                    (unsigned long long)o->false_alerts, (unsigned long long)o->ignored);
        if (m->unknown_device)
            fprintf(out, "OPENs for devices the run does not know: %llu (counted as false)\n",
                    (unsigned long long)m->unknown_device);
        double nd = m->normal_device_days;
        bool ok_c = normal_ok(m->false_normal_cardiac, nd), ok_q = normal_ok(m->false_normal_quality, nd),
             ok_o = normal_ok(m->false_normal_other, nd);
        all = all && ok_c && ok_q && ok_o;
        fprintf(out,
                "\nfalse alerts per normal device-day (%.1f normal device-days; target <= %g):\n"
                "  cardiac       %llu  -> %.4f  %s\n  data quality  %llu  -> %.4f  %s\n",
                nd, VG_EVALREPORT_FALSE_PER_DAY, (unsigned long long)m->false_normal_cardiac,
                nd > 0 ? (double)m->false_normal_cardiac / nd : 0.0, nd > 0 ? (ok_c ? "PASS" : "FAIL") : "n/a",
                (unsigned long long)m->false_normal_quality, nd > 0 ? (double)m->false_normal_quality / nd : 0.0,
                nd > 0 ? (ok_q ? "PASS" : "FAIL") : "n/a");
        if (m->false_normal_other)
            fprintf(out, "  unknown types %llu  -> %.4f  %s\n", (unsigned long long)m->false_normal_other,
                    nd > 0 ? (double)m->false_normal_other / nd : 0.0, ok_o ? "PASS" : "FAIL");
        fprintf(out, "\n");
    }
    const vg_evalrulestats_t *rs = &m->rule;
    fprintf(out, "naive rule \"heart rate > 140\" (one alert per excursion), same samples and labels:\n");
    fprintf(out, "%-26s %5s %5s %5s %7s\n", "type", "eps", "det", "miss", "recall");
    for (int t = 1; t < VG_ALERT__COUNT; t++) {
        fmt_pct(b1, sizeof b1, ratio(rs->detected[t], rs->episodes[t]));
        fprintf(out, "%-26s %5llu %5llu %5llu %7s\n", vg_alert_type_name((vg_alert_type_t)t),
                (unsigned long long)rs->episodes[t], (unsigned long long)rs->detected[t],
                (unsigned long long)(rs->episodes[t] - rs->detected[t]), b1);
    }
    fmt_pct(b1, sizeof b1, ratio(rs->matched, rs->matched + rs->false_alerts));
    fprintf(out,
            "rule alerts %llu: in an episode %llu, secondary %llu, false %llu (ignored %llu); precision %s; "
            "false per device-day %.3f, per normal device-day %.3f\n",
            (unsigned long long)rs->alerts, (unsigned long long)rs->matched, (unsigned long long)rs->secondary,
            (unsigned long long)rs->false_alerts, (unsigned long long)rs->ignored, b1,
            m->device_days > 0 ? (double)rs->false_alerts / m->device_days : 0.0,
            m->normal_device_days > 0 ? (double)rs->false_normal / m->normal_device_days : 0.0);
    if (r->mode != VG_EVALREPORT_DRY_RUN)
        fprintf(out, "\nresult: %s\n", all ? "PASS" : "FAIL");
    return all;
}

static void print_csv(const vg_evalreport_t *r, FILE *out)
{
    fprintf(out, "vigil eval --csv %s — %zu samples, %u devices, %.2f device-days%s%s\n", r->csv_path, r->csv->n,
            r->csv->n_ids, r->csv_device_days, r->detect_config ? ", detect config " : "",
            r->detect_config ? r->detect_config : "");
    print_run(r, out);
    fprintf(out, "\n%-26s %6s %8s %12s\n", "type", "OPENs", "devices", "per dev-day");
    uint64_t total = 0;
    for (int t = 0; t < VG_ALERT__COUNT; t++) {
        if (t == VG_ALERT_NONE && !r->csv_opens[t])
            continue;
        total += r->csv_opens[t];
        fprintf(out, "%-26s %6llu %8llu %12.4f\n", t ? vg_alert_type_name((vg_alert_type_t)t) : "(unknown types)",
                (unsigned long long)r->csv_opens[t], (unsigned long long)r->csv_devices[t],
                r->csv_device_days > 0 ? (double)r->csv_opens[t] / r->csv_device_days : 0.0);
    }
    fprintf(out,
            "all alerts: %llu OPENs -> %.4f per device-day (no labels: every alert counts); ignored after a "
            "device's last sample: %llu\n",
            (unsigned long long)total, r->csv_device_days > 0 ? (double)total / r->csv_device_days : 0.0,
            (unsigned long long)r->csv_ignored);
    fprintf(out, "naive rule \"heart rate > 140\": %llu alerts -> %.4f per device-day\n",
            (unsigned long long)r->csv_rule_alerts,
            r->csv_device_days > 0 ? (double)r->csv_rule_alerts / r->csv_device_days : 0.0);
}

bool vg_evalreport_print(const vg_evalreport_t *r, FILE *out)
{
    if (r->mode == VG_EVALREPORT_CSV) {
        print_csv(r, out);
        return true;
    }
    return print_synthetic(r, out);
}

/* ---- JSON ---- */

static void jnum(FILE *f, double x)
{
    if (isnan(x) || isinf(x))
        fputs("null", f);
    else
        fprintf(f, "%.10g", x);
}

static void jstr(FILE *f, const char *s)
{
    char buf[600];
    int n = vg_json_escape(s, strlen(s), buf, sizeof buf);
    fprintf(f, "\"%s\"", n >= 0 ? buf : "");
}

static void json_run(const vg_evalreport_t *r, FILE *f)
{
    fprintf(f,
            "\"run\":{\"published\":%llu,\"acked\":%llu,\"publishSeconds\":%.3f,\"waitSeconds\":%.3f,"
            "\"totalSeconds\":%.3f,\"incomplete\":%s,\"serverExit\":%d,\"accepted\":%lld,\"deadletter\":%lld,"
            "\"processed\":%lld,\"emitted\":%lld,\"alertMessages\":%llu,\"unparsed\":%llu,"
            "\"events\":{\"OPEN\":%llu,\"UPDATE\":%llu,\"RESOLVED\":%llu,\"ACKNOWLEDGED\":%llu,\"other\":%llu},"
            "\"unknownTypes\":{",
            (unsigned long long)r->published, (unsigned long long)r->acked, r->publish_s, r->wait_s, r->total_s,
            r->incomplete ? "true" : "false", r->server_exit, (long long)r->stats.accepted,
            (long long)r->stats.deadletter, (long long)r->stats.processed, (long long)r->stats.emitted,
            (unsigned long long)r->stats.alerts, (unsigned long long)r->unparsed, (unsigned long long)r->events[0],
            (unsigned long long)r->events[1], (unsigned long long)r->events[2], (unsigned long long)r->events[3],
            (unsigned long long)r->events[4]);
    for (size_t i = 0; i < r->n_other; i++) {
        fprintf(f, "%s", i ? "," : "");
        jstr(f, r->other_name[i]);
        fprintf(f, ":%llu", (unsigned long long)r->other_count[i]);
    }
    fprintf(f, "}},\n");
}

static void json_detector(const vg_evalreport_t *r, FILE *f)
{
    /* The thresholds the targets and the matching depend on. */
    const vg_detect_cfg_t *c = r->dcfg;
    struct {
        const char *name;
        double v;
    } p[] = {
        {"rest_high_bpm", c->rest_high_bpm},
        {"rest_low_bpm", c->rest_low_bpm},
        {"rest_window_s", c->rest_window_s},
        {"rest_after_activity_s", c->rest_after_activity_s},
        {"extreme_high_bpm", c->extreme_high_bpm},
        {"extreme_low_bpm", c->extreme_low_bpm},
        {"extreme_sustain_s", c->extreme_sustain_s},
        {"sudden_bpm_per_min", c->sudden_bpm_per_min},
        {"flatline_s", c->flatline_s},
        {"gap_factor", c->gap_factor},
        {"offline_after_s", c->offline_after_s},
        {"stale_after_s", c->stale_after_s},
        {"clock_skew_s", c->clock_skew_s},
        {"skew_confirm_samples", c->skew_confirm_samples},
    };
    fprintf(f, "\"detector\":{");
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
        fprintf(f, "%s\"%s\":", i ? "," : "", p[i].name);
        jnum(f, p[i].v);
    }
    fprintf(f, "},\n");
}

static void json_synthetic(const vg_evalreport_t *r, FILE *f)
{
    const vg_scen_cfg_t *c = r->scfg;
    const vg_evalmatch_t *m = r->m;
    fprintf(f,
            "\"config\":{\"seed\":%llu,\"devices\":%u,\"days\":%g,\"driftDevices\":%u,\"driftDays\":%g,"
            "\"intervalSeconds\":%g,\"jitterSeconds\":%g,\"normalShare\":%g,\"t0Ms\":%lld,\"rates\":{",
            (unsigned long long)c->seed, c->devices, c->days, c->drift_devices, c->drift_days, c->interval_s,
            c->jitter_s, c->normal_share, (long long)c->t0_ms);
    for (int k = 0, first = 1; k < VG_SCEN__KINDS; k++) {
        if (k == VG_SCEN_DRIFT)
            continue;
        fprintf(f, "%s\"%s\":%g", first ? "" : ",", vg_scen_kind_name(k), c->rate[k]);
        first = 0;
    }
    fprintf(f, "},\"detectConfig\":");
    if (r->detect_config)
        jstr(f, r->detect_config);
    else
        fputs("null", f);
    fprintf(f, "},\n");
    json_detector(r, f);
    fprintf(f, "\"samples\":%llu,\"episodes\":%zu,\"unplaced\":%zu,\"deviceDays\":%.6f,\"normalDeviceDays\":%.6f,\n",
            (unsigned long long)r->samples, vg_scen_label_count(r->scen), vg_scen_unplaced(r->scen), m->device_days,
            m->normal_device_days);
    size_t per_kind[VG_SCEN__KINDS] = {0};
    const vg_scen_label_t *L = vg_scen_labels(r->scen);
    size_t nl = vg_scen_label_count(r->scen);
    for (size_t i = 0; i < nl; i++)
        per_kind[L[i].kind]++;
    fprintf(f, "\"episodesByKind\":{");
    for (int k = 0; k < VG_SCEN__KINDS; k++)
        fprintf(f, "%s\"%s\":%zu", k ? "," : "", vg_scen_kind_name(k), per_kind[k]);
    fprintf(f, "},\n");
    bool all = true;
    if (r->mode != VG_EVALREPORT_DRY_RUN) {
        json_run(r, f);
        fprintf(f, "\"types\":[\n");
        for (int t = 1; t < VG_ALERT__COUNT; t++) {
            const vg_evaltype_t *s = &m->type[t];
            verdict_t v = judge(r, t);
            bool pass = v.na || (v.recall_ok && v.delay_ok && v.dup_ok);
            all = all && pass;
            fprintf(f,
                    "{\"type\":\"%s\",\"category\":\"%s\",\"episodes\":%llu,\"detected\":%llu,\"missed\":%llu,"
                    "\"duplicates\":%llu,\"secondary\":%llu,\"false\":%llu,\"falseNormalDays\":%llu,\"ignored\":%llu,"
                    "\"opens\":%llu,\"recall\":",
                    vg_alert_type_name((vg_alert_type_t)t),
                    vg_alert_type_is_cardiac((vg_alert_type_t)t) ? "cardiac" : "data_quality",
                    (unsigned long long)s->episodes, (unsigned long long)s->detected, (unsigned long long)s->missed,
                    (unsigned long long)s->duplicates, (unsigned long long)s->secondary,
                    (unsigned long long)s->false_alerts, (unsigned long long)s->false_normal,
                    (unsigned long long)s->ignored, (unsigned long long)s->opens);
            jnum(f, ratio(s->detected, s->episodes));
            fprintf(f, ",\"precision\":");
            jnum(f, ratio(s->detected + s->duplicates, s->detected + s->duplicates + s->false_alerts));
            fprintf(f, ",\"falsePerDeviceDay\":");
            jnum(f, m->device_days > 0 ? (double)s->false_alerts / m->device_days : NAN);
            fprintf(f, ",\"falsePerNormalDeviceDay\":");
            jnum(f, m->normal_device_days > 0 ? (double)s->false_normal / m->normal_device_days : NAN);
            fprintf(f, ",\"delayUnit\":\"%s\",\"delayMedian\":", vg_evalmatch_in_days(t) ? "days" : "seconds");
            jnum(f, s->delay_median);
            fprintf(f, ",\"delayP95\":");
            jnum(f, s->delay_p95);
            fprintf(f, ",\"targetRecall\":");
            jnum(f, vg_evalreport_target_recall(t));
            fprintf(f, ",\"targetDelaySeconds\":");
            jnum(f, vg_evalreport_target_delay(t, r->dcfg, r->interval_s));
            fprintf(f, ",\"pass\":%s,\"passRecall\":%s,\"passDelay\":%s,\"passDuplicates\":%s}%s\n",
                    v.na   ? "null"
                    : pass ? "true"
                           : "false",
                    v.recall_ok ? "true" : "false", v.delay_ok ? "true" : "false", v.dup_ok ? "true" : "false",
                    t + 1 < VG_ALERT__COUNT ? "," : "");
        }
        fprintf(f, "],\n");
        const vg_evaltype_t *o = &m->type[VG_ALERT_NONE];
        fprintf(f, "\"unknownTypeOpens\":%llu,\"unknownTypeFalse\":%llu,\"unknownDeviceOpens\":%llu,\n",
                (unsigned long long)o->opens, (unsigned long long)o->false_alerts,
                (unsigned long long)m->unknown_device);
        double nd = m->normal_device_days;
        bool ok_c = normal_ok(m->false_normal_cardiac, nd), ok_q = normal_ok(m->false_normal_quality, nd),
             ok_o = normal_ok(m->false_normal_other, nd);
        all = all && ok_c && ok_q && ok_o;
        fprintf(f,
                "\"normalDays\":{\"deviceDays\":%.6f,\"target\":%g,\"cardiacFalse\":%llu,\"cardiacPerDeviceDay\":", nd,
                VG_EVALREPORT_FALSE_PER_DAY, (unsigned long long)m->false_normal_cardiac);
        jnum(f, nd > 0 ? (double)m->false_normal_cardiac / nd : NAN);
        fprintf(f, ",\"qualityFalse\":%llu,\"qualityPerDeviceDay\":", (unsigned long long)m->false_normal_quality);
        jnum(f, nd > 0 ? (double)m->false_normal_quality / nd : NAN);
        fprintf(f, ",\"unknownFalse\":%llu,\"passCardiac\":%s,\"passQuality\":%s},\n",
                (unsigned long long)m->false_normal_other, ok_c ? "true" : "false", ok_q ? "true" : "false");
    }
    const vg_evalrulestats_t *rs = &m->rule;
    fprintf(f,
            "\"rule\":{\"name\":\"heart rate > 140, one alert per excursion\",\"alerts\":%llu,\"matched\":%llu,"
            "\"secondary\":%llu,\"false\":%llu,\"falseNormalDays\":%llu,\"ignored\":%llu,\"precision\":",
            (unsigned long long)rs->alerts, (unsigned long long)rs->matched, (unsigned long long)rs->secondary,
            (unsigned long long)rs->false_alerts, (unsigned long long)rs->false_normal,
            (unsigned long long)rs->ignored);
    jnum(f, ratio(rs->matched, rs->matched + rs->false_alerts));
    fprintf(f, ",\"falsePerDeviceDay\":");
    jnum(f, m->device_days > 0 ? (double)rs->false_alerts / m->device_days : NAN);
    fprintf(f, ",\"falsePerNormalDeviceDay\":");
    jnum(f, m->normal_device_days > 0 ? (double)rs->false_normal / m->normal_device_days : NAN);
    fprintf(f, ",\"types\":[");
    for (int t = 1; t < VG_ALERT__COUNT; t++) {
        fprintf(f,
                "%s{\"type\":\"%s\",\"episodes\":%llu,\"detected\":%llu,\"missed\":%llu,\"recall\":", t > 1 ? "," : "",
                vg_alert_type_name((vg_alert_type_t)t), (unsigned long long)rs->episodes[t],
                (unsigned long long)rs->detected[t], (unsigned long long)(rs->episodes[t] - rs->detected[t]));
        jnum(f, ratio(rs->detected[t], rs->episodes[t]));
        fprintf(f, "}");
    }
    fprintf(f, "]},\n");

    if (r->mode != VG_EVALREPORT_DRY_RUN && m->verdict) {
        /* Every OPEN that did not detect a label, for diagnosis. */
        static const char *const verdicts[] = {"detected", "duplicate",        "secondary",
                                               "false",    "false_normal_day", "ignored"};
        fprintf(f, "\"unmatched\":[\n");
        size_t shown = 0;
        for (size_t i = 0; i < r->n_alerts && shown < 20000; i++) {
            const vg_evalalert_t *a = &r->alerts[i];
            if (m->verdict[i] == VG_EVALMATCH_DETECTED)
                continue;
            char id[32] = "?";
            if (a->device < vg_scen_devices(r->scen))
                vg_scen_device_id(r->scen, a->device, id, sizeof id);
            fprintf(f,
                    "%s{\"device\":\"%s\",\"type\":\"%s\",\"verdict\":\"%s\",\"openedAtMs\":%lld,\"eventTimeMs\":%lld",
                    shown ? ",\n" : "", id, a->type ? vg_alert_type_name((vg_alert_type_t)a->type) : "(unknown)",
                    verdicts[m->verdict[i] < 6 ? m->verdict[i] : 3], (long long)a->opened_ms, (long long)a->event_ms);
            if (m->alert_label[i] >= 0)
                fprintf(f, ",\"label\":%d,\"labelKind\":\"%s\"", m->alert_label[i],
                        vg_scen_kind_name(L[m->alert_label[i]].kind));
            fprintf(f, "}");
            shown++;
        }
        fprintf(f, "\n],\n");
    }
    fprintf(f, "\"labels\":[\n");
    for (size_t i = 0; i < nl; i++) {
        const vg_scen_label_t *l = &L[i];
        char id[32];
        vg_scen_device_id(r->scen, l->device, id, sizeof id);
        fprintf(f, "{\"device\":\"%s\",\"kind\":\"%s\",\"types\":[", id, vg_scen_kind_name(l->kind));
        for (int t = 1, first = 1; t < VG_ALERT__COUNT; t++)
            if ((l->types >> t) & 1u) {
                fprintf(f, "%s\"%s\"", first ? "" : ",", vg_alert_type_name((vg_alert_type_t)t));
                first = 0;
            }
        fprintf(f, "],\"startMs\":%lld,\"endMs\":%lld,\"skewMs\":%lld,\"level\":", (long long)l->start_ms,
                (long long)l->end_ms, (long long)l->skew_ms);
        jnum(f, l->level);
        fprintf(f, ",\"coreLo\":");
        jnum(f, l->core_lo);
        fprintf(f, ",\"coreHi\":");
        jnum(f, l->core_hi);
        fprintf(f, ",\"samples\":%u", l->samples);
        if (r->mode != VG_EVALREPORT_DRY_RUN && m->label_delay) {
            fprintf(f, ",\"delay\":{");
            for (int t = 1, first = 1; t < VG_ALERT__COUNT; t++)
                if ((l->types >> t) & 1u) {
                    fprintf(f, "%s\"%s\":", first ? "" : ",", vg_alert_type_name((vg_alert_type_t)t));
                    jnum(f, m->label_delay[i * VG_ALERT__COUNT + (size_t)t]);
                    first = 0;
                }
            fprintf(f, "},\"duplicates\":{");
            for (int t = 1, first = 1; t < VG_ALERT__COUNT; t++)
                if ((l->types >> t) & 1u) {
                    fprintf(f, "%s\"%s\":%u", first ? "" : ",", vg_alert_type_name((vg_alert_type_t)t),
                            m->label_dups[i * VG_ALERT__COUNT + (size_t)t]);
                    first = 0;
                }
            fprintf(f, "}");
        }
        fprintf(f, "}%s\n", i + 1 < nl ? "," : "");
    }
    fprintf(f, "],\n\"pass\":%s\n", r->mode == VG_EVALREPORT_DRY_RUN ? "null" : all ? "true" : "false");
}

static void json_csv(const vg_evalreport_t *r, FILE *f)
{
    fprintf(f, "\"csv\":");
    jstr(f, r->csv_path);
    fprintf(f, ",\"samples\":%zu,\"devices\":%u,\"deviceDays\":%.6f,\"detectConfig\":", r->csv->n, r->csv->n_ids,
            r->csv_device_days);
    if (r->detect_config)
        jstr(f, r->detect_config);
    else
        fputs("null", f);
    fprintf(f, ",\n");
    json_detector(r, f);
    json_run(r, f);
    uint64_t total = 0;
    fprintf(f, "\"types\":[\n");
    for (int t = 1; t < VG_ALERT__COUNT; t++) {
        total += r->csv_opens[t];
        fprintf(f, "{\"type\":\"%s\",\"opens\":%llu,\"devices\":%llu,\"perDeviceDay\":",
                vg_alert_type_name((vg_alert_type_t)t), (unsigned long long)r->csv_opens[t],
                (unsigned long long)r->csv_devices[t]);
        jnum(f, r->csv_device_days > 0 ? (double)r->csv_opens[t] / r->csv_device_days : NAN);
        fprintf(f, "}%s\n", t + 1 < VG_ALERT__COUNT ? "," : "");
    }
    total += r->csv_opens[VG_ALERT_NONE];
    fprintf(f, "],\n\"unknownTypeOpens\":%llu,\"opens\":%llu,\"ignored\":%llu,\"alertsPerDeviceDay\":",
            (unsigned long long)r->csv_opens[VG_ALERT_NONE], (unsigned long long)total,
            (unsigned long long)r->csv_ignored);
    jnum(f, r->csv_device_days > 0 ? (double)total / r->csv_device_days : NAN);
    fprintf(f, ",\"ruleAlerts\":%llu,\"ruleAlertsPerDeviceDay\":", (unsigned long long)r->csv_rule_alerts);
    jnum(f, r->csv_device_days > 0 ? (double)r->csv_rule_alerts / r->csv_device_days : NAN);
    fprintf(f, ",\n\"alerts\":[\n");
    for (size_t i = 0; i < r->n_open; i++)
        fprintf(f, "%s%s\n", r->open_payloads[i], i + 1 < r->n_open ? "," : "");
    fprintf(f, "]\n");
}

int vg_evalreport_json(const vg_evalreport_t *r, const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
    if (!f)
        return VG_EIO;
    static const char *const modes[] = {"synthetic", "csv", "dry-run"};
    fprintf(f, "{\"tool\":\"vigil eval\",\"mode\":\"%s\",\n", modes[r->mode]);
    if (r->mode == VG_EVALREPORT_CSV)
        json_csv(r, f);
    else
        json_synthetic(r, f);
    fprintf(f, "}\n");
    int bad = ferror(f);
    if (f != stdout)
        bad |= fclose(f);
    else
        fflush(f);
    return bad ? VG_EIO : VG_OK;
}
