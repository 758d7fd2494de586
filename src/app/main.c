/* main.c — the vigil binary: dispatches subcommands. */
#include "alert/webhook.h"
#include "app/policycmd.h"
#include "app/detectcfg.h"
#include "app/devicecmd.h"
#include "app/serve.h"
#include "app/streamcmd.h"
#include "core/err.h"
#include "eval/eval.h"
#include "sim/sim.h"

#include <stdio.h>
#include <string.h>

#define VIGIL_VERSION "0.1.0"

static void usage(FILE *out)
{
    fprintf(out,
            "vigil %s — real-time pipeline for health-wearable telemetry\n\n"
            "usage: vigil <command> [options]\n\n"
            "commands:\n"
            "  serve    run the pipeline: MQTT gateway, durable stream, detection, alerts\n"
            "  sim      simulate a fleet of wearables against a server and report latency and detection\n"
            "  eval     detection quality: a labelled fleet or a recording through the real pipeline\n"
            "  stream   inspect streams on disk: 'stream ls', 'stream tail NAME'\n"
            "  ca       the local certificate authority: 'ca init', 'ca register FILE', 'ca list'\n"
            "  device   provision and manage devices: 'device create ID', 'device create --count N',\n"
            "           'device list', 'device show ID', 'device revoke ID', 'device delete ID', 'device passwd ID'\n"
            "  token    'token create --role operator|device [--name N]': a bearer token, shown once\n"
                 "  policy   'policy list', 'policy test --device ID --action publish --topic T': explain a decision\n"
            "  version  print the version\n\n"
            "'vigil <command> --help' describes each command's options.\n",
            VIGIL_VERSION);
}

/* eval reads a detector config file the way serve does; the reader lives
 * here in app, so eval gets it as a function and does not depend on app. */
static int eval_load_detect(const char *path, vg_detect_cfg_t *out, FILE *err)
{
    vg_detectcfg_t d;
    vg_detectcfg_init(&d);
    int rc = vg_detectcfg_load(&d, path, NULL, 0, err);
    if (rc == VG_OK)
        *out = d.global;
    vg_detectcfg_free(&d);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0) {
        /* libcurl (webhook delivery) is initialised once, here, before any
         * thread exists: curl_global_init is not safe to race. */
        if (vg_webhook_global_init() != 0)
            return 1;
        int rc = vg_serve_main(argc - 1, argv + 1);
        vg_webhook_global_cleanup();
        return rc;
    }
    if (strcmp(cmd, "sim") == 0)
        return vg_sim_main(argc - 1, argv + 1);
    if (strcmp(cmd, "stream") == 0)
        return vg_streamcmd_main(argc - 1, argv + 1);
    if (strcmp(cmd, "ca") == 0 || strcmp(cmd, "device") == 0 || strcmp(cmd, "token") == 0)
        return vg_devicecmd_main(argc - 1, argv + 1);
    if (strcmp(cmd, "policy") == 0)
        return vg_policycmd_main(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0)
        return vg_eval_main(argc - 1, argv + 1, eval_load_detect);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("vigil %s\n", VIGIL_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "vigil: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
