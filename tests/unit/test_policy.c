/* test_policy.c — sec/policy: the document grammar and its error messages,
 * limits, patterns (stars, literal MQTT wildcards) against a reference
 * matcher, variables (unset, empty, not one level), deny over allow across
 * documents, explanations, the decision cache, the built-in documents, no
 * allocation on the check path, allocation failures while parsing, and the
 * cost of a check (printed as "# bench" lines). */
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "sec/policy.h"
#include "vt.h"

#include <stdint.h>

static const char *const example =
    "{\"Version\":\"2012-10-17\",\"Statement\":["
    "{\"Effect\":\"Allow\",\"Action\":[\"mqtt:Connect\"],\"Resource\":[\"client/${clientid}\"]},"
    "{\"Effect\":\"Allow\",\"Action\":[\"mqtt:Publish\"],\"Resource\":[\"topic/devices/${clientid}/telemetry\"]},"
    "{\"Effect\":\"Allow\",\"Action\":[\"mqtt:Subscribe\"],\"Resource\":[\"topicfilter/alerts/${clientid}\"]},"
    "{\"Effect\":\"Allow\",\"Action\":[\"mqtt:Receive\"],\"Resource\":[\"topic/alerts/${clientid}\"]},"
    "{\"Effect\":\"Deny\",\"Action\":[\"mqtt:Retain\"],\"Resource\":[\"topic/*\"]}]}";

#define S(lit) ((vg_policy_str_t){lit, sizeof(lit) - 1})

static vg_policy_doc_t *parse(const char *name, const char *text)
{
    vg_policy_doc_t *d = NULL;
    char err[256];
    if (vg_policy_parse(name, text, strlen(text), &d, err, sizeof err) != VG_OK)
        fprintf(stdout, "  parse failed: %s\n", err);
    return d;
}

/* A set of one document given as text. */
static vg_policy_set_t *set1(const char *text)
{
    vg_policy_doc_t *d = parse("t", text);
    vg_policy_set_t *s = NULL;
    if (d && vg_policy_set_new(&d, 1, &s) != VG_OK)
        s = NULL;
    vg_policy_doc_unref(d); /* the set keeps its own reference */
    return s;
}

/* A document of one Allow statement with one resource and one action. */
static vg_policy_set_t *allow1(const char *action, const char *resource)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"%s\",\"Resource\":\"%s\"}}",
             action, resource);
    return set1(text);
}

static bool chk(const vg_policy_set_t *s, vg_policy_action_t a, const char *res, const vg_policy_vars_t *v)
{
    return vg_policy_check(s, a, res, strlen(res), v, NULL);
}

static void test_example(void)
{
    vg_policy_set_t *s = set1(example);
    VT_REQUIRE(s);
    vg_policy_vars_t v = {.clientid = S("dev-1")};
    vg_policy_why_t w;
    VT_CHECK(chk(s, VG_POLICY_CONNECT, "dev-1", &v));
    VT_CHECK(!chk(s, VG_POLICY_CONNECT, "dev-2", &v));
    VT_CHECK(!chk(s, VG_POLICY_CONNECT, "dev-1x", &v));
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "devices/dev-1/telemetry", &v));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "devices/dev-2/telemetry", &v));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "devices/dev-1/telemetry/x", &v));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "alerts/dev-1", &v)); /* receive is not publish */
    VT_CHECK(chk(s, VG_POLICY_SUBSCRIBE, "alerts/dev-1", &v));
    VT_CHECK(!chk(s, VG_POLICY_SUBSCRIBE, "alerts/#", &v));
    VT_CHECK(!chk(s, VG_POLICY_SUBSCRIBE, "alerts/+", &v));
    VT_CHECK(chk(s, VG_POLICY_RECEIVE, "alerts/dev-1", &v));
    VT_CHECK(!chk(s, VG_POLICY_RECEIVE, "alerts/dev-2", &v));

    VT_CHECK(!vg_policy_check(s, VG_POLICY_RETAIN, "devices/dev-1/telemetry", 23, &v, &w));
    VT_CHECK(w.effect == VG_POLICY_DENY_EXPLICIT && w.doc == 0 && w.statement == 4 && w.resource == 0);
    VT_CHECK(vg_policy_check(s, VG_POLICY_PUBLISH, "devices/dev-1/telemetry", 23, &v, &w));
    VT_CHECK(w.effect == VG_POLICY_ALLOW && w.statement == 1);
    VT_CHECK(!vg_policy_check(s, VG_POLICY_PUBLISH, "x", 1, &v, &w));
    VT_CHECK(w.effect == VG_POLICY_DENY_DEFAULT && w.doc == -1 && w.statement == -1 && w.resource == -1);
    /* No vars at all: ${clientid} is unset, nothing matches. */
    VT_CHECK(!chk(s, VG_POLICY_CONNECT, "dev-1", NULL));
    /* Bad arguments deny. */
    VT_CHECK(!vg_policy_check(NULL, VG_POLICY_CONNECT, "dev-1", 5, &v, NULL));
    VT_CHECK(!vg_policy_check(s, VG_POLICY__ACTIONS, "dev-1", 5, &v, NULL));
    VT_CHECK(!vg_policy_check(s, VG_POLICY_CONNECT, NULL, 5, &v, NULL));
    vg_policy_set_unref(s);
}

/* Expects text to fail with rc and the message msg exactly. */
static void expect_error(const char *text, int rc, const char *msg)
{
    vg_policy_doc_t *d = (vg_policy_doc_t *)1;
    char err[512];
    int got = vg_policy_parse("dev", text, strlen(text), &d, err, sizeof err);
    VT_EQ_INT(got, rc);
    VT_CHECK(d == NULL);
    if (strcmp(err, msg) != 0) {
        fprintf(stdout, "  expected: %s\n  got:      %s\n", msg, err);
        vt_failed_checks++;
    }
}

#define DOC(stmts) "{\"Version\":\"2012-10-17\",\"Statement\":[" stmts "]}"
#define OKST "{\"Effect\":\"Allow\",\"Action\":\"mqtt:Connect\",\"Resource\":\"client/a\"}"

static void test_errors(void)
{
    expect_error(DOC(OKST ",{\"Effect\":\"Allow\",\"Action\":[\"mqtt:Pub\"],\"Resource\":\"topic/a\"}"), VG_EMALFORMED,
                 "policy dev: statement 2: unknown action \"mqtt:Pub\"");
    expect_error("{\"Version\":\"2012-10-17\",\"Statement\":[" OKST ",]}", VG_EMALFORMED, "policy dev: not valid JSON");
    expect_error("[1]", VG_EMALFORMED, "policy dev: the document must be a JSON object");
    expect_error("{\"Statement\":[" OKST "]}", VG_EMALFORMED, "policy dev: \"Version\" is missing (\"2012-10-17\")");
    expect_error("{\"Version\":\"2008-10-17\",\"Statement\":[" OKST "]}", VG_EMALFORMED,
                 "policy dev: \"Version\" must be \"2012-10-17\"");
    expect_error("{\"Version\":\"2012-10-17\"}", VG_EMALFORMED, "policy dev: \"Statement\" is missing");
    expect_error(DOC(""), VG_EMALFORMED, "policy dev: \"Statement\" is empty");
    expect_error("{\"Version\":\"2012-10-17\",\"Statement\":[" OKST "],\"Id\":1}", VG_EMALFORMED,
                 "policy dev: the document field \"Id\" is unknown");
    expect_error("{\"Version\":\"2012-10-17\",\"Version\":\"2012-10-17\",\"Statement\":[" OKST "]}", VG_EMALFORMED,
                 "policy dev: the document field \"Version\" appears twice");
    expect_error(DOC("1"), VG_EMALFORMED, "policy dev: statement 1: a statement must be a JSON object");
    expect_error(DOC("{\"Action\":\"mqtt:Connect\",\"Resource\":\"client/a\"}"), VG_EMALFORMED,
                 "policy dev: statement 1: \"Effect\" is missing");
    expect_error(DOC("{\"Effect\":\"allow\",\"Action\":\"mqtt:Connect\",\"Resource\":\"client/a\"}"), VG_EMALFORMED,
                 "policy dev: statement 1: \"Effect\" must be \"Allow\" or \"Deny\"");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Resource\":\"client/a\"}"), VG_EMALFORMED,
                 "policy dev: statement 1: \"Action\" is missing");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":[],\"Resource\":\"client/a\"}"), VG_EMALFORMED,
                 "policy dev: statement 1: \"Action\" is empty");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":[1],\"Resource\":\"client/a\"}"), VG_EMALFORMED,
                 "policy dev: statement 1: \"Action\" entry 1 is not a string");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":{},\"Resource\":\"client/a\"}"), VG_EMALFORMED,
                 "policy dev: statement 1: \"Action\" must be a string or an array of strings");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Connect\"}"), VG_EMALFORMED,
                 "policy dev: statement 1: \"Resource\" is missing");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Connect\",\"Resource\":\"a/b\"}"), VG_EMALFORMED,
                 "policy dev: statement 1: resource \"a/b\" has no known type (client/, topic/, topicfilter/ or *)");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Connect\",\"Resource\":\"client/\"}"), VG_EMALFORMED,
                 "policy dev: statement 1: resource \"client/\" has an empty pattern");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Publish\",\"Resource\":\"topic/a/#\"}"), VG_EMALFORMED,
                 "policy dev: statement 1: resource \"topic/a/#\": '+' and '#' are literal in policies and no topic "
                 "name contains them (use '*', or topicfilter/ for mqtt:Subscribe)");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Publish\",\"Resource\":\"topic/${clientid\"}"),
                 VG_EMALFORMED,
                 "policy dev: statement 1: resource \"topic/${clientid\": \"${\" without a closing \"}\"");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Publish\",\"Resource\":\"topic/${iot:ClientId}\"}"),
                 VG_EMALFORMED,
                 "policy dev: statement 1: unknown variable \"${iot:ClientId}\" (${clientid}, ${username}, ${cert.cn}, "
                 "${device.attr.NAME})");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Publish\",\"Resource\":\"topic/${device.attr.}\"}"),
                 VG_EMALFORMED,
                 "policy dev: statement 1: unknown variable \"${device.attr.}\" (${clientid}, ${username}, "
                 "${cert.cn}, ${device.attr.NAME})");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Subscribe\",\"Resource\":\"topic/a\"}"), VG_EMALFORMED,
                 "policy dev: statement 1: no resource applies to its actions (client/ is for mqtt:Connect, "
                 "topicfilter/ for mqtt:Subscribe, topic/ for mqtt:Publish, mqtt:Receive and mqtt:Retain)");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Connect\",\"Resource\":\"client/a\",\"Condition\":{}}"),
                 VG_EMALFORMED, "policy dev: statement 1: statement field \"Condition\" is not supported");
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Connect\",\"Resource\":\"client/a\\u0000\"}"),
                 VG_EMALFORMED, "policy dev: statement 1: resource \"client/a\\x5cu0000\" contains a NUL");
    /* Hostile bytes in a message are quoted, not copied. */
    expect_error(DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:\\u001b[31m\",\"Resource\":\"client/a\"}"), VG_EMALFORMED,
                 "policy dev: statement 1: unknown action \"mqtt:\\x5cu001b[31m\"");
    expect_error("{\"Version\":\"2012-10-17\",\"Statement\":[" OKST "],\"Attach\":{\"roles\":[\"\"]}}", VG_EMALFORMED,
                 "policy dev: \"Attach\" roles entry 1 is empty or holds a NUL");
    expect_error("{\"Version\":\"2012-10-17\",\"Statement\":[" OKST "],\"Attach\":{\"users\":[\"a\"]}}", VG_EMALFORMED,
                 "policy dev: \"Attach\" field \"users\" is unknown");

    /* Bad names. */
    vg_policy_doc_t *d;
    char err[256];
    VT_EQ_INT(vg_policy_parse("a b", DOC(OKST), strlen(DOC(OKST)), &d, err, sizeof err), VG_EINVAL);
    VT_CHECK(d == NULL && strstr(err, "a policy name is"));
    VT_EQ_INT(vg_policy_parse("", DOC(OKST), strlen(DOC(OKST)), &d, err, sizeof err), VG_EINVAL);
    /* A short error buffer is truncated, not overrun; NULL is fine. */
    VT_EQ_INT(vg_policy_parse("dev", "{", 1, &d, err, 8), VG_EMALFORMED);
    VT_CHECK(strcmp(err, "policy ") == 0);
    VT_EQ_INT(vg_policy_parse("dev", "{", 1, &d, NULL, 0), VG_EMALFORMED);
}

static void test_limits(void)
{
    static char text[VG_POLICY_MAX_DOC_BYTES + 64];
    char err[256];
    vg_policy_doc_t *d;
    size_t used = vg_mem_used(VG_MEM_SEC);

    /* Too many statements: refused before allocating. */
    size_t o = (size_t)snprintf(text, sizeof text, "{\"Version\":\"2012-10-17\",\"Statement\":[");
    for (int i = 0; i <= VG_POLICY_MAX_STATEMENTS; i++)
        o += (size_t)snprintf(text + o, sizeof text - o, "%s" OKST, i ? "," : "");
    o += (size_t)snprintf(text + o, sizeof text - o, "]}");
    VT_EQ_INT(vg_policy_parse("big", text, o, &d, err, sizeof err), VG_ETOOBIG);
    VT_CHECK(strcmp(err, "policy big: 65 statements (at most 64)") == 0);
    VT_EQ_INT(vg_mem_used(VG_MEM_SEC), used);

    /* Exactly the limit parses. */
    o = (size_t)snprintf(text, sizeof text, "{\"Version\":\"2012-10-17\",\"Statement\":[");
    for (int i = 0; i < VG_POLICY_MAX_STATEMENTS; i++)
        o += (size_t)snprintf(text + o, sizeof text - o, "%s" OKST, i ? "," : "");
    o += (size_t)snprintf(text + o, sizeof text - o, "]}");
    VT_EQ_INT(vg_policy_parse("big", text, o, &d, err, sizeof err), VG_OK);
    VT_EQ_INT(vg_policy_doc_statements(d), VG_POLICY_MAX_STATEMENTS);
    vg_policy_doc_unref(d);

    /* A pattern one byte too long, and one at the limit. */
    char res[VG_POLICY_MAX_PATTERN + 2];
    memset(res, 'a', sizeof res);
    memcpy(res, "topic/", 6);
    res[VG_POLICY_MAX_PATTERN + 1] = '\0';
    o = (size_t)snprintf(text, sizeof text,
                         DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Publish\",\"Resource\":\"%s\"}"), res);
    VT_EQ_INT(vg_policy_parse("long", text, o, &d, err, sizeof err), VG_ETOOBIG);
    VT_CHECK(strstr(err, "is longer than 256 bytes") != NULL);
    res[VG_POLICY_MAX_PATTERN] = '\0';
    o = (size_t)snprintf(text, sizeof text,
                         DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Publish\",\"Resource\":\"%s\"}"), res);
    VT_EQ_INT(vg_policy_parse("long", text, o, &d, err, sizeof err), VG_OK);
    vg_policy_doc_unref(d);

    /* Too many pieces in one resource. */
    o = (size_t)snprintf(text, sizeof text,
                         DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Publish\",\"Resource\":\"topic/"));
    o -= strlen("]}");
    for (int i = 0; i < VG_POLICY_MAX_PIECES / 2 + 1; i++)
        o += (size_t)snprintf(text + o, sizeof text - o, "a*");
    o += (size_t)snprintf(text + o, sizeof text - o, "\"}]}");
    VT_EQ_INT(vg_policy_parse("stars", text, o, &d, err, sizeof err), VG_ETOOBIG);

    /* Too many resources and actions. */
    o = (size_t)snprintf(text, sizeof text,
                         "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"mqtt:*\","
                         "\"Resource\":[");
    for (int i = 0; i <= VG_POLICY_MAX_RESOURCES; i++)
        o += (size_t)snprintf(text + o, sizeof text - o, "%s\"topic/t%d\"", i ? "," : "", i);
    o += (size_t)snprintf(text + o, sizeof text - o, "]}]}");
    VT_EQ_INT(vg_policy_parse("res", text, o, &d, err, sizeof err), VG_ETOOBIG);
    VT_CHECK(strcmp(err, "policy res: statement 1: \"Resource\" has 65 entries (at most 64)") == 0);

    /* The whole text. */
    memset(text, ' ', sizeof text);
    VT_EQ_INT(vg_policy_parse("huge", text, VG_POLICY_MAX_DOC_BYTES + 1, &d, err, sizeof err), VG_ETOOBIG);
    VT_EQ_INT(vg_mem_used(VG_MEM_SEC), used);
}

/* The reference: a recursive glob over pattern bytes ('*' any run). */
static bool ref_glob(const char *p, size_t pn, const char *t, size_t tn)
{
    if (pn == 0)
        return tn == 0;
    if (*p == '*') {
        for (size_t k = 0; k <= tn; k++)
            if (ref_glob(p + 1, pn - 1, t + k, tn - k))
                return true;
        return false;
    }
    return tn > 0 && *p == *t && ref_glob(p + 1, pn - 1, t + 1, tn - 1);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static void test_patterns(void)
{
    vg_policy_set_t *s = allow1("mqtt:Publish", "topic/a/*");
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "a/b", NULL));
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "a/b/c", NULL)); /* '*' crosses levels */
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "a/", NULL));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "a", NULL));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "b/a/c", NULL));
    VT_CHECK(!chk(s, VG_POLICY_RECEIVE, "a/b", NULL)); /* only the actions listed */
    vg_policy_set_unref(s);

    /* topicfilter: MQTT wildcards are literal. */
    s = allow1("mqtt:Subscribe", "topicfilter/alerts/#");
    VT_CHECK(chk(s, VG_POLICY_SUBSCRIBE, "alerts/#", NULL));
    VT_CHECK(!chk(s, VG_POLICY_SUBSCRIBE, "alerts/x", NULL));
    VT_CHECK(!chk(s, VG_POLICY_SUBSCRIBE, "alerts/+", NULL));
    VT_CHECK(!chk(s, VG_POLICY_SUBSCRIBE, "#", NULL));
    vg_policy_set_unref(s);
    s = allow1("mqtt:Subscribe", "topicfilter/alerts/*");
    VT_CHECK(chk(s, VG_POLICY_SUBSCRIBE, "alerts/#", NULL));
    VT_CHECK(chk(s, VG_POLICY_SUBSCRIBE, "alerts/+/x", NULL));
    VT_CHECK(!chk(s, VG_POLICY_SUBSCRIBE, "#", NULL));
    vg_policy_set_unref(s);
    s = allow1("mqtt:Subscribe", "topicfilter/$SYS/#");
    VT_CHECK(chk(s, VG_POLICY_SUBSCRIBE, "$SYS/#", NULL));
    vg_policy_set_unref(s);

    /* "*" alone: every action, every resource. */
    s = allow1("mqtt:*", "*");
    for (int a = 0; a < VG_POLICY__ACTIONS; a++)
        VT_CHECK(chk(s, (vg_policy_action_t)a, "anything/at/all", NULL));
    VT_CHECK(vg_policy_check(s, VG_POLICY_PUBLISH, "", 0, NULL, NULL));
    vg_policy_set_unref(s);

    /* Prefix, suffix, middle chunks, "**". */
    s = allow1("mqtt:Publish", "topic/x*y**z*");
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "xyz", NULL));
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "x/y/z/", NULL));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "xzy", NULL));
    vg_policy_set_unref(s);
    s = allow1("mqtt:Publish", "topic/*ab*ab");
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "abab", NULL));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "aba", NULL));
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "xxabyyabab", NULL));
    vg_policy_set_unref(s);

    /* Random patterns over a small alphabet against the reference. */
    static const char alpha[] = "ab/*";
    int mismatches = 0;
    for (int round = 0; round < 3000; round++) {
        char pat[16], topic[16], res[32];
        size_t pn = 1 + next_rand() % 10, tn = next_rand() % 12;
        for (size_t i = 0; i < pn; i++)
            pat[i] = alpha[next_rand() % 4];
        for (size_t i = 0; i < tn; i++)
            topic[i] = alpha[next_rand() % 3];
        pat[pn] = topic[tn] = '\0';
        snprintf(res, sizeof res, "topic/%s", pat);
        s = allow1("mqtt:Publish", res);
        VT_REQUIRE(s);
        bool got = vg_policy_check(s, VG_POLICY_PUBLISH, topic, tn, NULL, NULL);
        if (got != ref_glob(pat, pn, topic, tn) && mismatches++ < 5)
            fprintf(stdout, "  pattern %s topic %s: got %d\n", pat, topic, got);
        vg_policy_set_unref(s);
    }
    VT_EQ_INT(mismatches, 0);
}

static void test_variables(void)
{
    vg_policy_set_t *s = set1(
        DOC("{\"Effect\":\"Allow\",\"Action\":\"mqtt:Publish\",\"Resource\":[\"topic/u/${username}/*\","
            "\"topic/cn/${cert.cn}\",\"topic/ward/${device.attr.ward}/${clientid}\",\"topic/${clientid}${username}\"]},"
            "{\"Effect\":\"Allow\",\"Action\":\"mqtt:Connect\",\"Resource\":\"client/${clientid}\"},"
            "{\"Effect\":\"Allow\",\"Action\":\"mqtt:Subscribe\",\"Resource\":\"topicfilter/alerts/${clientid}\"}"));
    VT_REQUIRE(s);
    vg_policy_attr_t attrs[] = {{S("floor"), S("2")}, {S("ward"), S("w3")}};
    vg_policy_vars_t v = {
        .clientid = S("d1"), .username = S("alice"), .cert_cn = S("d1.example"), .attrs = attrs, .n_attrs = 2};
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "u/alice/x", &v));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "u/bob/x", &v));
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "cn/d1.example", &v));
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "ward/w3/d1", &v));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "ward/2/d1", &v));
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "d1alice", &v));

    /* Unset or empty never matches as empty. */
    vg_policy_vars_t none = {.clientid = S("d1")};
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "u//x", &none));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "ward//d1", &none));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "d1", &none));
    vg_policy_vars_t empty = {.clientid = S("d1"), .username = {"", 0}};
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "u//x", &empty));
    VT_CHECK(!chk(s, VG_POLICY_CONNECT, "", &(vg_policy_vars_t){.clientid = {"", 0}}));

    /* A value is literal, and in topic resources one level only. */
    vg_policy_vars_t star = {.clientid = S("*")};
    VT_CHECK(chk(s, VG_POLICY_CONNECT, "*", &star));
    VT_CHECK(!chk(s, VG_POLICY_CONNECT, "d1", &star));
    vg_policy_vars_t hash = {.clientid = S("#")};
    VT_CHECK(!chk(s, VG_POLICY_SUBSCRIBE, "alerts/#", &hash));
    vg_policy_vars_t plus = {.clientid = S("+")};
    VT_CHECK(!chk(s, VG_POLICY_SUBSCRIBE, "alerts/+", &plus));
    vg_policy_vars_t slash = {.clientid = S("a/b")};
    VT_CHECK(!chk(s, VG_POLICY_SUBSCRIBE, "alerts/a/b", &slash));
    VT_CHECK(chk(s, VG_POLICY_CONNECT, "a/b", &slash)); /* a client id may hold '/' */
    vg_policy_set_unref(s);
}

static void test_deny_wins_and_explain(void)
{
    vg_policy_doc_t *docs[3];
    docs[0] =
        parse("allow-all", DOC("{\"Sid\":\"all\",\"Effect\":\"Allow\",\"Action\":\"mqtt:*\",\"Resource\":\"*\"}"));
    docs[1] = parse("no-sys", DOC(OKST ",{\"Effect\":\"Deny\",\"Action\":[\"mqtt:Subscribe\",\"mqtt:Receive\"],"
                                       "\"Resource\":[\"topicfilter/$SYS/*\",\"topic/$SYS/*\",\"topicfilter/#\"]}"));
    docs[2] = parse("dup", DOC(OKST));
    VT_REQUIRE(docs[0] && docs[1] && docs[2]);
    vg_policy_set_t *s = NULL;
    VT_REQUIRE(vg_policy_set_new(docs, 3, &s) == VG_OK);
    for (int i = 0; i < 3; i++)
        vg_policy_doc_unref(docs[i]);
    VT_EQ_INT(vg_policy_set_docs(s), 3);
    VT_CHECK(strcmp(vg_policy_doc_name(vg_policy_set_doc(s, 1)), "no-sys") == 0);
    VT_CHECK(vg_policy_set_doc(s, 3) == NULL);

    vg_policy_why_t w;
    VT_CHECK(!vg_policy_check(s, VG_POLICY_SUBSCRIBE, "#", 1, NULL, &w));
    VT_CHECK(w.effect == VG_POLICY_DENY_EXPLICIT && w.doc == 1 && w.statement == 1 && w.resource == 2);
    VT_CHECK(!chk(s, VG_POLICY_RECEIVE, "$SYS/vigil/stats", NULL));
    VT_CHECK(chk(s, VG_POLICY_RECEIVE, "alerts/x", NULL));
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "$SYS/x", NULL));

    char out[512];
    VT_CHECK(!vg_policy_explain(s, VG_POLICY_SUBSCRIBE, "$SYS/#", 6, NULL, out, sizeof out));
    VT_CHECK(strcmp(out, "DENY mqtt:Subscribe \"$SYS/#\": policy \"no-sys\" statement 2 denies it (resource "
                         "\"topicfilter/$SYS/*\")") == 0);
    VT_CHECK(vg_policy_explain(s, VG_POLICY_CONNECT, "a", 1, NULL, out, sizeof out));
    VT_CHECK(strcmp(out, "ALLOW mqtt:Connect \"a\": policy \"allow-all\" statement 1 (\"all\") allows it (resource "
                         "\"*\")") == 0);
    vg_policy_set_t *empty = NULL;
    VT_REQUIRE(vg_policy_set_new(NULL, 0, &empty) == VG_OK);
    VT_CHECK(!vg_policy_explain(empty, VG_POLICY_PUBLISH, "a\n", 2, NULL, out, sizeof out));
    VT_CHECK(strcmp(out, "DENY mqtt:Publish \"a\\x0a\": no statement of 0 policies allows it") == 0);
    VT_CHECK(!vg_policy_explain(empty, VG_POLICY_PUBLISH, "a", 1, NULL, out, 10));
    VT_EQ_INT(strlen(out), 9);

    /* Shared: a reference outlives the creator's. */
    vg_policy_set_t *r = vg_policy_set_ref(s);
    vg_policy_set_unref(s);
    VT_CHECK(chk(r, VG_POLICY_CONNECT, "a", NULL));
    vg_policy_set_unref(r);
    vg_policy_set_unref(empty);

    vg_policy_doc_t *many[VG_POLICY_MAX_SET_DOCS + 1] = {0};
    VT_EQ_INT(vg_policy_set_new(many, VG_POLICY_MAX_SET_DOCS + 1, &s), VG_ETOOBIG);
}

static void test_cache(void)
{
    vg_policy_set_t *s = set1(example), *t = allow1("mqtt:*", "*");
    VT_REQUIRE(s && t);
    vg_policy_vars_t v = {.clientid = S("dev-1")};
    vg_policy_cache_t c;
    vg_policy_cache_reset(&c);
    static const char *const topics[] = {"devices/dev-1/telemetry", "devices/dev-2/telemetry", "alerts/dev-1", "x"};
    for (int round = 0; round < 3; round++)
        for (int a = 0; a < VG_POLICY__ACTIONS; a++)
            for (int i = 0; i < 4; i++) {
                vg_policy_why_t w1, w2;
                bool r1 = vg_policy_cache_check(&c, s, (vg_policy_action_t)a, topics[i], strlen(topics[i]), &v, &w1);
                bool r2 = vg_policy_check(s, (vg_policy_action_t)a, topics[i], strlen(topics[i]), &v, &w2);
                VT_CHECK(r1 == r2 && w1.effect == w2.effect && w1.doc == w2.doc && w1.statement == w2.statement &&
                         w1.resource == w2.resource);
            }
    /* 20 keys through 8 entries round robin: every lookup misses. */
    VT_EQ_INT(c.hits, 0);
    vg_policy_cache_reset(&c);
    for (int i = 0; i < 10; i++)
        vg_policy_cache_check(&c, s, VG_POLICY_PUBLISH, topics[i % 2], strlen(topics[i % 2]), &v, NULL);
    VT_EQ_INT(c.misses, 2);
    VT_EQ_INT(c.hits, 8);
    /* Another set empties it first. */
    VT_CHECK(vg_policy_cache_check(&c, t, VG_POLICY_PUBLISH, topics[1], strlen(topics[1]), &v, NULL));
    VT_EQ_INT(c.hits, 0);
    VT_CHECK(!vg_policy_cache_check(&c, s, VG_POLICY_PUBLISH, topics[1], strlen(topics[1]), &v, NULL));
    /* Longer than the key: checked every time, not stored. */
    char longt[VG_POLICY_CACHE_KEY + 2];
    memset(longt, 'a', sizeof longt);
    for (int i = 0; i < 3; i++)
        VT_CHECK(vg_policy_cache_check(&c, t, VG_POLICY_PUBLISH, longt, sizeof longt, &v, NULL));
    VT_EQ_INT(c.hits, 0);
    VT_EQ_INT(c.misses, 0);
    vg_policy_set_unref(s);
    vg_policy_set_unref(t);
}

static void test_builtins(void)
{
    vg_policy_doc_t *dev = NULL, *op = NULL;
    char err[256];
    VT_REQUIRE(vg_policy_default_device("iot/wearable/data", &dev, err, sizeof err) == VG_OK);
    VT_REQUIRE(vg_policy_operator_role("vigil/alerts/ack", &op, err, sizeof err) == VG_OK);
    VT_CHECK(strcmp(vg_policy_doc_name(dev), VG_POLICY_BUILTIN_DEVICE) == 0);
    VT_CHECK(vg_policy_doc_attached(dev, VG_POLICY_ATTACH_ROLE, "device", 6));
    VT_CHECK(!vg_policy_doc_attached(dev, VG_POLICY_ATTACH_GROUP, "device", 6));
    VT_CHECK(vg_policy_doc_attached(op, VG_POLICY_ATTACH_ROLE, "operator", 8));

    vg_policy_set_t *s = NULL, *o = NULL;
    VT_REQUIRE(vg_policy_set_new(&dev, 1, &s) == VG_OK && vg_policy_set_new(&op, 1, &o) == VG_OK);
    vg_policy_vars_t d = {.clientid = S("dev-7"), .username = S("dev-7")};
    VT_CHECK(chk(s, VG_POLICY_CONNECT, "dev-7", &d));
    VT_CHECK(!chk(s, VG_POLICY_CONNECT, "dev-8", &d));
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "devices/dev-7/telemetry", &d));
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "iot/wearable/data", &d));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "devices/dev-8/telemetry", &d));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "vigil/alerts/ack", &d));
    VT_CHECK(!chk(s, VG_POLICY_RETAIN, "iot/wearable/data", &d));
    VT_CHECK(chk(s, VG_POLICY_SUBSCRIBE, "alerts/dev-7", &d));
    VT_CHECK(!chk(s, VG_POLICY_SUBSCRIBE, "alerts/#", &d));
    VT_CHECK(!chk(s, VG_POLICY_SUBSCRIBE, "alerts/+", &d));
    VT_CHECK(chk(s, VG_POLICY_RECEIVE, "alerts/dev-7", &d));
    VT_CHECK(!chk(s, VG_POLICY_RECEIVE, "alerts/dev-8", &d));
    VT_CHECK(!chk(s, VG_POLICY_SUBSCRIBE, "$SYS/#", &d));

    vg_policy_vars_t u = {.clientid = S("alice"), .username = S("alice")};
    VT_CHECK(chk(o, VG_POLICY_CONNECT, "alice", &u));
    VT_CHECK(!chk(o, VG_POLICY_CONNECT, "dev-7", &u));
    VT_CHECK(chk(o, VG_POLICY_SUBSCRIBE, "alerts/#", &u));
    VT_CHECK(chk(o, VG_POLICY_SUBSCRIBE, "alerts/+", &u));
    VT_CHECK(chk(o, VG_POLICY_SUBSCRIBE, "alerts/dev-7", &u));
    VT_CHECK(chk(o, VG_POLICY_SUBSCRIBE, "$SYS/#", &u));
    VT_CHECK(chk(o, VG_POLICY_SUBSCRIBE, "vigil/alerts/ack/result", &u));
    VT_CHECK(!chk(o, VG_POLICY_SUBSCRIBE, "#", &u));
    VT_CHECK(!chk(o, VG_POLICY_SUBSCRIBE, "devices/+/telemetry", &u));
    VT_CHECK(chk(o, VG_POLICY_RECEIVE, "alerts/dev-7", &u));
    VT_CHECK(chk(o, VG_POLICY_RECEIVE, "vigil/alerts/ack/result", &u));
    VT_CHECK(chk(o, VG_POLICY_RECEIVE, "$SYS/vigil/stats", &u));
    VT_CHECK(!chk(o, VG_POLICY_RECEIVE, "devices/dev-7/telemetry", &u));
    VT_CHECK(chk(o, VG_POLICY_PUBLISH, "vigil/alerts/ack", &u));
    VT_CHECK(!chk(o, VG_POLICY_PUBLISH, "alerts/dev-7", &u));
    VT_CHECK(!chk(o, VG_POLICY_PUBLISH, "iot/wearable/data", &u));
    vg_policy_set_unref(s);
    vg_policy_set_unref(o);
    vg_policy_doc_unref(dev);
    vg_policy_doc_unref(op);

    /* Another telemetry topic; bad topics. */
    VT_REQUIRE(vg_policy_default_device("tele\"m", &dev, err, sizeof err) == VG_OK);
    VT_REQUIRE(vg_policy_set_new(&dev, 1, &s) == VG_OK);
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "tele\"m", &d));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "iot/wearable/data", &d));
    vg_policy_set_unref(s);
    vg_policy_doc_unref(dev);
    VT_EQ_INT(vg_policy_default_device("a/#", &dev, err, sizeof err), VG_EINVAL);
    VT_CHECK(dev == NULL && strstr(err, "telemetry topic must not contain"));
    VT_EQ_INT(vg_policy_default_device("a/*", &dev, err, sizeof err), VG_EINVAL);
    VT_EQ_INT(vg_policy_operator_role("a/${clientid}", &op, err, sizeof err), VG_EINVAL);
    VT_EQ_INT(vg_policy_operator_role("", &op, err, sizeof err), VG_EINVAL);
}

static void test_actions(void)
{
    vg_policy_action_t a;
    VT_EQ_INT(vg_policy_action_parse("mqtt:Receive", &a), VG_OK);
    VT_EQ_INT(a, VG_POLICY_RECEIVE);
    VT_EQ_INT(vg_policy_action_parse("subscribe", &a), VG_OK);
    VT_EQ_INT(a, VG_POLICY_SUBSCRIBE);
    VT_EQ_INT(vg_policy_action_parse("mqtt:*", &a), VG_EINVAL);
    VT_EQ_INT(vg_policy_action_parse(NULL, &a), VG_EINVAL);
    VT_CHECK(strcmp(vg_policy_action_name(VG_POLICY_RETAIN), "mqtt:Retain") == 0);
    VT_CHECK(strcmp(vg_policy_action_name(VG_POLICY__ACTIONS), "?") == 0);
}

/* The check path allocates nothing: an injected failure stays pending. */
static void test_no_alloc(void)
{
    vg_policy_set_t *s = set1(example);
    VT_REQUIRE(s);
    vg_policy_vars_t v = {.clientid = S("dev-1")};
    vg_policy_cache_t c = {0};
    char out[256];
    vg_mem_fail_after(0);
    for (int i = 0; i < 100; i++) {
        VT_CHECK(chk(s, VG_POLICY_PUBLISH, "devices/dev-1/telemetry", &v));
        VT_CHECK(vg_policy_cache_check(&c, s, VG_POLICY_RECEIVE, "alerts/dev-1", 12, &v, NULL));
        VT_CHECK(!vg_policy_explain(s, VG_POLICY_RETAIN, "a", 1, &v, out, sizeof out));
    }
    void *p = vg_malloc(VG_MEM_SEC, 1);
    VT_CHECK(p == NULL); /* the failure was still armed */
    vg_mem_fail_after(-1);
    vg_free(p);
    vg_policy_set_unref(s);
}

static void test_alloc_failures(void)
{
    size_t used = vg_mem_used(VG_MEM_SEC);
    int failures = 0;
    for (long n = 0; n < 10; n++) {
        vg_policy_doc_t *d = NULL;
        vg_policy_set_t *s = NULL;
        vg_mem_fail_after(n);
        int rc = vg_policy_parse("x", example, strlen(example), &d, NULL, 0);
        if (rc == VG_OK)
            rc = vg_policy_set_new(&d, 1, &s);
        vg_mem_fail_after(-1);
        if (rc != VG_OK) {
            VT_EQ_INT(rc, VG_ENOMEM);
            failures++;
        } else {
            VT_CHECK(chk(s, VG_POLICY_RETAIN, "a", NULL) == false);
        }
        vg_policy_set_unref(s);
        vg_policy_doc_unref(d);
        VT_EQ_INT(vg_mem_used(VG_MEM_SEC), used);
    }
    VT_EQ_INT(failures, 2); /* the document's block, the set's block */
}

static double ns_per(uint64_t t0, long n)
{
    return (double)(vg_clock_mono_ns() - t0) / (double)n;
}

static void test_bench(void)
{
    vg_policy_doc_t *dev = NULL, *op = NULL;
    VT_REQUIRE(vg_policy_default_device("iot/wearable/data", &dev, NULL, 0) == VG_OK);
    VT_REQUIRE(vg_policy_operator_role("vigil/alerts/ack", &op, NULL, 0) == VG_OK);
    vg_policy_set_t *s = NULL, *o = NULL, *big = NULL;
    VT_REQUIRE(vg_policy_set_new(&dev, 1, &s) == VG_OK && vg_policy_set_new(&op, 1, &o) == VG_OK);
    /* A larger principal: the device policy plus 64 Deny statements with
     * stars and variables, each of which a publish has to try. */
    static char text[16384];
    size_t off = (size_t)snprintf(text, sizeof text, "{\"Version\":\"2012-10-17\",\"Statement\":[");
    for (int i = 0; i < VG_POLICY_MAX_STATEMENTS; i++)
        off += (size_t)snprintf(text + off, sizeof text - off,
                                "%s{\"Effect\":\"Deny\",\"Action\":\"mqtt:*\",\"Resource\":"
                                "[\"topic/*/${clientid}/blocked%d\",\"topicfilter/q%d/*\"]}",
                                i ? "," : "", i, i);
    snprintf(text + off, sizeof text - off, "]}");
    vg_policy_doc_t *denies = parse("denies", text), *both[2] = {dev, denies};
    VT_REQUIRE(denies && vg_policy_set_new(both, 2, &big) == VG_OK);
    vg_policy_doc_unref(denies);
    vg_policy_vars_t v = {.clientid = S("dev-000123"), .username = S("dev-000123")};
    vg_policy_vars_t u = {.clientid = S("alice"), .username = S("alice")};
    const char *t1 = "devices/dev-000123/telemetry", *t2 = "iot/wearable/data", *t3 = "devices/dev-000124/telemetry";
    const char *t4 = "alerts/dev-000123";
    const long n = 2000000;
    volatile int sink = 0;
    struct {
        const char *what;
        const vg_policy_set_t *set;
        vg_policy_action_t a;
        const char *t;
        const vg_policy_vars_t *v;
        bool cached;
    } cases[] = {
        {"device publish devices/<id>/telemetry (allow, variable)", s, VG_POLICY_PUBLISH, t1, &v, false},
        {"device publish iot/wearable/data (allow, 2nd resource)", s, VG_POLICY_PUBLISH, t2, &v, false},
        {"device publish another device's topic (default deny)", s, VG_POLICY_PUBLISH, t3, &v, false},
        {"operator receive alerts/<id> (allow, star)", o, VG_POLICY_RECEIVE, t4, &u, false},
        {"device publish devices/<id>/telemetry via the cache (hit)", s, VG_POLICY_PUBLISH, t1, &v, true},
        {"64 Deny statements + device policy: publish telemetry (allow)", big, VG_POLICY_PUBLISH, t1, &v, false},
        {"64 Deny statements + device policy: the same via the cache (hit)", big, VG_POLICY_PUBLISH, t1, &v, true},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vg_policy_cache_t c = {0};
        size_t len = strlen(cases[k].t);
        uint64_t t0 = vg_clock_mono_ns();
        for (long i = 0; i < n; i++)
            sink += cases[k].cached
                        ? vg_policy_cache_check(&c, cases[k].set, cases[k].a, cases[k].t, len, cases[k].v, NULL)
                        : vg_policy_check(cases[k].set, cases[k].a, cases[k].t, len, cases[k].v, NULL);
        fprintf(stdout, "# bench: %.1f ns/check  %s\n", ns_per(t0, n), cases[k].what);
    }
    VT_CHECK(sink == 6 * (int)n);
    vg_policy_set_unref(big);
    vg_policy_set_unref(s);
    vg_policy_set_unref(o);
    vg_policy_doc_unref(dev);
    vg_policy_doc_unref(op);
}

int main(void)
{
    VT_RUN(test_example);
    VT_RUN(test_errors);
    VT_RUN(test_limits);
    VT_RUN(test_patterns);
    VT_RUN(test_variables);
    VT_RUN(test_deny_wins_and_explain);
    VT_RUN(test_cache);
    VT_RUN(test_builtins);
    VT_RUN(test_actions);
    VT_RUN(test_no_alloc);
    VT_RUN(test_alloc_failures);
    VT_RUN(test_bench);
    return VT_DONE();
}
