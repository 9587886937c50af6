/* bptt.c — distributed BPTT and gradients (see bptt.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/bptt.h"
#include "gradflow/error.h"

int gf_bptt_alloc(const GfModel *mo, GfBackward *bw)
{
    memset(bw, 0, sizeof *bw);
    const size_t T = (size_t)mo->T, nl = (size_t)mo->n_local, n = (size_t)mo->n;
    if (!(bw->delta = gf_calloc(T * nl, sizeof(double), "delta (T x n_local)")) ||
        !(bw->E = gf_calloc(T, sizeof(double), "E (T)")) ||
        !(bw->dW = gf_calloc(nl * n, sizeof(double), "dE/dW (n_local x n)")) ||
        !(bw->dU = gf_calloc(nl * (size_t)mo->m, sizeof(double), "dE/dU (n_local x m)")) ||
        !(bw->db = gf_calloc(nl, sizeof(double), "dE/db (n_local)")) ||
        !(bw->work = gf_calloc(n + nl, sizeof(double), "BPTT scratch (n + n_local)"))) {
        gf_bptt_free(bw);
        return GF_ENOMEM;
    }
    return GF_OK;
}

void gf_bptt_free(GfBackward *bw)
{
    free(bw->delta);
    free(bw->E);
    free(bw->dW);
    free(bw->dU);
    free(bw->db);
    free(bw->work);
    memset(bw, 0, sizeof *bw);
}

double gf_bptt_loss(const GfModel *mo, const GfForward *fw, double *E)
{
    const int64_t n = mo->n, n_out = mo->n_out, first_out = n - n_out;
    double loss = 0.0;
    for (int64_t t = 1; t <= mo->T; ++t) {
        double e2 = 0.0;
        if (mo->mask[t - 1])
            for (int64_t k = 0; k < n_out; ++k) {
                const double e = fw->a[t * n + first_out + k] - mo->d[(t - 1) * n_out + k];
                e2 += e * e;
            }
        E[t - 1] = 0.5 * e2;
        loss += E[t - 1];
    }
    return loss;
}

void gf_bptt_run(const GfModel *mo, const GfForward *fw, GfBackward *bw, const GfPar *par,
                 GfProgress *progress)
{
    const int64_t n = mo->n, nl = mo->n_local, m = mo->m, T = mo->T, lo = mo->lo;
    const int64_t first_out = n - mo->n_out;
    bw->loss = gf_bptt_loss(mo, fw, bw->E);

    double *partial = bw->work;   /* (n) W_local^T delta_local(tau+1) */
    double *back = bw->work + n;  /* (n_local) this rank's block of W^T delta(tau+1) */

    for (int64_t tau = T; tau >= 1; --tau) {
        double *delta = bw->delta + (tau - 1) * nl;
        const double *fp = fw->fprime + (tau - 1) * nl;
        const double *a_now = fw->a + tau * n;
        if (tau < T) {
            /* (W^T delta(tau+1))_j = sum_i w_ij delta_i(tau+1): each rank sums over
             * its rows i, the reduce-scatter over ranks */
            if (nl > 0)
                cblas_dgemv(CblasRowMajor, CblasTrans, (int)nl, (int)n, 1.0, mo->W, (int)n,
                            bw->delta + tau * nl, 1, 0.0, partial, 1);
            else
                memset(partial, 0, (size_t)n * sizeof(double));
            gf_par_reduce_scatter_units(par, partial, back);
        } else {
            memset(back, 0, (size_t)nl * sizeof(double));
        }
        for (int64_t r = 0; r < nl; ++r) {
            const int64_t i = lo + r;
            double g = back[r];
            if (mo->mask[tau - 1] && i >= first_out)
                g += a_now[i] - mo->d[(tau - 1) * mo->n_out + (i - first_out)];
            delta[r] = fp[r] * g;
        }
        if (progress)
            gf_progress_step(progress, T - tau + 1);
    }

    /* dE/dW_local (n_local, n) = Delta^T (n_local, T) * A_prev (T, n), rows 0..T-1 of a */
    if (nl > 0) {
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nl, (int)n, (int)T, 1.0, bw->delta,
                    (int)nl, fw->a, (int)n, 0.0, bw->dW, (int)n);
        if (m > 0)
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nl, (int)m, (int)T, 1.0,
                        bw->delta, (int)nl, mo->x, (int)m, 0.0, bw->dU, (int)m);
    }
    for (int64_t r = 0; r < nl; ++r)
        bw->db[r] = 0.0;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t r = 0; r < nl; ++r)
            bw->db[r] += bw->delta[t * nl + r];
    double ss = 0.0;
    for (int64_t k = 0; k < nl * n; ++k)
        ss += bw->dW[k] * bw->dW[k];
    bw->norm_dW = sqrt(gf_par_unit_sum(par, ss));

    /* the first step (backward) where this rank's delta is not finite, then
     * over the unit ranks: the step, and the units of it that are bad */
    int64_t bad = 0, lo_bad = INT64_MAX, hi_bad = -1;
    for (int64_t tau = T; tau >= 1 && !bad; --tau)
        for (int64_t r = 0; r < nl; ++r)
            if (!isfinite(bw->delta[(tau - 1) * nl + r]))
                bad = tau;
    bw->bad_step = (int64_t)gf_par_unit_max(par, (double)bad);
    for (int64_t r = 0; bw->bad_step && r < nl; ++r)
        if (!isfinite(bw->delta[(bw->bad_step - 1) * nl + r])) {
            lo_bad = lo + r < lo_bad ? lo + r : lo_bad;
            hi_bad = lo + r;
        }
    bw->bad_lo = bw->bad_step ? -(int64_t)gf_par_unit_max(par, -(double)lo_bad) : 0;
    bw->bad_hi = bw->bad_step ? (int64_t)gf_par_unit_max(par, (double)hi_bad) : 0;
}
