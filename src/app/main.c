/* main.c — the vigil binary: dispatches subcommands. */
#include "app/serve.h"
#include "app/streamcmd.h"
#include "sim/sim.h"

#include <stdio.h>
#include <string.h>

#define VIGIL_VERSION "0.1.0"

static void usage(FILE *out)
{
    fprintf(out, "vigil %s — real-time pipeline for health-wearable telemetry\n\n"
                 "usage: vigil <command> [options]\n\n"
                 "commands:\n"
                 "  serve    run the pipeline: MQTT gateway, durable stream, detection, alerts\n"
                 "  sim      simulate a fleet of wearables against a server and report latency and detection\n"
                 "  stream   inspect streams on disk: 'stream ls', 'stream tail NAME'\n"
                 "  version  print the version\n\n"
                 "'vigil <command> --help' describes each command's options.\n",
            VIGIL_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return vg_serve_main(argc - 1, argv + 1);
    if (strcmp(cmd, "sim") == 0)
        return vg_sim_main(argc - 1, argv + 1);
    if (strcmp(cmd, "stream") == 0)
        return vg_streamcmd_main(argc - 1, argv + 1);
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
