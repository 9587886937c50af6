/* test_flow.c — the gradient-flow tensor (SPEC §3-4) against independent
 * oracles: the paper's unrolled path sum, finite differences of the backward
 * recursion, the vanishing/exploding bounds on hundreds of random nets, and
 * closed forms at lags where the entries under- and overflow.
 *
 * Runs at any number of ranks (CTest: 1-4), with grids 1 x P and, when P is
 * even, 2 x P/2 (targets split over two time groups).  Every error measure is
 * reduced over ranks before it is asserted (CK_NOFORK under MPI). */
#include <check.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/flow.h"
#include "gradflow/forward.h"
#include "gradflow/model.h"
#include "gradflow/par.h"
#include "gradflow/rng.h"
#include "reference.h"

static int world_size;

/* ---- a distributed run with an in-memory sink ---- */

typedef struct {
    const GfFlowSpec *spec;
    double *G, *J; /* (N_t, L+1, N_v, N_k), 0 where another rank wrote */
    int calls;
} MemSink;

static int mem_put(void *ctx, int64_t target, int64_t lag0, int64_t nlags, int64_t va0, int64_t nva,
                   const double *G, const double *J)
{
    MemSink *s = ctx;
    const GfFlowSpec *sp = s->spec;
    ++s->calls;
    for (int64_t l = 0; target >= 0 && l < nlags; ++l)
        for (int64_t a = 0; a < nva; ++a)
            for (int64_t b = 0; b < sp->n_k; ++b) {
                const int64_t at = ((target * (sp->max_lag + 1) + lag0 + l) * sp->n_v + va0 + a) * sp->n_k + b;
                const int64_t from = (l * nva + a) * sp->n_k + b;
                s->G[at] = G[from];
                if (J)
                    s->J[at] = J[from];
            }
    return 0;
}

typedef struct {
    GfPar *par;
    GfModel dist, full;  /* this rank's block, and the whole model (for oracles) */
    GfForward fw;
    GfFlowSpec spec;
    GfFlowResult res;
    double *G, *J;       /* whole tensors on every rank */
} FlowRun;

static int64_t *iota(int64_t n)
{
    int64_t *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; ++i)
        v[i] = i;
    return v;
}

/* Sets up a model from cfg (W replaced by W_full when given), runs the
 * forward pass and the flow for targets with lags 0..L, K = V = all units. */
static void flow_run(FlowRun *r, const GfConfig *cfg, const double *W_full, int grid_t,
                     const int64_t *targets, int64_t n_t, int64_t L, int tensor, int jacobian)
{
    const int64_t n = cfg->units;
    memset(r, 0, sizeof *r);
    ck_assert_int_eq(gf_par_create(MPI_COMM_WORLD, &r->par), 0);
    ck_assert_int_eq(gf_par_set_grid(r->par, grid_t, world_size / grid_t, n), 0);
    ck_assert_int_eq(gf_model_alloc(&r->dist, n, cfg->inputs, cfg->outputs, cfg->steps,
                                    gf_par_units(r->par), cfg->activation), 0);
    ck_assert_int_eq(gf_model_alloc(&r->full, n, cfg->inputs, cfg->outputs, cfg->steps,
                                    (GfBlock){0, n}, cfg->activation), 0);
    gf_model_generate(&r->dist, cfg, 0, 0, 0);
    gf_model_generate(&r->full, cfg, 0, 0, 0);
    if (W_full) {
        memcpy(r->full.W, W_full, (size_t)(n * n) * sizeof(double));
        memcpy(r->dist.W, W_full + r->dist.lo * n, (size_t)(r->dist.n_local * n) * sizeof(double));
    }
    ck_assert_int_eq(gf_forward_alloc(&r->dist, &r->fw), 0);
    gf_forward_run(&r->dist, &r->fw, r->par, NULL);

    GfFlowSpec *sp = &r->spec;
    sp->n_t = n_t;
    sp->targets = malloc((size_t)n_t * sizeof(int64_t));
    memcpy(sp->targets, targets, (size_t)n_t * sizeof(int64_t));
    sp->max_lag = L;
    sp->n_k = sp->n_v = n;
    sp->units_k = iota(n);
    sp->units_v = iota(n);
    sp->tensor = tensor;
    sp->jacobian = jacobian;
    ck_assert_int_eq(gf_flow_result_alloc(sp, &r->res), 0);
    const int64_t len = n_t * (L + 1) * n * n;
    MemSink ms = {sp, calloc((size_t)len, sizeof(double)), calloc((size_t)len, sizeof(double)), 0};
    GfFlowSink sink = {&ms, mem_put};
    ck_assert_int_eq(gf_flow_run(&r->dist, &r->fw, sp, r->par, tensor ? &sink : NULL, NULL, &r->res, NULL), 0);
    /* every entry was written by exactly one rank; the others hold 0 */
    MPI_Allreduce(MPI_IN_PLACE, ms.G, (int)len, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, ms.J, (int)len, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    r->G = ms.G;
    r->J = ms.J;
}

static void flow_free(FlowRun *r)
{
    gf_flow_result_free(&r->res);
    free(r->spec.targets), free(r->spec.units_k), free(r->spec.units_v);
    free(r->G), free(r->J);
    gf_forward_free(&r->fw);
    gf_model_free(&r->dist);
    gf_model_free(&r->full);
    gf_par_destroy(r->par);
}

static double world_max(double v)
{
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return v;
}

static void base_config(GfConfig *cfg, int64_t n, int64_t T, GfActivation act, double w_max)
{
    gf_config_defaults(cfg);
    cfg->units = n;
    cfg->inputs = 2;
    cfg->outputs = n < 2 ? n : 2;
    cfg->steps = T;
    cfg->activation = act;
    cfg->w_max = w_max;
    cfg->bias_scale = 0.4;
    cfg->a0_scale = 0.5;
    cfg->seed = 1997;
    strcpy(cfg->target_times, "2:T");
}

/* ---- 1. the paper's path sum ---- */

/* Sum over paths k = l_t, l_{t-1}, ..., l_s = v of prod_{tau=s}^{t-1}
 * f'_{l_tau}(net(tau)) w_{l_{tau+1} l_tau}, enumerated explicitly. */
static double path_sum(const Ref *ref, const double *W, int64_t n, int64_t v, int64_t k, int64_t s,
                       int64_t t)
{
    if (s == t)
        return v == k ? 1.0 : 0.0;
    /* l_{t-1} = l ranges over all units: the step from l_{t-1} at time t-1 to k */
    double sum = 0;
    for (int64_t l = 0; l < n; ++l) {
        const double step = ref->fp[(t - 2) * n + l] * W[k * n + l];
        sum += step * path_sum(ref, W, n, v, l, s, t - 1);
    }
    return sum;
}

START_TEST(equals_paper_path_sum)
{
    /* tolerance: at most n^(L-1) = 81 products of 5 factors, summed: 1e-13 relative */
    const GfActivation act = (GfActivation)(_i % GF_ACT_COUNT);
    const int grid_t = (_i / GF_ACT_COUNT == 1 && world_size % 2 == 0) ? 2 : 1;
    const int64_t n = 3, T = 8, L = 5, targets[3] = {4, 7, 8};
    GfConfig cfg;
    base_config(&cfg, n, T, act, act == GF_ACT_LOGISTIC ? 3.0 : 1.2);
    FlowRun r;
    flow_run(&r, &cfg, NULL, grid_t, targets, 3, L, 1, 1);
    Ref ref;
    ref_alloc(&ref, n, cfg.inputs, T);
    reference(&r.full, &ref, 0);
    double err = 0, scale = 0;
    int nan_ok = 1;
    for (int64_t i = 0; i < 3; ++i)
        for (int64_t lag = 0; lag <= L; ++lag)
            for (int64_t v = 0; v < n; ++v)
                for (int64_t k = 0; k < n; ++k) {
                    const double g = r.G[((i * (L + 1) + lag) * n + v) * n + k];
                    const int64_t s = targets[i] - lag;
                    if (s < 1) {
                        nan_ok &= isnan(g);
                        continue;
                    }
                    const double p = path_sum(&ref, r.full.W, n, v, k, s, targets[i]);
                    err = fmax(err, fabs(g - p));
                    scale = fmax(scale, fabs(p));
                }
    ck_assert_msg(world_max(err / scale) <= 1e-13, "G vs path sum: %g (%s)", err / scale, gf_act_name(act));
    ck_assert_msg(world_max(!nan_ok) == 0, "G is not NaN exactly where t - L < 1");
    ref_free(&ref);
    flow_free(&r);
}
END_TEST

/* ---- 2. finite differences of the backward recursion ---- */

START_TEST(perturbing_delta_t_moves_delta_s_by_G)
{
    /* delta(s) depends linearly on delta(t): the difference quotient with
     * eps = 1e-6 equals G up to rounding; tolerance 1e-6 relative. */
    const GfActivation act = (GfActivation)_i;
    const int64_t n = 6, T = 12, L = 9, targets[1] = {T - 1};
    GfConfig cfg;
    base_config(&cfg, n, T, act, 0.9);
    FlowRun r;
    flow_run(&r, &cfg, NULL, 1, targets, 1, L, 1, 0);
    Ref ref;
    ref_alloc(&ref, n, cfg.inputs, T);
    reference(&r.full, &ref, 1);
    const int64_t t = targets[0];
    const double eps = 1e-6;
    double err = 0, scale = 0;
    double *d = malloc((size_t)((T + 1) * n) * sizeof(double));
    for (int64_t k = 0; k < n; ++k) {
        /* rerun the recursion below t with delta_k(t) += eps */
        memcpy(d, ref.delta, (size_t)(T * n) * sizeof(double));
        d[(t - 1) * n + k] += eps;
        for (int64_t s = t - 1; s >= 1; --s)
            for (int64_t i = 0; i < n; ++i) {
                double g = 0;
                if (r.full.mask[s - 1] && i >= n - cfg.outputs)
                    g = ref.a[s * n + i] - r.full.d[(s - 1) * cfg.outputs + i - (n - cfg.outputs)];
                for (int64_t j = 0; j < n; ++j)
                    g += r.full.W[j * n + i] * d[s * n + j];
                d[(s - 1) * n + i] = ref.fp[(s - 1) * n + i] * g;
            }
        for (int64_t lag = 0; lag <= L; ++lag)
            for (int64_t v = 0; v < n; ++v) {
                const double fd = (d[(t - lag - 1) * n + v] - ref.delta[(t - lag - 1) * n + v]) / eps;
                const double g = r.G[(lag * n + v) * n + k];
                err = fmax(err, fabs(fd - g));
                scale = fmax(scale, fabs(g));
            }
    }
    ck_assert_msg(world_max(err / scale) <= 1e-6, "finite differences vs G: %g", err / scale);
    free(d);
    ref_free(&ref);
    flow_free(&r);
}
END_TEST

/* ---- 3. the bounds on random nets ---- */

START_TEST(bounds_hold_on_random_nets)
{
    /* 240 nets: n 1..64, every activation, both inits, w_max (or gain) from
     * 0.01 to 10 log-uniformly.  The norms may touch the bound only by rounding:
     * 1e-12 in log10. */
    int violations = 0, checked = 0;
    char where[256] = "";
    for (int net = 0; net < 240; ++net) {
        const double u1 = gf_rng_uniform(5, 90, (uint64_t)net), u2 = gf_rng_uniform(5, 91, (uint64_t)net);
        const int64_t n = 1 + (int64_t)(64 * u1 * u1); /* more small nets than large */
        const int64_t T = 6 + net % 15;
        GfConfig cfg;
        base_config(&cfg, n, T, (GfActivation)(net % GF_ACT_COUNT), pow(10.0, -2.0 + 3.0 * u2));
        cfg.init = net % 2 ? GF_INIT_GAUSSIAN : GF_INIT_UNIFORM;
        cfg.gain = cfg.w_max;
        cfg.seed = 1000 + (uint64_t)net;
        const int64_t targets[2] = {T / 2, T};
        FlowRun r;
        flow_run(&r, &cfg, NULL, 1, targets, 2, T - 1, 0, 0);
        const GfFlowResult *res = &r.res;
        const double l10n = log10((double)n);
        const double col = log10(res->fprime_max_theory * res->norm_A_columns);
        for (int64_t k = 0; k < 2 * T; ++k) {
            const int64_t lag = k % T;
            if (isnan(res->log10_bound[k]))
                continue;
            ++checked;
            const double norms[2] = {res->log10_fro[k], res->log10_max[k]};
            const double col_bound = lag == 0 ? l10n : l10n + (double)lag * col;
            for (int q = 0; q < 2; ++q)
                if (norms[q] > res->log10_bound[k] + 1e-12 ||
                    norms[q] > res->log10_bound_measured[k] + 1e-12 || norms[q] > col_bound + 1e-12) {
                    if (!violations++)
                        snprintf(where, sizeof where, "net %d (n=%lld, %s, w_max %g) lag %lld: %g > %g",
                                 net, (long long)n, gf_act_name(cfg.activation), cfg.w_max,
                                 (long long)lag, norms[q], res->log10_bound[k]);
                }
        }
        ck_assert(res->fprime_max_measured <= res->fprime_max_theory);
        flow_free(&r);
    }
    ck_assert_msg(world_max(violations) == 0, "%d bound violations, first: %s", violations, where);
    ck_assert_int_ge(checked, 240 * 6);
}
END_TEST

START_TEST(lambda_below_one_decays)
{
    /* logistic, |w_ij| <= w_max < 4/n: log10 ||G||_F <= log10 n + L log10 lambda */
    int bad = 0;
    for (int net = 0; net < 24; ++net) {
        const int64_t n = 2 + net * 2, T = 40;
        GfConfig cfg;
        base_config(&cfg, n, T, GF_ACT_LOGISTIC, (0.3 + 0.65 * (net % 5) / 4.0) * 4.0 / (double)n);
        cfg.seed = 77 + (uint64_t)net;
        const int64_t targets[1] = {T};
        FlowRun r;
        flow_run(&r, &cfg, NULL, 1, targets, 1, T - 1, 0, 0);
        ck_assert(r.res.lambda < 1.0);
        for (int64_t lag = 0; lag < T; ++lag)
            bad += r.res.log10_fro[lag] > log10((double)n) + (double)lag * log10(r.res.lambda) + 1e-12;
        flow_free(&r);
    }
    ck_assert_msg(world_max(bad) == 0, "%d lags exceed n lambda^L", bad);
}
END_TEST

/* ---- 4. exact log-space norms where the entries under/overflow ---- */

START_TEST(log_space_is_exact_at_lag_5000)
{
    const double c = _i == 0 ? 0.5 : 1.5;
    const int64_t n = 4, T = 5001, L = 5000, targets[1] = {T};
    GfConfig cfg;
    base_config(&cfg, n, T, GF_ACT_LINEAR, 0.0);
    cfg.inputs = 0;
    cfg.bias_scale = cfg.a0_scale = 0.0;
    double W[16] = {0};
    for (int i = 0; i < 4; ++i)
        W[i * 4 + i] = c;
    FlowRun r;
    flow_run(&r, &cfg, W, 1, targets, 1, L, 1, 1);
    /* G(t-L, t) = c^L I: ||.||_F = sqrt(n) c^L, max = c^L; J likewise */
    double err = 0;
    for (int64_t lag = 0; lag <= L; ++lag) {
        const double fro = 0.5 * log10((double)n) + (double)lag * log10(c), mx = (double)lag * log10(c);
        err = fmax(err, fabs(r.res.log10_fro[lag] - fro));
        err = fmax(err, fabs(r.res.log10_max[lag] - mx));
        err = fmax(err, fabs(r.res.J_log10_fro[lag] - fro));
        err = fmax(err, fabs(r.res.J_log10_max[lag] - mx));
    }
    ck_assert_msg(world_max(err) <= 1e-9, "log10 norms off by %g", err);
    /* the stored entries themselves have left double's range at lag 5000 ... */
    const double g = r.G[(L * n + 1) * n + 1];
    ck_assert_msg(c < 1 ? g == 0.0 : isinf(g), "G entry at lag 5000 is %g", g);
    /* ... and are exact where representable: c^20 */
    ck_assert(r.G[(20 * n + 2) * n + 2] == pow(c, 20) && r.G[(20 * n + 2) * n + 1] == 0.0);
    flow_free(&r);
}
END_TEST

/* ---- 5. the per-lag share of the gradient ---- */

START_TEST(contribution_is_delta_of_one_target)
{
    /* ||delta^(t)(t-L)|| ||a(t-L-1)|| with delta^(t) from a BPTT with the error
     * at t alone; computed serially here. Tolerance 1e-12 relative. */
    const int64_t n = 5, T = 10, L = 9, targets[2] = {6, 10};
    GfConfig cfg;
    base_config(&cfg, n, T, GF_ACT_TANH, 0.8);
    FlowRun r;
    flow_run(&r, &cfg, NULL, world_size % 2 == 0 ? 2 : 1, targets, 2, L, 0, 0);
    Ref ref;
    ref_alloc(&ref, n, cfg.inputs, T);
    reference(&r.full, &ref, 0);
    double err = 0;
    int nan_ok = 1;
    for (int i = 0; i < 2; ++i) {
        const int64_t t = targets[i], no = cfg.outputs;
        double u[5], nu[5];
        for (int64_t j = 0; j < n; ++j)
            u[j] = j >= n - no ? ref.fp[(t - 1) * n + j] *
                                     (ref.a[t * n + j] - r.full.d[(t - 1) * no + j - (n - no)]) : 0;
        for (int64_t lag = 0; lag <= L; ++lag) {
            const double got = r.res.contribution[i * (L + 1) + lag];
            if (t - lag < 1) {
                nan_ok &= isnan(got);
                continue;
            }
            if (lag > 0) {
                for (int64_t j = 0; j < n; ++j) {
                    nu[j] = 0;
                    for (int64_t k = 0; k < n; ++k)
                        nu[j] += r.full.W[k * n + j] * u[k];
                    nu[j] *= ref.fp[(t - lag - 1) * n + j];
                }
                memcpy(u, nu, sizeof u);
            }
            double uu = 0, aa = 0;
            for (int64_t j = 0; j < n; ++j)
                uu += u[j] * u[j], aa += ref.a[(t - lag - 1) * n + j] * ref.a[(t - lag - 1) * n + j];
            const double want = sqrt(uu) * sqrt(aa);
            err = fmax(err, fabs(got - want) / want);
        }
    }
    ck_assert_msg(world_max(err) <= 1e-12, "contribution off by %g", err);
    ck_assert_msg(world_max(!nan_ok) == 0, "contribution is not NaN where t - L < 1");
    ref_free(&ref);
    flow_free(&r);
}
END_TEST

START_TEST(unit_lists_and_slopes)
{
    int64_t *u = NULL, c = 0;
    ck_assert_int_eq(gf_flow_parse_units("outputs", 10, 3, "--k", &u, &c), 0);
    ck_assert(c == 3 && u[0] == 7 && u[2] == 9);
    free(u);
    ck_assert_int_eq(gf_flow_parse_units("5,0:4:2,9", 10, 3, "--k", &u, &c), 0);
    ck_assert(c == 5 && u[0] == 0 && u[1] == 2 && u[2] == 4 && u[3] == 5 && u[4] == 9);
    free(u);
    const char *bad[] = {"10", "3:1", "a", "1:2:0", "", "1,,2", "0:3:1:1"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; ++k)
        ck_assert_msg(gf_flow_parse_units(bad[k], 10, 3, "--k", &u, &c) != 0, "'%s' accepted", bad[k]);
    const double y[6] = {1.0, -1.0, NAN, -5.0, -7.0, -INFINITY};
    ck_assert(fabs(gf_flow_fit_slope(y, 6) - (-2.0)) < 1e-14);
    ck_assert(isnan(gf_flow_fit_slope(y, 1)));
}
END_TEST

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    Suite *s = suite_create("flow");
    TCase *tc = tcase_create("flow");
    tcase_add_test(tc, unit_lists_and_slopes);
    tcase_add_loop_test(tc, equals_paper_path_sum, 0, 2 * GF_ACT_COUNT);
    tcase_add_loop_test(tc, perturbing_delta_t_moves_delta_s_by_G, 0, GF_ACT_COUNT);
    tcase_add_test(tc, bounds_hold_on_random_nets);
    tcase_add_test(tc, lambda_below_one_decays);
    tcase_add_loop_test(tc, log_space_is_exact_at_lag_5000, 0, 2);
    tcase_add_test(tc, contribution_is_delta_of_one_target);
    suite_add_tcase(s, tc);
    return run_mpi_suite(s);
}
