/* model.c — allocation and counter-based initialisation (see model.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/error.h"
#include "gradflow/model.h"
#include "gradflow/rng.h"
#include "gradflow/timeset.h"

int gf_model_alloc(GfModel *mo, int64_t n, int64_t m, int64_t n_out, int64_t T, GfBlock units,
                   GfActivation act)
{
    memset(mo, 0, sizeof *mo);
    mo->n = n;
    mo->m = m;
    mo->n_out = n_out;
    mo->T = T;
    mo->lo = units.lo;
    mo->n_local = units.count;
    mo->act = act;
    const size_t nl = (size_t)units.count;
    if (!(mo->W = gf_calloc(nl * (size_t)n, sizeof(double), "W (n_local x n)")) ||
        !(mo->U = gf_calloc(nl * (size_t)m, sizeof(double), "U (n_local x m)")) ||
        !(mo->b = gf_calloc(nl, sizeof(double), "b")) ||
        !(mo->a0 = gf_calloc((size_t)n, sizeof(double), "a0")) ||
        !(mo->x = gf_calloc((size_t)T * (size_t)m, sizeof(double), "x (T x m)")) ||
        !(mo->d = gf_calloc((size_t)T * (size_t)n_out, sizeof(double), "d (T x n_out)")) ||
        !(mo->mask = gf_calloc((size_t)T, 1, "target mask"))) {
        gf_model_free(mo);
        return GF_ENOMEM;
    }
    return GF_OK;
}

void gf_model_generate(GfModel *mo, const GfConfig *cfg, int have_W, int have_x, int have_d)
{
    const uint64_t seed = cfg->seed;
    const int64_t n = mo->n, m = mo->m;
    if (!have_W) {
        const double gscale = cfg->gain / sqrt((double)n);
        for (int64_t r = 0; r < mo->n_local; ++r)
            for (int64_t j = 0; j < n; ++j) {
                const uint64_t idx = (uint64_t)(mo->lo + r) * (uint64_t)n + (uint64_t)j;
                mo->W[r * n + j] = cfg->init == GF_INIT_GAUSSIAN
                                       ? gscale * gf_rng_normal(seed, GF_STREAM_W, idx)
                                       : cfg->w_max * gf_rng_symmetric(seed, GF_STREAM_W, idx);
            }
    }
    for (int64_t r = 0; r < mo->n_local; ++r) {
        const uint64_t i = (uint64_t)(mo->lo + r);
        for (int64_t j = 0; j < m; ++j)
            mo->U[r * m + j] = cfg->input_weight_scale *
                               gf_rng_symmetric(seed, GF_STREAM_U, i * (uint64_t)m + (uint64_t)j);
        mo->b[r] = cfg->bias_scale * gf_rng_symmetric(seed, GF_STREAM_B, i);
    }
    for (int64_t i = 0; i < n; ++i)
        mo->a0[i] = cfg->a0_scale * gf_rng_symmetric(seed, GF_STREAM_A0, (uint64_t)i);
    if (!have_x)
        for (int64_t k = 0; k < mo->T * m; ++k)
            mo->x[k] = cfg->input_scale * gf_rng_symmetric(seed, GF_STREAM_X, (uint64_t)k);
    if (!have_d) {
        /* config validation has already parsed the list, so this cannot fail */
        gf_timeset_parse(cfg->target_times, mo->T, "--target-times", mo->mask);
        const int unipolar = mo->act == GF_ACT_LOGISTIC || mo->act == GF_ACT_RELU;
        for (int64_t t = 0; t < mo->T; ++t)
            for (int64_t k = 0; k < mo->n_out; ++k) {
                const uint64_t idx = (uint64_t)(t * mo->n_out + k);
                mo->d[t * mo->n_out + k] =
                    !mo->mask[t] ? 0.0
                    : unipolar   ? cfg->target_scale * gf_rng_uniform(seed, GF_STREAM_D, idx)
                                 : cfg->target_scale * gf_rng_symmetric(seed, GF_STREAM_D, idx);
            }
    }
}

void gf_model_free(GfModel *mo)
{
    free(mo->W);
    free(mo->U);
    free(mo->b);
    free(mo->a0);
    free(mo->x);
    free(mo->d);
    free(mo->mask);
    memset(mo, 0, sizeof *mo);
}
