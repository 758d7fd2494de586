/* diag.h — the diagnostic log: timestamped lines on stderr.
 *
 * The level is chosen once at start-up (vg_diag_set_level) before threads
 * start and only read afterwards. Lines are written with one write(2) so that
 * lines from different threads never interleave. */
#ifndef VG_CORE_DIAG_H
#define VG_CORE_DIAG_H

enum { VG_LOG_ERROR = 0, VG_LOG_WARN = 1, VG_LOG_INFO = 2, VG_LOG_DEBUG = 3 };

void vg_diag_set_level(int level);
int vg_diag_level(void);
/* Parses "error|warn|info|debug"; returns VG_EINVAL if unknown. */
int vg_diag_parse_level(const char *s, int *level);
void vg_diag(int level, const char *module, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define VG_ERROR(mod, ...) vg_diag(VG_LOG_ERROR, mod, __VA_ARGS__)
#define VG_WARN(mod, ...) vg_diag(VG_LOG_WARN, mod, __VA_ARGS__)
#define VG_INFO(mod, ...) vg_diag(VG_LOG_INFO, mod, __VA_ARGS__)
#define VG_DEBUG(mod, ...)                                                                                             \
    do {                                                                                                               \
        if (vg_diag_level() >= VG_LOG_DEBUG)                                                                           \
            vg_diag(VG_LOG_DEBUG, mod, __VA_ARGS__);                                                                   \
    } while (0)

#endif
