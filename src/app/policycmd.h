/* policycmd.h — `vigil policy list | test`: see policycmd.c. Exit status of
 * test: 0 allowed, 3 denied, 1 error, 2 usage. */
#ifndef VG_APP_POLICYCMD_H
#define VG_APP_POLICYCMD_H

int vg_policycmd_main(int argc, char **argv);

#endif
