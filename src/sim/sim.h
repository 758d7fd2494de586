/* sim.h — `vigil sim`: the fleet simulator and load generator.
 *
 * Owns the command line, the worker processes and the final report. The
 * pieces live beside it: device.h (behaviour of one wearable), payload.h (the
 * event template), worker.h (one process's epoll loop), hist.h (latency
 * histograms), report.h (worker→parent messages and the report). */
#ifndef VG_SIM_SIM_H
#define VG_SIM_SIM_H

/* Runs the simulator; argv[0] is "sim". Prints progress lines to stderr and
 * the final report to stdout. Returns the process exit code: 0 when the run
 * completed (even with missed anomalies), 2 on usage errors, 1 when no
 * device could connect or the simulator could not start. */
int vg_sim_main(int argc, char **argv);

#endif
