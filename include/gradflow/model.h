/* model.h — the network's parameters and data, distributed by unit blocks.
 *
 * Rank with unit block [lo, lo + n_local) holds rows lo.. of W, U and b.
 * The n-sized initial state, the inputs and the targets are small next to W
 * and are replicated.  Arrays are row-major; shapes are given in comments.
 */
#ifndef GRADFLOW_MODEL_H
#define GRADFLOW_MODEL_H

#include <stdint.h>

#include "gradflow/act.h"
#include "gradflow/config.h"
#include "gradflow/dist.h"

typedef struct {
    int64_t n, m, n_out, T;     /* global sizes (SPEC §1) */
    int64_t lo, n_local;        /* this rank's unit block */
    GfActivation act;
    double *W;                  /* (n_local, n): W[i - lo][j] = w_ij, weight from j to i */
    double *U;                  /* (n_local, m) */
    double *b;                  /* (n_local) */
    double *a0;                 /* (n) a(0), replicated */
    double *x;                  /* (T, m) x(tau) at row tau-1, replicated */
    double *d;                  /* (T, n_out) d(tau) at row tau-1 (0 off target times), replicated */
    unsigned char *mask;        /* (T) 1 where E(tau) counts */
} GfModel;

/* Local.  Allocates every array for sizes (n, m, n_out, T) and block `units`.
 * On failure frees what it made and returns GF_ENOMEM. */
int gf_model_alloc(GfModel *model, int64_t n, int64_t m, int64_t n_out, int64_t T, GfBlock units,
                   GfActivation act);

/* Local.  Fills the arrays that no input file provides from the counter-based
 * generator (rng.h), as the options say:
 *   W: uniform w_max * U(-1,1) or gaussian gain/sqrt(n) * N(0,1)   (unless have_W)
 *   U: input_weight_scale * U(-1,1);  b: bias_scale * U(-1,1);  a0: a0_scale * U(-1,1)
 *   x: input_scale * U(-1,1)                                         (unless have_x)
 *   d: target_scale * U(0,1) (logistic, relu) or * U(-1,1) (tanh, linear),
 *      at the target times only, mask from --target-times            (unless have_d)
 * Each value depends only on (seed, stream, global index). */
void gf_model_generate(GfModel *model, const GfConfig *cfg, int have_W, int have_x, int have_d);

/* Local. */
void gf_model_free(GfModel *model);

#endif
