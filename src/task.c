/* task.c — long-time-lag tasks (see task.h). */
#include <string.h>

#include "gradflow/rng.h"
#include "gradflow/task.h"

static const char *const task_names[GF_TASK_COUNT] = {"latch", "two-sequence", "parity", "adding"};

/* Streams of the task generator; far from the model's streams (rng.h). */
#define STREAM_TASK 100u

int gf_task_parse(const char *name, GfTaskKind *out)
{
    for (int k = 0; k < GF_TASK_COUNT; ++k)
        if (!strcmp(name, task_names[k])) {
            *out = (GfTaskKind)k;
            return 0;
        }
    return -1;
}

const char *gf_task_name(GfTaskKind kind) { return (unsigned)kind < GF_TASK_COUNT ? task_names[kind] : "?"; }

void gf_task_init(GfTask *t, GfTaskKind kind, int64_t lag, double noise)
{
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->lag = lag;
    t->noise = noise;
    t->threshold = 0.2;
    switch (kind) {
    case GF_TASK_LATCH: t->m = 1, t->info_last = 1; break;
    case GF_TASK_TWO_SEQUENCE: t->m = 1, t->info_last = 3; break;
    case GF_TASK_PARITY: t->m = 1, t->info_last = 2; break;
    case GF_TASK_ADDING: t->m = 2, t->info_last = 10, t->threshold = 0.04; break;
    }
    t->T = t->info_last + lag;
}

void gf_task_sequence(const GfTask *t, uint64_t seed, int set, uint64_t index, double *x, double *d)
{
    const uint32_t stream = STREAM_TASK + (uint32_t)set;
    /* each sequence owns a block of counters: 4 per step plus a few for its labels */
    const uint64_t base = index * (uint64_t)(4 * t->T + 8);
#define U(k) gf_rng_uniform(seed, stream, base + (uint64_t)(k))
#define N(k) gf_rng_normal(seed, stream, base + (uint64_t)(k))
    const double c = U(0) < 0.5 ? -1.0 : 1.0;
    for (int64_t s = 0; s < t->T; ++s) /* distractors; overwritten where information sits */
        x[s * t->m] = t->noise * N(8 + 4 * s);
    switch (t->kind) {
    case GF_TASK_LATCH:
        x[0] = c;
        *d = 0.8 * c;
        break;
    case GF_TASK_TWO_SEQUENCE:
        for (int64_t s = 0; s < 3; ++s)
            x[s] = 0.5 * c + 0.2 * N(9 + 4 * s);
        *d = 0.8 * c;
        break;
    case GF_TASK_PARITY: {
        const double b2 = U(1) < 0.5 ? -1.0 : 1.0;
        x[0] = c;
        x[1] = b2;
        *d = 0.8 * c * b2;
        break;
    }
    case GF_TASK_ADDING: {
        const int64_t half = t->T / 2 > 10 ? t->T / 2 : 11;
        const int64_t m1 = (int64_t)(10 * U(1)); /* 0..9: steps 1..10 */
        int64_t m2 = m1 + 1 + (int64_t)((double)(half - 1 - m1) * U(2));
        if (m2 >= t->T)
            m2 = t->T - 1;
        for (int64_t s = 0; s < t->T; ++s) {
            x[s * 2] = 2.0 * U(8 + 4 * s + 1) - 1.0;
            x[s * 2 + 1] = (s == m1 || s == m2) ? 1.0 : 0.0;
        }
        *d = 0.5 + (x[m1 * 2] + x[m2 * 2]) / 4.0;
        break;
    }
    }
#undef U
#undef N
}
