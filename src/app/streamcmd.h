/* streamcmd.h — the `vigil stream` subcommand. */
#ifndef VG_APP_STREAMCMD_H
#define VG_APP_STREAMCMD_H

/* argv[0] is "stream". Returns the process exit code. */
int vg_streamcmd_main(int argc, char **argv);

#endif
