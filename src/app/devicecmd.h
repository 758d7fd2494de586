/* devicecmd.h — the `vigil ca`, `vigil device` and `vigil token` commands:
 * the local CA and the server certificate, device provisioning and the
 * registry's devices, CAs and credentials (sec/pki.h, sec/registry.h). */
#ifndef VG_APP_DEVICECMD_H
#define VG_APP_DEVICECMD_H

/* argv[0] is "ca", "device" or "token". Returns the process exit code:
 * 0 done, 1 the operation failed (explained on stderr), 2 bad usage. */
int vg_devicecmd_main(int argc, char **argv);

#endif
