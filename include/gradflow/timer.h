/* timer.h — wall clock and rank-0 progress lines.  All functions are Local. */
#ifndef GRADFLOW_TIMER_H
#define GRADFLOW_TIMER_H

#include <stdint.h>

/* Seconds on a monotonic clock. */
double gf_time_now(void);

/* Progress of one phase: a line on stderr at most every 2 s, and only once
 * the phase has run 3 s, so short runs stay silent.  Disabled when !enabled
 * (ranks other than 0, --quiet). */
typedef struct {
    const char *phase;
    int64_t total;
    double start, last;
    int enabled;
} GfProgress;

void gf_progress_begin(GfProgress *p, const char *phase, int64_t total, int enabled);
void gf_progress_step(GfProgress *p, int64_t done);

#endif
