/* reference.c — the tests' serial reference (see reference.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <mpi.h>

#include "reference.h"

int run_mpi_suite(Suite *suite)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    SRunner *sr = srunner_create(suite);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, rank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr), any;
    srunner_free(sr);
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any ? EXIT_FAILURE : EXIT_SUCCESS;
}

double ref_f(GfActivation act, double x, double *fp)
{
    switch (act) {
    case GF_ACT_LOGISTIC: { double y = 1 / (1 + exp(-x)); *fp = y * (1 - y); return y; }
    case GF_ACT_TANH: { double y = tanh(x); *fp = 1 - y * y; return y; }
    case GF_ACT_LINEAR: *fp = 1; return x;
    default: *fp = x > 0; return x > 0 ? x : 0;
    }
}


void reference(const GfModel *mo, Ref *r, int grads)
{
    const int64_t n = mo->n, m = mo->m, T = mo->T, no = mo->n_out;
    memcpy(r->a, mo->a0, (size_t)n * sizeof(double));
    r->E = 0;
    for (int64_t t = 1; t <= T; ++t)
        for (int64_t i = 0; i < n; ++i) {
            double s = mo->b[i];
            for (int64_t j = 0; j < n; ++j)
                s += mo->W[i * n + j] * r->a[(t - 1) * n + j];
            for (int64_t j = 0; j < m; ++j)
                s += mo->U[i * m + j] * mo->x[(t - 1) * m + j];
            r->net[(t - 1) * n + i] = s;
            r->a[t * n + i] = ref_f(mo->act, s, &r->fp[(t - 1) * n + i]);
            if (mo->mask[t - 1] && i >= n - no) {
                const double e = r->a[t * n + i] - mo->d[(t - 1) * no + i - (n - no)];
                r->E += 0.5 * e * e;
            }
        }
    if (!grads)
        return;
    for (int64_t t = T; t >= 1; --t)
        for (int64_t i = 0; i < n; ++i) {
            double g = 0;
            if (mo->mask[t - 1] && i >= n - no)
                g = r->a[t * n + i] - mo->d[(t - 1) * no + i - (n - no)];
            if (t < T)
                for (int64_t k = 0; k < n; ++k)
                    g += mo->W[k * n + i] * r->delta[t * n + k];
            r->delta[(t - 1) * n + i] = r->fp[(t - 1) * n + i] * g;
        }
    for (int64_t i = 0; i < n; ++i) {
        r->db[i] = 0;
        for (int64_t j = 0; j < n; ++j)
            r->dW[i * n + j] = 0;
        for (int64_t j = 0; j < m; ++j)
            r->dU[i * m + j] = 0;
        for (int64_t t = 1; t <= T; ++t) {
            const double dl = r->delta[(t - 1) * n + i];
            r->db[i] += dl;
            for (int64_t j = 0; j < n; ++j)
                r->dW[i * n + j] += dl * r->a[(t - 1) * n + j];
            for (int64_t j = 0; j < m; ++j)
                r->dU[i * m + j] += dl * mo->x[(t - 1) * m + j];
        }
    }
}

void ref_alloc(Ref *r, int64_t n, int64_t m, int64_t T)
{
    r->net = calloc((size_t)(T * n), sizeof(double));
    r->fp = calloc((size_t)(T * n), sizeof(double));
    r->a = calloc((size_t)((T + 1) * n), sizeof(double));
    r->delta = calloc((size_t)(T * n), sizeof(double));
    r->dW = calloc((size_t)(n * n), sizeof(double));
    r->dU = calloc((size_t)(n * m + 1), sizeof(double));
    r->db = calloc((size_t)n, sizeof(double));
}

void ref_free(Ref *r)
{
    free(r->net), free(r->fp), free(r->a), free(r->delta), free(r->dW), free(r->dU), free(r->db);
}
