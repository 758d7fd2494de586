/* policycmd.c — `vigil policy`: what the server's policies say.
 *
 *   vigil policy list                      the documents (built-in and DATA/policies/ *.json)
 *   vigil policy show NAME                 one document's statements count and attachments
 *   vigil policy test (--device ID | --operator NAME) --action A --topic T [--client-id C]
 *                                          the decision for that principal, and what decided it
 *
 * It builds the principal exactly as the server does (app/principal: the
 * registry's groups and attributes of the device, the role's, groups' and
 * device's documents) and explains the decision with vg_policy_explain.
 * Reads the registry and the policy files; writes nothing. */
#include "app/policycmd.h"

#include "app/config.h"
#include "app/principal.h"
#include "app/security.h"
#include "core/err.h"
#include "sec/policystore.h"
#include "sec/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: vigil policy list\n"
                 "       vigil policy test (--device ID | --operator NAME) --action ACTION --topic T [--client-id C]\n"
                 "every command takes --data-dir DIR (default ./data) and --config FILE (as vigil serve: the\n"
                 "telemetry and control topics of the built-in policies)\n"
                 "ACTION: connect | publish | subscribe | receive | retain; for connect, T is the client id,\n"
                 "for subscribe the topic filter as a client would send it\n");
}

int vg_policycmd_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    vg_config_t *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return 1;
    vg_config_default(cfg);
    const char *device = NULL, *oper = NULL, *action = NULL, *topic = NULL, *client_id = NULL;
    int code = 2;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "vigil policy: %s needs a value\n", a);
            goto done;
        }
        i++;
        if (!strcmp(a, "--data-dir"))
            snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", v);
        else if (!strcmp(a, "--config")) {
            if (vg_config_load_file(cfg, v, stderr) != VG_OK)
                goto done;
        } else if (!strcmp(a, "--device"))
            device = v;
        else if (!strcmp(a, "--operator"))
            oper = v;
        else if (!strcmp(a, "--action"))
            action = v;
        else if (!strcmp(a, "--topic"))
            topic = v;
        else if (!strcmp(a, "--client-id"))
            client_id = v;
        else {
            fprintf(stderr, "vigil policy: unknown option %s\n", a);
            goto done;
        }
    }
    char err[512];
    vg_policystore_t *st = NULL;
    if (vg_security_load_policies(cfg, &st, err, sizeof err) != VG_OK) {
        fprintf(stderr, "vigil policy: %s\n", err);
        code = 1;
        goto done;
    }
    if (!strcmp(sub, "list")) {
        for (size_t i = 0; i < vg_policystore_count(st); i++) {
            const vg_policy_doc_t *d = vg_policystore_doc(st, i);
            printf("%s\t%zu statements\n", vg_policy_doc_name(d), vg_policy_doc_statements(d));
        }
        code = 0;
        goto free_store;
    }
    if (strcmp(sub, "test") != 0) {
        usage(stderr);
        goto free_store;
    }
    vg_policy_action_t act;
    if ((!device == !oper) || !action || !topic || vg_policy_action_parse(action, &act) != VG_OK) {
        usage(stderr);
        goto free_store;
    }
    vg_registry_t *reg = NULL;
    vg_registry_device_t *dev = NULL;
    if (device) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/%s", cfg->data_dir, VG_REGISTRY_FILE);
        dev = calloc(1, sizeof *dev);
        if (!dev || vg_registry_open(path, NULL, &reg) != VG_OK) {
            fprintf(stderr, "vigil policy: cannot open the registry %s\n", path);
            code = 1;
            goto free_reg;
        }
        if (vg_registry_device_get(reg, device, strlen(device), dev) != VG_OK) {
            fprintf(stderr, "vigil policy: no device %s in the registry\n", device);
            code = 1;
            goto free_reg;
        }
        if (dev->status != VG_REG_ACTIVE)
            printf("note: device %s is %s: it cannot connect at all\n", device, vg_registry_status_name(dev->status));
    }
    const char *name = device ? device : oper;
    const char *cid = client_id ? client_id : name;
    vg_principal_t *p = NULL;
    int rc = vg_principal_new(st, device ? VG_PRINCIPAL_DEVICE : VG_PRINCIPAL_OPERATOR, name, strlen(name), cid,
                              strlen(cid), oper, oper ? strlen(oper) : 0, NULL, 0, dev, "cli", &p);
    if (rc != VG_OK) {
        fprintf(stderr, "vigil policy: cannot build the principal: %s\n", vg_strerror(rc));
        code = 1;
        goto free_reg;
    }
    char line[1024];
    bool ok = vg_policy_explain(p->set, act, topic, strlen(topic), &p->vars, line, sizeof line);
    printf("%s\n", line);
    if (device && cid != name && strcmp(cid, name) != 0)
        printf("note: a device must connect with its own id as client id (%s), the server refuses %s\n", name, cid);
    code = ok ? 0 : 3;
    vg_principal_free(p);
free_reg:
    free(dev);
    vg_registry_close(reg);
free_store:
    vg_policystore_free(st);
done:
    free(cfg);
    return code;
}
