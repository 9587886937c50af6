/* forward.c — distributed forward pass (see forward.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/error.h"
#include "gradflow/forward.h"

int gf_forward_alloc(const GfModel *mo, GfForward *fw)
{
    memset(fw, 0, sizeof *fw);
    const size_t T = (size_t)mo->T, nl = (size_t)mo->n_local, n = (size_t)mo->n;
    if (!(fw->net = gf_calloc(T * nl, sizeof(double), "net (T x n_local)")) ||
        !(fw->fprime = gf_calloc(T * nl, sizeof(double), "fprime (T x n_local)")) ||
        !(fw->a = gf_calloc((T + 1) * n, sizeof(double), "a (T+1 x n)"))) {
        gf_forward_free(fw);
        return GF_ENOMEM;
    }
    return GF_OK;
}

void gf_forward_free(GfForward *fw)
{
    free(fw->net);
    free(fw->fprime);
    free(fw->a);
    memset(fw, 0, sizeof *fw);
}

void gf_forward_run(const GfModel *mo, GfForward *fw, const GfPar *par, GfProgress *progress)
{
    const int64_t n = mo->n, nl = mo->n_local, m = mo->m, T = mo->T;
    fw->bad_step = fw->bad_lo = fw->bad_hi = 0;
    memcpy(fw->a, mo->a0, (size_t)n * sizeof(double));
    /* net(tau) starts as U x(tau): (T, n_local) = X (T, m) * U^T (m, n_local) */
    if (nl > 0 && m > 0)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)nl, (int)m, 1.0, mo->x,
                    (int)m, mo->U, (int)m, 0.0, fw->net, (int)nl);
    for (int64_t tau = 1; tau <= T; ++tau) {
        double *net = fw->net + (tau - 1) * nl, *fp = fw->fprime + (tau - 1) * nl;
        double *a_prev = fw->a + (tau - 1) * n, *a_now = fw->a + tau * n;
        for (int64_t r = 0; r < nl; ++r)
            net[r] += mo->b[r];
        if (nl > 0)
            cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)nl, (int)n, 1.0, mo->W, (int)n, a_prev, 1,
                        1.0, net, 1);
        /* f fills this rank's block of a(tau) in place; the gather fills the rest */
        gf_act_apply(mo->act, (size_t)nl, net, a_now + mo->lo, fp);
        gf_par_allgather_units(par, a_now);
        if (!fw->bad_step)
            for (int64_t i = 0; i < n; ++i)
                if (!isfinite(a_now[i])) {
                    if (!fw->bad_step)
                        fw->bad_step = tau, fw->bad_lo = i;
                    fw->bad_hi = i;
                }
        if (progress)
            gf_progress_step(progress, tau);
        if (fw->bad_step && fw->stop_nonfinite)
            break;
    }
}
