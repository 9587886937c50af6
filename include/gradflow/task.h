/* task.h — the classic long-time-lag tasks, generated counter-based.
 *
 * Every task has one output unit (the net's last unit) and one target at the
 * last step T; the information that decides the target sits `lag` steps (or
 * more, for adding) before T:
 *   latch         (Bengio, Simard, Frasconi 1994, information latching)
 *                 m = 1, T = lag + 1: x(1) = c in {-1, +1}, then noise
 *                 N(0, noise^2); d(T) = 0.8 c.
 *   two-sequence  (Bengio et al. 1994) m = 1, T = lag + 3: x(1..3) ~ N(0.5 c,
 *                 0.2^2) decide the class c, noise after; d(T) = 0.8 c.
 *   parity        (Bengio et al. 1994) m = 1, T = lag + 2: two bits
 *                 b1, b2 in {-1, +1} at steps 1, 2, noise after; d(T) = 0.8 b1 b2
 *                 (+0.8 for an even number of -1 bits).
 *   adding        (Hochreiter & Schmidhuber 1997) m = 2, T = lag + 10: x(t) =
 *                 (v(t), mark(t)), v ~ U(-1, 1); two marked steps, the first in
 *                 1..10, the second in the first half; d(T) = 0.5 + (v1 + v2)/4.
 * Success (the published protocols): every test sequence's absolute error at
 * T is below `threshold`: 0.2 for the classification tasks, 0.04 for adding.
 * All functions are Local and pure.
 */
#ifndef GRADFLOW_TASK_H
#define GRADFLOW_TASK_H

#include <stdint.h>

typedef enum { GF_TASK_LATCH = 0, GF_TASK_TWO_SEQUENCE, GF_TASK_PARITY, GF_TASK_ADDING } GfTaskKind;
#define GF_TASK_COUNT 4

typedef struct {
    GfTaskKind kind;
    int64_t lag;       /* steps between the (last) information and the target */
    double noise;      /* standard deviation of the distractor inputs */
    int64_t T, m;      /* sequence length and inputs */
    int64_t info_last; /* the last step that carries information (adding: the latest first mark) */
    double threshold;  /* success: |a(T) - d(T)| below it on every test sequence */
} GfTask;

int gf_task_parse(const char *name, GfTaskKind *out);
const char *gf_task_name(GfTaskKind kind);

/* Sets the task's sizes; lag >= 1. */
void gf_task_init(GfTask *task, GfTaskKind kind, int64_t lag, double noise);

/* Sequence `index` of set `set` (0: training, 1: test): x (T, m) row-major
 * and the target *d at T.  A value depends only on (seed, set, index, step). */
void gf_task_sequence(const GfTask *task, uint64_t seed, int set, uint64_t index, double *x, double *d);

#endif
