/* test_core.c — the distributed forward pass, BPTT and gradients against an
 * independent serial implementation written here (naive loops, closed-form
 * activations) and against central finite differences of E.
 *
 * Runs at any number of ranks (CTest: 1, 2, 3, 4).  Check runs in CK_NOFORK
 * mode (forked tests corrupt MPI); every error measure is reduced over ranks
 * before it is asserted, so all ranks pass or fail each assertion together. */
#include <check.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/bptt.h"
#include "gradflow/config.h"
#include "gradflow/forward.h"
#include "gradflow/model.h"
#include "gradflow/par.h"
#include "reference.h"

typedef struct {
    int64_t n, m, n_out, T;
    GfActivation act;
    double w_max, bias, a0;
    const char *targets;
} Case;

static const Case cases[] = {
    {7, 3, 2, 9, GF_ACT_LOGISTIC, 1.5, 0.4, 0.6, "2,4:T"},
    {7, 3, 2, 9, GF_ACT_TANH, 0.9, 0.4, 0.6, "2,4:T"},
    {7, 3, 2, 9, GF_ACT_LINEAR, 0.5, 0.4, 0.6, "1:T:3"},
    {7, 3, 3, 9, GF_ACT_RELU, 0.9, 0.7, 0.6, "T,5"},
    {3, 0, 1, 5, GF_ACT_LOGISTIC, 2.0, 0.0, 0.0, "T"},  /* the paper's net: m = 0, b = 0, a0 = 0 */
    {2, 1, 1, 6, GF_ACT_TANH, 1.2, 0.3, 0.3, "3:T"},    /* fewer units than ranks at np > 2 */
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static void make_config(const Case *c, GfConfig *cfg)
{
    gf_config_defaults(cfg);
    cfg->units = c->n;
    cfg->inputs = c->m;
    cfg->outputs = c->n_out;
    cfg->steps = c->T;
    cfg->activation = c->act;
    cfg->seed = 20010101;
    cfg->w_max = c->w_max;
    cfg->bias_scale = c->bias;
    cfg->a0_scale = c->a0;
    cfg->input_weight_scale = 0.8;
    strcpy(cfg->target_times, c->targets);
}

/* ---- helpers on distributed arrays ---- */

/* Gathers `rows` rows whose n-wide columns are split in unit blocks (local
 * block: rows x n_local, row-major) into full (rows, n). */
static void gather_cols(const GfPar *par, const double *local, int64_t rows, int64_t n, double *full)
{
    const int P = gf_par_unit_size(par);
    double *row = malloc((size_t)n * sizeof(double));
    const GfBlock me = gf_par_units(par);
    for (int64_t t = 0; t < rows; ++t) {
        memcpy(row + me.lo, local + t * me.count, (size_t)me.count * sizeof(double));
        int counts[64], displs[64];
        for (int r = 0; r < P; ++r) {
            GfBlock b = gf_par_units_of(par, r);
            counts[r] = (int)b.count, displs[r] = (int)b.lo;
        }
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, row, counts, displs, MPI_DOUBLE,
                       gf_par_unit_comm(par));
        memcpy(full + t * n, row, (size_t)n * sizeof(double));
    }
    free(row);
}

/* Gathers row blocks (n_local, cols) into full (n, cols). */
static void gather_rows(const GfPar *par, const double *local, int64_t cols, double *full)
{
    const int P = gf_par_unit_size(par);
    int counts[64], displs[64];
    for (int r = 0; r < P; ++r) {
        GfBlock b = gf_par_units_of(par, r);
        counts[r] = (int)(b.count * cols), displs[r] = (int)(b.lo * cols);
    }
    const GfBlock me = gf_par_units(par);
    MPI_Allgatherv(local, (int)(me.count * cols), MPI_DOUBLE, full, counts, displs, MPI_DOUBLE,
                   gf_par_unit_comm(par));
}

/* max |x - ref| / max |ref| over len entries, maximised over ranks. */
static double rel_err(const double *x, const double *ref, int64_t len)
{
    double num = 0, den = 0;
    for (int64_t k = 0; k < len; ++k) {
        num = fmax(num, fabs(x[k] - ref[k]));
        den = fmax(den, fabs(ref[k]));
    }
    double e = den > 0 ? num / den : num, g;
    MPI_Allreduce(&e, &g, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return g;
}

typedef struct {
    GfPar *par;
    GfModel dist, full;
    GfForward fw;
    GfBackward bw;
} Run;

static void run_case(const Case *c, Run *run)
{
    GfConfig cfg;
    make_config(c, &cfg);
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    ck_assert_int_eq(gf_par_create(MPI_COMM_WORLD, &run->par), 0);
    ck_assert_int_eq(gf_par_set_grid(run->par, 1, size, c->n), 0);
    ck_assert_int_eq(gf_model_alloc(&run->dist, c->n, c->m, c->n_out, c->T, gf_par_units(run->par), c->act), 0);
    ck_assert_int_eq(gf_model_alloc(&run->full, c->n, c->m, c->n_out, c->T, (GfBlock){0, c->n}, c->act), 0);
    gf_model_generate(&run->dist, &cfg, 0, 0, 0);
    gf_model_generate(&run->full, &cfg, 0, 0, 0);
    ck_assert_int_eq(gf_forward_alloc(&run->dist, &run->fw), 0);
    ck_assert_int_eq(gf_bptt_alloc(&run->dist, &run->bw), 0);
    gf_forward_run(&run->dist, &run->fw, run->par, NULL);
    gf_bptt_run(&run->dist, &run->fw, &run->bw, run->par, NULL);
}

static void run_free(Run *run)
{
    gf_bptt_free(&run->bw);
    gf_forward_free(&run->fw);
    gf_model_free(&run->dist);
    gf_model_free(&run->full);
    gf_par_destroy(run->par);
}

START_TEST(matches_serial_reference)
{
    /* Tolerance 1e-12 relative: both sides are exact algorithms in double and
     * differ only in summation order (BLAS, reduce-scatter). */
    const Case *c = &cases[_i];
    Run run;
    run_case(c, &run);
    const int64_t n = c->n, m = c->m, T = c->T;
    Ref ref;
    ref_alloc(&ref, n, m, T);
    reference(&run.full, &ref, 1);

    double *full = malloc((size_t)((T + 1) * n + n * n + n * m + 1) * sizeof(double));
    gather_cols(run.par, run.fw.net, T, n, full);
    ck_assert_msg(rel_err(full, ref.net, T * n) <= 1e-12, "net differs (case %d)", _i);
    gather_cols(run.par, run.fw.fprime, T, n, full);
    ck_assert_msg(rel_err(full, ref.fp, T * n) <= 1e-12, "fprime differs (case %d)", _i);
    ck_assert_msg(rel_err(run.fw.a, ref.a, (T + 1) * n) <= 1e-12, "a differs (case %d)", _i);
    gather_cols(run.par, run.bw.delta, T, n, full);
    ck_assert_msg(rel_err(full, ref.delta, T * n) <= 1e-12, "delta differs (case %d)", _i);
    gather_rows(run.par, run.bw.dW, n, full);
    ck_assert_msg(rel_err(full, ref.dW, n * n) <= 1e-12, "dE/dW differs (case %d)", _i);
    double nrm = 0;
    for (int64_t k = 0; k < n * n; ++k)
        nrm += ref.dW[k] * ref.dW[k];
    ck_assert_msg(fabs(run.bw.norm_dW - sqrt(nrm)) <= 1e-12 * sqrt(nrm), "norm differs (case %d)", _i);
    if (m > 0) {
        gather_rows(run.par, run.bw.dU, m, full);
        ck_assert_msg(rel_err(full, ref.dU, n * m) <= 1e-12, "dE/dU differs (case %d)", _i);
    }
    gather_rows(run.par, run.bw.db, 1, full);
    ck_assert_msg(rel_err(full, ref.db, n) <= 1e-12, "dE/db differs (case %d)", _i);
    ck_assert_msg(fabs(run.bw.loss - ref.E) <= 1e-12 * fabs(ref.E), "loss %g vs %g", run.bw.loss, ref.E);
    ck_assert_msg(ref.E > 0, "case %d has no error signal to test", _i);
    free(full);
    ref_free(&ref);
    run_free(&run);
}
END_TEST

/* Central difference of E along one parameter of the full model. */
static double fd(GfModel *full, Ref *r, double *param, double h)
{
    const double keep = *param;
    *param = keep + h;
    reference(full, r, 0);
    const double ep = r->E;
    *param = keep - h;
    reference(full, r, 0);
    const double em = r->E;
    *param = keep;
    return (ep - em) / (2 * h);
}

START_TEST(gradients_match_finite_differences)
{
    /* h = 1e-5: truncation error ~h^2 |E'''| ~ 1e-10 and rounding ~eps E / h ~
     * 1e-11, well inside the 1e-6 relative tolerance of the issue. */
    const Case *c = &cases[_i];
    Run run;
    run_case(c, &run);
    const int64_t n = c->n, m = c->m, T = c->T;
    const double h = 1e-5;
    Ref ref;
    ref_alloc(&ref, n, m, T);
    double *an = malloc((size_t)(n * n + n * m + 1) * sizeof(double));
    double *num = malloc((size_t)(n * n + n * m + 1) * sizeof(double));

    gather_rows(run.par, run.bw.dW, n, an);
    for (int64_t k = 0; k < n * n; ++k)
        num[k] = fd(&run.full, &ref, &run.full.W[k], h);
    ck_assert_msg(rel_err(an, num, n * n) <= 1e-6, "dE/dW vs finite differences (case %d)", _i);
    if (m > 0) {
        gather_rows(run.par, run.bw.dU, m, an);
        for (int64_t k = 0; k < n * m; ++k)
            num[k] = fd(&run.full, &ref, &run.full.U[k], h);
        ck_assert_msg(rel_err(an, num, n * m) <= 1e-6, "dE/dU vs finite differences (case %d)", _i);
    }
    gather_rows(run.par, run.bw.db, 1, an);
    for (int64_t k = 0; k < n; ++k)
        num[k] = fd(&run.full, &ref, &run.full.b[k], h);
    ck_assert_msg(rel_err(an, num, n) <= 1e-6, "dE/db vs finite differences (case %d)", _i);
    free(an);
    free(num);
    ref_free(&ref);
    run_free(&run);
}
END_TEST

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("distributed");
    tcase_add_loop_test(tc, matches_serial_reference, 0, NCASES);
    tcase_add_loop_test(tc, gradients_match_finite_differences, 0, NCASES);
    suite_add_tcase(s, tc);
    return run_mpi_suite(s);
}
