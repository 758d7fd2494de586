/* test_policystore.c — sec/policystore: built-ins, loading a directory
 * (order, replacement of a built-in, skipped files, a missing directory),
 * a bad file failing the whole load with the store unchanged, attachment
 * by role, group and device, each document once, and sets by name. */
#include "core/alloc.h"
#include "core/err.h"
#include "sec/policystore.h"
#include "vt.h"

#include <unistd.h>

#define S(lit) ((vg_policy_str_t){lit, sizeof(lit) - 1})

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

#define ST(eff, act, res) "{\"Effect\":\"" eff "\",\"Action\":\"" act "\",\"Resource\":\"" res "\"}"
#define DOC(st, attach) "{\"Version\":\"2012-10-17\",\"Statement\":[" st "],\"Attach\":" attach "}"

static bool chk(const vg_policy_set_t *s, vg_policy_action_t a, const char *res, const vg_policy_vars_t *v)
{
    return vg_policy_check(s, a, res, strlen(res), v, NULL);
}

static void test_builtins_and_principals(void)
{
    vg_policystore_t *st = NULL;
    char err[512];
    VT_REQUIRE(vg_policystore_new(&st) == VG_OK);
    VT_REQUIRE(vg_policystore_add_builtins(st, "iot/wearable/data", "vigil/alerts/ack", err, sizeof err) == VG_OK);
    VT_EQ_INT(vg_policystore_count(st), 2);
    VT_CHECK(vg_policystore_find(st, VG_POLICY_BUILTIN_DEVICE) == vg_policystore_doc(st, 0));
    VT_CHECK(vg_policystore_find(st, "nope") == NULL);

    vg_policy_set_t *s = NULL;
    vg_policy_principal_t dev = {.role = "device", .device = "dev-1"};
    VT_REQUIRE(vg_policystore_set_for(st, &dev, &s) == VG_OK);
    VT_EQ_INT(vg_policy_set_docs(s), 1);
    vg_policy_vars_t v = {.clientid = S("dev-1")};
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "iot/wearable/data", &v));
    vg_policy_set_unref(s);

    /* Nobody attached: an empty set that denies. */
    vg_policy_principal_t nobody = {.role = "visitor"};
    VT_REQUIRE(vg_policystore_set_for(st, &nobody, &s) == VG_OK);
    VT_EQ_INT(vg_policy_set_docs(s), 0);
    VT_CHECK(!chk(s, VG_POLICY_CONNECT, "x", &v));
    vg_policy_set_unref(s);

    /* Bad topics fail without adding anything. */
    VT_EQ_INT(vg_policystore_add_builtins(st, "a/#", "b", err, sizeof err), VG_EINVAL);
    VT_EQ_INT(vg_policystore_count(st), 2);
    vg_policystore_free(st);
    vg_policystore_free(NULL);
}

static void test_load_dir(void)
{
    char *dir = vt_tmpdir_new("policystore");
    VT_REQUIRE(dir);
    char err[512];
    vg_policystore_t *st = NULL;
    size_t loaded = 99;
    VT_REQUIRE(vg_policystore_new(&st) == VG_OK);
    VT_REQUIRE(vg_policystore_add_builtins(st, "iot/wearable/data", "vigil/alerts/ack", err, sizeof err) == VG_OK);

    /* A missing directory is an empty one. */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/none", dir);
    VT_EQ_INT(vg_policystore_load_dir(st, missing, &loaded, err, sizeof err), VG_OK);
    VT_EQ_INT(loaded, 0);

    VT_REQUIRE(write_file(dir, "ward-3.json",
                          DOC(ST("Allow", "mqtt:Subscribe", "topicfilter/wards/3/*") "," ST("Allow", "mqtt:Receive",
                                                                                            "topic/wards/3/*"),
                              "{\"groups\":[\"ward-3\"]}")) == 0);
    VT_REQUIRE(write_file(dir, "quarantine.json",
                          DOC(ST("Deny", "mqtt:Publish", "topic/*"),
                              "{\"devices\":[\"dev-9\"],\"groups\":[\"ward-3\"]}")) == 0);
    /* Replaces the built-in device policy: publish only on devices/<id>/telemetry. */
    VT_REQUIRE(write_file(dir, "vigil-device.json",
                          DOC(ST("Allow", "mqtt:Connect", "client/${clientid}") "," ST(
                                  "Allow", "mqtt:Publish", "topic/devices/${clientid}/telemetry"),
                              "{\"roles\":[\"device\"]}")) == 0);
    VT_REQUIRE(write_file(dir, ".hidden.json", "not json") == 0);
    VT_REQUIRE(write_file(dir, "README.txt", "not a policy") == 0);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/sub.json", dir);
    VT_REQUIRE(mkdir(sub, 0755) == 0); /* not a regular file: skipped */

    VT_EQ_INT(vg_policystore_load_dir(st, dir, &loaded, err, sizeof err), VG_OK);
    VT_EQ_INT(loaded, 3);
    VT_EQ_INT(vg_policystore_count(st), 4);
    /* The replacement keeps the built-in's place; new files follow in name order. */
    VT_CHECK(strcmp(vg_policy_doc_name(vg_policystore_doc(st, 0)), "vigil-device") == 0);
    VT_CHECK(strcmp(vg_policy_doc_name(vg_policystore_doc(st, 2)), "quarantine") == 0);
    VT_CHECK(strcmp(vg_policy_doc_name(vg_policystore_doc(st, 3)), "ward-3") == 0);

    const char *groups[] = {"ward-3", "ward-3", "icu"};
    vg_policy_principal_t p = {.role = "device", .groups = groups, .n_groups = 3, .device = "dev-1"};
    vg_policy_set_t *s = NULL;
    VT_REQUIRE(vg_policystore_set_for(st, &p, &s) == VG_OK);
    VT_EQ_INT(vg_policy_set_docs(s), 3); /* role, then ward-3's two, each once */
    VT_CHECK(strcmp(vg_policy_doc_name(vg_policy_set_doc(s, 0)), "vigil-device") == 0);
    vg_policy_vars_t v = {.clientid = S("dev-1")};
    VT_CHECK(chk(s, VG_POLICY_SUBSCRIBE, "wards/3/#", &v));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "devices/dev-1/telemetry", &v)); /* the group's quarantine denies */
    vg_policy_set_unref(s);

    vg_policy_principal_t q = {.role = "device", .device = "dev-9"};
    VT_REQUIRE(vg_policystore_set_for(st, &q, &s) == VG_OK);
    vg_policy_vars_t v9 = {.clientid = S("dev-9")};
    VT_CHECK(chk(s, VG_POLICY_CONNECT, "dev-9", &v9));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "devices/dev-9/telemetry", &v9));
    vg_policy_set_unref(s);
    vg_policy_principal_t d2 = {.role = "device", .device = "dev-2"};
    VT_REQUIRE(vg_policystore_set_for(st, &d2, &s) == VG_OK);
    vg_policy_vars_t v2 = {.clientid = S("dev-2")};
    VT_CHECK(chk(s, VG_POLICY_PUBLISH, "devices/dev-2/telemetry", &v2));
    VT_CHECK(!chk(s, VG_POLICY_PUBLISH, "iot/wearable/data", &v2)); /* the replacement dropped it */
    vg_policy_set_unref(s);

    /* Sets by name. */
    const char *names[] = {"ward-3", "vigil-operator"};
    VT_REQUIRE(vg_policystore_set_of(st, names, 2, &s) == VG_OK);
    VT_EQ_INT(vg_policy_set_docs(s), 2);
    const char *bad[] = {"ward-3", "nope"};
    vg_policy_set_t *s2 = (vg_policy_set_t *)1;
    VT_EQ_INT(vg_policystore_set_of(st, bad, 2, &s2), VG_ENOTFOUND);
    VT_CHECK(s2 == NULL);

    /* A bad file fails the whole load and changes nothing; the set built
     * before stays valid after the store is gone. */
    VT_REQUIRE(write_file(dir, "aaa.json", DOC(ST("Allow", "mqtt:Connect", "client/a"), "{}")) == 0);
    VT_REQUIRE(write_file(dir, "broken.json", DOC(ST("Allow", "mqtt:Pub", "topic/a"), "{}")) == 0);
    VT_EQ_INT(vg_policystore_load_dir(st, dir, &loaded, err, sizeof err), VG_EMALFORMED);
    VT_EQ_INT(loaded, 0);
    char want[700];
    snprintf(want, sizeof want, "%s/broken.json: policy broken: statement 1: unknown action \"mqtt:Pub\"", dir);
    VT_CHECK(strcmp(err, want) == 0);
    VT_EQ_INT(vg_policystore_count(st), 4);
    VT_CHECK(vg_policystore_find(st, "aaa") == NULL);
    unlink(strcat(strcpy(want, dir), "/broken.json"));

    VT_REQUIRE(write_file(dir, "bad name.json", DOC(ST("Allow", "mqtt:Connect", "client/a"), "{}")) == 0);
    VT_EQ_INT(vg_policystore_load_dir(st, dir, &loaded, err, sizeof err), VG_EINVAL);
    VT_CHECK(strstr(err, "a policy name is") != NULL);
    unlink(strcat(strcpy(want, dir), "/bad name.json"));

    vg_policystore_free(st);
    VT_CHECK(chk(s, VG_POLICY_RECEIVE, "wards/3/x", &v));
    vg_policy_set_unref(s);
    vt_tmpdir_free(dir);
}

static void test_alloc_failures(void)
{
    char *dir = vt_tmpdir_new("policystore-oom");
    VT_REQUIRE(dir);
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "p%d.json", i);
        VT_REQUIRE(write_file(dir, name, DOC(ST("Allow", "mqtt:Connect", "client/a"), "{\"roles\":[\"r\"]}")) == 0);
    }
    size_t used = vg_mem_used(VG_MEM_SEC);
    int ok = 0;
    for (long n = 0; n < 40; n++) {
        vg_policystore_t *st = NULL;
        vg_policy_set_t *s = NULL;
        char err[256];
        size_t loaded = 0;
        vg_mem_fail_after(n);
        int rc = vg_policystore_new(&st);
        if (rc == VG_OK)
            rc = vg_policystore_add_builtins(st, "t", "a", err, sizeof err);
        if (rc == VG_OK)
            rc = vg_policystore_load_dir(st, dir, &loaded, err, sizeof err);
        vg_policy_principal_t p = {.role = "r"};
        if (rc == VG_OK)
            rc = vg_policystore_set_for(st, &p, &s);
        vg_mem_fail_after(-1);
        if (rc == VG_OK) {
            ok++;
            VT_EQ_INT(loaded, 5);
            VT_EQ_INT(vg_policy_set_docs(s), 5);
        } else {
            VT_EQ_INT(rc, VG_ENOMEM);
            /* A failed step added nothing: none, the built-ins, or all (set_for failed). */
            size_t c = st ? vg_policystore_count(st) : 0;
            VT_CHECK(c == 0 || c == 2 || c == 7);
        }
        vg_policy_set_unref(s);
        vg_policystore_free(st);
        VT_EQ_INT(vg_mem_used(VG_MEM_SEC), used);
    }
    VT_CHECK(ok > 0);
    vt_tmpdir_free(dir);
}

int main(void)
{
    VT_RUN(test_builtins_and_principals);
    VT_RUN(test_load_dir);
    VT_RUN(test_alloc_failures);
    return VT_DONE();
}
