/* timer.c — wall clock and progress (see timer.h). */
#include <stdio.h>
#include <time.h>

#include "gradflow/timer.h"

double gf_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void gf_progress_begin(GfProgress *p, const char *phase, int64_t total, int enabled)
{
    p->phase = phase;
    p->total = total;
    p->start = p->last = gf_time_now();
    p->enabled = enabled;
}

void gf_progress_step(GfProgress *p, int64_t done)
{
    if (!p->enabled)
        return;
    const double now = gf_time_now();
    if (now - p->start < 3.0 || now - p->last < 2.0)
        return;
    p->last = now;
    const double rate = (double)done / (now - p->start);
    const double eta = rate > 0 ? (double)(p->total - done) / rate : 0.0;
    fprintf(stderr, "gradflow: %s: step %lld/%lld (%.1f steps/s, ETA %.0f s)\n", p->phase,
            (long long)done, (long long)p->total, rate, eta);
    fflush(stderr);
}
