/* detectcfg.h — detector thresholds from a file: global values and
 * per-device overrides (`vigil serve --detect-config FILE`, `vigil eval
 * --detect-config FILE`).
 *
 * Format (docs/detection.md):
 *   # comment
 *   rest_high_bpm = 125          global values: before any section, or under [global]
 *   [device "w-17"]              overrides for one device; every parameter
 *   rest_high_bpm = 110          it does not name keeps the global value
 *   tz_offset_min = 60
 * Parameter names are vg_detect_cfg_t's fields (detect/detect.h); values are
 * checked against each parameter's range. Errors name the file and line. */
#ifndef VG_APP_DETECTCFG_H
#define VG_APP_DETECTCFG_H

#include "core/strmap.h"
#include "detect/detect.h"

#include <stdio.h>

typedef struct {
    vg_detect_cfg_t global;
    vg_strmap_t devices;      /* device id -> (uintptr_t)vg_detect_cfg_t *, owned */
} vg_detectcfg_t;

/* Initialises d with the defaults and no device overrides. */
void vg_detectcfg_init(vg_detectcfg_t *d);
/* A global value given on the command line. */
typedef struct {
    const char *name;
    double value;
} vg_detect_override_t;

/* Reads path (NULL or "" = no file) into d, then applies the command-line
 * overrides ov[0..nov) to the global values (so flags beat the file's
 * global values; a [device] section still wins for its device). Returns
 * VG_OK, or VG_EINVAL after printing one line to err ("FILE:LINE: reason").
 * On error d keeps what it had. */
int vg_detectcfg_load(vg_detectcfg_t *d, const char *path, const vg_detect_override_t *ov, size_t nov, FILE *err);
void vg_detectcfg_free(vg_detectcfg_t *d);

#endif
