/* policy_builtin.c — see policy.h. Owns the two built-in documents, the
 * default device policy and the operator role, as JSON text parsed by the
 * same parser as any file (so `vigil policy show` can print them and a file
 * of the same name in the policy directory replaces them word for word).
 * The configurable topics are parameters; they are checked to be plain topic
 * names, since a '*' or "${" in them would turn into a pattern. */
#include "sec/policy.h"

#include "core/err.h"
#include "core/json.h"

#include <stdio.h>
#include <string.h>

/* Topic parameters are at most this long (--telemetry-topic and
 * --control-topic are shorter). */
#define BUILTIN_TOPIC_MAX 200

static int topic_param(const char *what, const char *topic, char *esc, size_t cap, char *err, size_t errcap)
{
    size_t n = topic ? strlen(topic) : 0;
    const char *why = NULL;
    if (n == 0 || n > BUILTIN_TOPIC_MAX)
        why = "must be 1-200 bytes";
    else if (strpbrk(topic, "+#*"))
        why = "must not contain '+', '#' or '*'";
    else if (strstr(topic, "${"))
        why = "must not contain \"${\"";
    else if (vg_json_escape(topic, n, esc, cap) < 0)
        why = "does not fit";
    if (!why)
        return VG_OK;
    if (err && errcap)
        snprintf(err, errcap, "built-in policy: the %s topic %s", what, why);
    return VG_EINVAL;
}

int vg_policy_default_device(const char *telemetry_topic, vg_policy_doc_t **out, char *err, size_t cap)
{
    char t[6 * BUILTIN_TOPIC_MAX + 1], text[8192];
    *out = NULL;
    int rc = topic_param("telemetry", telemetry_topic, t, sizeof t, err, cap);
    if (rc != VG_OK)
        return rc;
    int n = snprintf(text, sizeof text,
                     "{\"Version\":\"2012-10-17\",\"Statement\":["
                     "{\"Sid\":\"connect as itself\",\"Effect\":\"Allow\",\"Action\":\"mqtt:Connect\","
                     "\"Resource\":\"client/${clientid}\"},"
                     "{\"Sid\":\"publish its own telemetry\",\"Effect\":\"Allow\",\"Action\":\"mqtt:Publish\","
                     "\"Resource\":[\"topic/devices/${clientid}/telemetry\",\"topic/%s\"]},"
                     "{\"Sid\":\"its alerts\",\"Effect\":\"Allow\",\"Action\":\"mqtt:Subscribe\","
                     "\"Resource\":\"topicfilter/alerts/${clientid}\"},"
                     "{\"Sid\":\"its alerts\",\"Effect\":\"Allow\",\"Action\":\"mqtt:Receive\","
                     "\"Resource\":\"topic/alerts/${clientid}\"}],"
                     "\"Attach\":{\"roles\":[\"device\"]}}",
                     t);
    if (n < 0 || (size_t)n >= sizeof text)
        return VG_ETOOBIG;
    return vg_policy_parse(VG_POLICY_BUILTIN_DEVICE, text, (size_t)n, out, err, cap);
}

int vg_policy_operator_role(const char *ack_topic, vg_policy_doc_t **out, char *err, size_t cap)
{
    char t[6 * BUILTIN_TOPIC_MAX + 1], text[8192];
    *out = NULL;
    int rc = topic_param("acknowledgement", ack_topic, t, sizeof t, err, cap);
    if (rc != VG_OK)
        return rc;
    int n = snprintf(text, sizeof text,
                     "{\"Version\":\"2012-10-17\",\"Statement\":["
                     "{\"Sid\":\"connect under its user name\",\"Effect\":\"Allow\",\"Action\":\"mqtt:Connect\","
                     "\"Resource\":\"client/${username}\"},"
                     "{\"Sid\":\"watch alerts and the broker\",\"Effect\":\"Allow\",\"Action\":\"mqtt:Subscribe\","
                     "\"Resource\":[\"topicfilter/alerts/*\",\"topicfilter/%s/result\",\"topicfilter/$SYS/*\"]},"
                     "{\"Sid\":\"watch alerts and the broker\",\"Effect\":\"Allow\",\"Action\":\"mqtt:Receive\","
                     "\"Resource\":[\"topic/alerts/*\",\"topic/%s/result\",\"topic/$SYS/*\"]},"
                     "{\"Sid\":\"acknowledge alerts\",\"Effect\":\"Allow\",\"Action\":\"mqtt:Publish\","
                     "\"Resource\":\"topic/%s\"}],"
                     "\"Attach\":{\"roles\":[\"operator\"]}}",
                     t, t, t);
    if (n < 0 || (size_t)n >= sizeof text)
        return VG_ETOOBIG;
    return vg_policy_parse(VG_POLICY_BUILTIN_OPERATOR, text, (size_t)n, out, err, cap);
}
