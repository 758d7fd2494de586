/* serve.h — the `vigil serve` subcommand. */
#ifndef VG_APP_SERVE_H
#define VG_APP_SERVE_H

/* argv[0] is "serve". Returns the process exit code. */
int vg_serve_main(int argc, char **argv);

#endif
