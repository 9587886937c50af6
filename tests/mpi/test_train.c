/* test_train.c — the task generators and one BPTT training step.
 *
 * The step is checked against the serial reference (reference.h): the
 * update must be -eta times the batch-mean gradient, so the directional
 * finite difference of the mean loss along the update, (L(w + h u) -
 * L(w - h u)) / 2h with u = update / ||update||, must equal -||update|| / eta
 * (rel. err <= 1e-6).  Runs at 1-4 ranks, grid 1 x P and, for even P, 2 x P/2. */
#include <check.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/model.h"
#include "gradflow/par.h"
#include "gradflow/task.h"
#include "gradflow/train.h"
#include "reference.h"

static int world_size;

START_TEST(task_generators)
{
    for (int k = 0; k < GF_TASK_COUNT; ++k) {
        GfTask t;
        gf_task_init(&t, (GfTaskKind)k, 7, 0.3);
        ck_assert_int_eq(t.T, t.info_last + 7);
        double x[64], y[64], d, d2;
        int seen_pos = 0, seen_neg = 0;
        for (uint64_t s = 0; s < 200; ++s) {
            gf_task_sequence(&t, 5, 0, s, x, &d);
            gf_task_sequence(&t, 5, 0, s, y, &d2);
            ck_assert(d == d2 && !memcmp(x, y, sizeof(double) * (size_t)(t.T * t.m))); /* deterministic */
            gf_task_sequence(&t, 5, 1, s, y, &d2);
            ck_assert(memcmp(x, y, sizeof(double) * (size_t)(t.T * t.m)) != 0); /* test set differs */
            switch (t.kind) {
            case GF_TASK_LATCH:
                ck_assert(fabs(x[0]) == 1.0 && d == 0.8 * x[0]);
                break;
            case GF_TASK_TWO_SEQUENCE:
                /* the class is the sign of the mean of the first three inputs (means +-0.5, sd 0.2) */
                ck_assert(fabs(d) == 0.8 && (x[0] + x[1] + x[2]) * d > 0);
                break;
            case GF_TASK_PARITY:
                ck_assert(fabs(x[0]) == 1.0 && fabs(x[1]) == 1.0 && d == 0.8 * x[0] * x[1]);
                break;
            case GF_TASK_ADDING: {
                int marks = 0, first = -1;
                double sum = 0;
                for (int64_t u = 0; u < t.T; ++u)
                    if (x[2 * u + 1] == 1.0) {
                        if (first < 0)
                            first = (int)u;
                        ++marks, sum += x[2 * u];
                    }
                ck_assert_int_eq(marks, 2);
                ck_assert(first < 10 && t.T - 1 - first >= t.lag); /* information at least lag before T */
                ck_assert(fabs(d - (0.5 + sum / 4)) < 1e-15);
                break;
            }
            }
            seen_pos += d > 0.5 || (t.kind == GF_TASK_ADDING && d > 0.5);
            seen_neg += d < 0.5 && !(t.kind == GF_TASK_ADDING && d >= 0.5);
        }
        ck_assert(seen_pos > 50 && seen_neg > 50); /* both classes (or both halves) occur */
    }
}
END_TEST

/* Mean loss of sequences [0, B) of the training set for the full model mo. */
static double mean_loss(GfModel *mo, const GfTask *task, uint64_t seed, int64_t B)
{
    Ref r;
    ref_alloc(&r, mo->n, mo->m, mo->T);
    double sum = 0;
    for (int64_t j = 0; j < B; ++j) {
        double d;
        gf_task_sequence(task, seed, 0, (uint64_t)j, mo->x, &d);
        memset(mo->mask, 0, (size_t)mo->T);
        mo->mask[mo->T - 1] = 1;
        mo->d[mo->T - 1] = d;
        reference(mo, &r, 0);
        sum += r.E;
    }
    ref_free(&r);
    return sum / (double)B;
}

START_TEST(one_step_is_minus_eta_gradient)
{
    const int grid_t = (_i == 1 && world_size % 2 == 0) ? 2 : 1;
    GfConfig cfg;
    gf_config_defaults(&cfg);
    cfg.train = 1;
    strcpy(cfg.task, _i == 2 ? "adding" : "latch");
    cfg.lag = 4;
    cfg.units = 5;
    ck_assert_int_eq(gf_train_configure(&cfg), 0);
    cfg.bias_scale = 0.3;
    cfg.epochs = 1;
    cfg.batch = cfg.train_size = 7;
    cfg.momentum = 0.0;
    cfg.lr = 0.3;
    GfTrainSpec spec;
    ck_assert_int_eq(gf_train_spec_from_config(&cfg, &spec), 0);
    GfPar *par;
    ck_assert_int_eq(gf_par_create(MPI_COMM_WORLD, &par), 0);
    ck_assert_int_eq(gf_par_set_grid(par, grid_t, world_size / grid_t, cfg.units), 0);
    const int64_t n = cfg.units, m = cfg.inputs, T = cfg.steps;
    GfModel dist, full, moved;
    ck_assert_int_eq(gf_model_alloc(&dist, n, m, 1, T, gf_par_units(par), cfg.activation), 0);
    ck_assert_int_eq(gf_model_alloc(&full, n, m, 1, T, (GfBlock){0, n}, cfg.activation), 0);
    ck_assert_int_eq(gf_model_alloc(&moved, n, m, 1, T, (GfBlock){0, n}, cfg.activation), 0);
    gf_model_generate(&dist, &cfg, 0, 0, 0);
    gf_model_generate(&full, &cfg, 0, 0, 0);
    GfTrainLog log;
    ck_assert_int_eq(gf_train_log_alloc(&log, 1, T), 0);
    ck_assert_int_eq(gf_train_run(&spec, &dist, par, &log, NULL), 0);
    /* gather the updated rows: each rank's block, zero elsewhere, summed (time group 0 only) */
    const int keep = gf_par_time_rank(par) == 0;
    memset(moved.W, 0, sizeof(double) * (size_t)(n * n));
    memset(moved.U, 0, sizeof(double) * (size_t)(n * m));
    memset(moved.b, 0, sizeof(double) * (size_t)n);
    for (int64_t r = 0; keep && r < dist.n_local; ++r) {
        memcpy(moved.W + (dist.lo + r) * n, dist.W + r * n, sizeof(double) * (size_t)n);
        memcpy(moved.U + (dist.lo + r) * m, dist.U + r * m, sizeof(double) * (size_t)m);
        moved.b[dist.lo + r] = dist.b[r];
    }
    MPI_Allreduce(MPI_IN_PLACE, moved.W, (int)(n * n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, moved.U, (int)(n * m), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, moved.b, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    /* the update direction over all parameters */
    double norm2 = 0;
    for (int64_t k = 0; k < n * n; ++k)
        norm2 += (moved.W[k] - full.W[k]) * (moved.W[k] - full.W[k]);
    for (int64_t k = 0; k < n * m; ++k)
        norm2 += (moved.U[k] - full.U[k]) * (moved.U[k] - full.U[k]);
    for (int64_t k = 0; k < n; ++k)
        norm2 += (moved.b[k] - full.b[k]) * (moved.b[k] - full.b[k]);
    const double unorm = sqrt(norm2), h = 1e-6;
    ck_assert(unorm > 0);
    double *saved = malloc(sizeof(double) * (size_t)(n * n + n * m + n));
    double *params[3] = {full.W, full.U, full.b}, *after[3] = {moved.W, moved.U, moved.b};
    const int64_t lens[3] = {n * n, n * m, n};
    double L[2];
    for (int sgn = 0; sgn < 2; ++sgn) {
        for (int q = 0, o = 0; q < 3; o += (int)lens[q], ++q)
            for (int64_t k = 0; k < lens[q]; ++k) {
                saved[o + k] = params[q][k];
                params[q][k] += (sgn ? -h : h) * (after[q][k] - saved[o + k]) / unorm;
            }
        L[sgn] = mean_loss(&full, &spec.task, spec.seed, cfg.train_size);
        for (int q = 0, o = 0; q < 3; o += (int)lens[q], ++q)
            for (int64_t k = 0; k < lens[q]; ++k)
                params[q][k] = saved[o + k];
    }
    const double fd = (L[0] - L[1]) / (2 * h), want = -unorm / cfg.lr;
    double err = fabs(fd - want) / fabs(want), g;
    MPI_Allreduce(&err, &g, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    ck_assert_msg(g <= 1e-6, "directional derivative %.12g, expected %.12g (rel %g)", fd, want, g);
    /* the logged loss is the mean loss before the step */
    const double l0 = mean_loss(&full, &spec.task, spec.seed, cfg.train_size);
    ck_assert_msg(fabs(log.loss[0] - l0) <= 1e-12 * l0, "logged loss %g vs %g", log.loss[0], l0);
    free(saved);
    gf_train_log_free(&log);
    gf_model_free(&dist), gf_model_free(&full), gf_model_free(&moved);
    gf_par_destroy(par);
}
END_TEST

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("train");
    tcase_add_test(tc, task_generators);
    tcase_add_loop_test(tc, one_step_is_minus_eta_gradient, 0, 3);
    suite_add_tcase(s, tc);
    return run_mpi_suite(s);
}
