/* flow.c — gradient-flow tensor, log-space norms, bounds, per-lag share (see flow.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/error.h"
#include "gradflow/flow.h"

#define LOG10_2 0.301029995663981195213738894724493027

/* ---- unit lists ---- */

static int parse_index(const char *s, const char *end, int64_t *out)
{
    if (s == end || end - s > 18)
        return -1;
    int64_t v = 0;
    for (const char *p = s; p < end; ++p) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}

int gf_flow_parse_units(const char *spec, int64_t n, int64_t n_out, const char *option,
                        int64_t **units, int64_t *count)
{
    *units = NULL;
    *count = 0;
    unsigned char *mask = gf_calloc((size_t)n, 1, "unit list");
    if (!mask)
        return GF_ENOMEM;
    int rc = GF_OK;
    if (!strcmp(spec, "all")) {
        memset(mask, 1, (size_t)n);
    } else if (!strcmp(spec, "outputs")) {
        memset(mask + (n - n_out), 1, (size_t)n_out);
    } else {
        const char *item = spec;
        for (;;) {
            const char *stop = strchr(item, ',');
            if (!stop)
                stop = item + strlen(item);
            const char *c1 = memchr(item, ':', (size_t)(stop - item));
            const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(stop - c1 - 1)) : NULL;
            int64_t a = 0, b = 0, step = 1;
            int bad;
            if (!c1)
                bad = parse_index(item, stop, &a) || (b = a, 0);
            else
                bad = parse_index(item, c1, &a) || parse_index(c1 + 1, c2 ? c2 : stop, &b) ||
                      (c2 && (parse_index(c2 + 1, stop, &step) || memchr(c2 + 1, ':', (size_t)(stop - c2 - 1))));
            if (bad || step < 1 || a > b || b >= n) {
                rc = gf_error(GF_EUSAGE,
                              "%s: '%.*s' is not allowed; give 'all', 'outputs', or a comma list of "
                              "0-based units i and ranges a:b[:step] with 0 <= a <= b < n = %lld",
                              option, (int)(stop - item), item, (long long)n);
                break;
            }
            for (int64_t i = a; i <= b; i += step)
                mask[i] = 1;
            if (!*stop)
                break;
            item = stop + 1;
        }
    }
    int64_t c = 0;
    for (int64_t i = 0; i < n; ++i)
        c += mask[i];
    if (!rc && c == 0)
        rc = gf_error(GF_EUSAGE, "%s: the list is empty", option);
    if (!rc && !(*units = gf_calloc((size_t)c, sizeof(int64_t), "unit list")))
        rc = GF_ENOMEM;
    if (!rc) {
        for (int64_t i = 0, k = 0; i < n; ++i)
            if (mask[i])
                (*units)[k++] = i;
        *count = c;
    }
    free(mask);
    return rc;
}

/* ---- sizes and the schedule ---- */

/* First index a of the sorted list with list[a] >= x. */
static int64_t lower_bound(const int64_t *list, int64_t len, int64_t x)
{
    int64_t lo = 0, hi = len;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (list[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int64_t gf_flow_max_v_rows(const GfFlowSpec *spec, const GfPar *par)
{
    int64_t most = 1;
    for (int r = 0; r < gf_par_unit_size(par); ++r) {
        const GfBlock b = gf_par_units_of(par, r);
        const int64_t c = lower_bound(spec->units_v, spec->n_v, b.lo + b.count) -
                          lower_bound(spec->units_v, spec->n_v, b.lo);
        most = c > most ? c : most;
    }
    /* the smallest divisor of N_v that holds any rank's rows: chunks then tile
     * the dataset exactly (no partial edge chunk, whose padding HDF5 would
     * leave unwritten and the file not byte-reproducible), and they match the
     * ranks' row blocks whenever N_v splits evenly */
    int64_t cv = most;
    while (spec->n_v % cv)
        ++cv;
    return cv;
}

int64_t gf_flow_batch_lags(const GfFlowSpec *spec, int64_t cv)
{
    const double slab = (double)cv * (double)spec->n_k * 8.0 * (spec->jacobian ? 2.0 : 1.0);
    int64_t cl = (int64_t)((1 << 20) / slab);
    if (cl < 1)
        cl = 1;
    if (cl > spec->max_lag + 1)
        cl = spec->max_lag + 1;
    while ((spec->max_lag + 1) % cl) /* a divisor of L+1: no partial chunk (see above) */
        --cl;
    return cl;
}

/* Column panel width of the products: one panel when the (n, K1) scratch is
 * small, else Pu panels, so the scratch stays O(n K1 / Pu). */
static int64_t panel_width(int64_t n, int64_t K1, int Pu)
{
    return (double)n * (double)K1 * 8.0 <= 64.0 * (1 << 20) ? K1 : (K1 + Pu - 1) / Pu;
}

int64_t gf_flow_estimate_rank_bytes(const GfFlowSpec *spec, int64_t n, int64_t n_local, int Pu, int64_t cv)
{
    const int64_t K1 = spec->n_k * (spec->jacobian ? 2 : 1) + 1, kb = panel_width(n, K1, Pu);
    const int64_t cl = gf_flow_batch_lags(spec, cv);
    const int64_t doubles = n_local * K1 + n * kb + n_local * kb + 3 * K1 + n
                            + (spec->tensor ? (spec->jacobian ? 2 : 1) * cl * cv * spec->n_k : 0)
                            + (spec->jacobian ? 8 : 6) * spec->n_t * (spec->max_lag + 1);
    return 8 * doubles + (int64_t)sizeof(int) * spec->n_t;
}

/* Valid lags of target t: 0 .. min(L, t-1). */
static int64_t valid_lags(const GfFlowSpec *spec, int64_t t)
{
    return (t - 1 < spec->max_lag ? t - 1 : spec->max_lag) + 1;
}

/* Assigns each target to a time group, largest lag count first onto the least
 * loaded group (ties: lowest index), so the groups finish together. */
static void assign_groups(const GfFlowSpec *spec, int groups, int *owner)
{
    int64_t *load = calloc((size_t)groups, sizeof(int64_t));
    int64_t *order = malloc((size_t)spec->n_t * sizeof(int64_t));
    for (int64_t i = 0; i < spec->n_t; ++i)
        order[i] = i;
    /* targets ascend, so their lag counts ascend: walk from the end */
    for (int64_t k = spec->n_t - 1; k >= 0; --k) {
        const int64_t i = order[k];
        int g = 0;
        for (int h = 1; h < groups; ++h)
            if (load[h] < load[g])
                g = h;
        owner[i] = g;
        load[g] += valid_lags(spec, spec->targets[i]);
    }
    free(order);
    free(load);
}

/* ---- results ---- */

int gf_flow_result_alloc(const GfFlowSpec *spec, GfFlowResult *res)
{
    memset(res, 0, sizeof *res);
    const size_t len = (size_t)spec->n_t * (size_t)(spec->max_lag + 1);
    double **arrays[] = {&res->log10_fro, &res->log10_max, &res->log10_bound,
                         &res->log10_bound_measured, &res->contribution, &res->log10_contribution,
                         &res->J_log10_fro, &res->J_log10_max};
    const int count = spec->jacobian ? 8 : 6;
    for (int k = 0; k < count; ++k)
        if (!(*arrays[k] = gf_calloc(len, sizeof(double), "flow norms (N_t x L+1)"))) {
            gf_flow_result_free(res);
            return GF_ENOMEM;
        }
    return GF_OK;
}

void gf_flow_result_free(GfFlowResult *res)
{
    free(res->log10_fro), free(res->log10_max), free(res->log10_bound);
    free(res->log10_bound_measured), free(res->contribution), free(res->log10_contribution);
    free(res->J_log10_fro), free(res->J_log10_max);
    memset(res, 0, sizeof *res);
}

double gf_flow_fit_slope(const double *y, int64_t count)
{
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int64_t k = 0; k < count; ++k)
        if (isfinite(y[k])) {
            const double x = (double)k;
            n += 1, sx += x, sy += y[k], sxx += x * x, sxy += x * y[k];
        }
    const double den = n * sxx - sx * sx;
    return n >= 2 && den > 0 ? (n * sxy - sx * sy) / den : NAN;
}

/* ---- the recurrence for one target ---- */

typedef struct {
    const GfModel *mo;
    const GfForward *fw;
    const GfFlowSpec *spec;
    const GfPar *par;
    int64_t n, nl, lo, nk, K1;  /* K1 = columns of M: G (nk), J (nk if jacobian), u (1) */
    int64_t cj, cu;             /* first J column, the u column */
    int64_t va0, nva;           /* this rank's V rows: units_v[va0 .. va0+nva) */
    int64_t kb;                 /* column panel width of the products */
    double *M;                  /* (n_local, K1) mantissas, row-major */
    int64_t *e;                 /* (K1) binary exponents: column b is M[:,b] * 2^e[b] */
    double *P;                  /* (n, kb) partial products W_local^T M[:, panel] */
    double *R;                  /* (n_local, kb) this rank's rows of the summed panel */
    double *stat;               /* (2 K1) sums of squares, then max abs, per column */
} Flow;

static const double *fprime_at(const Flow *f, int64_t tau) { return f->fw->fprime + (tau - 1) * f->nl; }

/* Rescales every column by the exact power of two of its largest entry
 * (over the group), so entries stay near 1 and only e[] grows. */
static void renormalise(Flow *f)
{
    double *mx = f->stat;
    for (int64_t b = 0; b < f->K1; ++b)
        mx[b] = 0.0;
    for (int64_t r = 0; r < f->nl; ++r)
        for (int64_t b = 0; b < f->K1; ++b)
            mx[b] = fmax(mx[b], fabs(f->M[r * f->K1 + b]));
    gf_par_unit_max_vec(f->par, mx, (int)f->K1);
    for (int64_t b = 0; b < f->K1; ++b) {
        if (!(mx[b] > 0.0) || !isfinite(mx[b]))
            continue;
        const int k = ilogb(mx[b]);
        if (k == 0)
            continue;
        for (int64_t r = 0; r < f->nl; ++r)
            f->M[r * f->K1 + b] = ldexp(f->M[r * f->K1 + b], -k);
        f->e[b] += k;
    }
}

/* Lag 0 for target time t. */
static void start(Flow *f, int64_t t)
{
    const GfModel *mo = f->mo;
    const int64_t first_out = mo->n - mo->n_out;
    const double *fp = fprime_at(f, t), *a = f->fw->a + t * mo->n;
    memset(f->M, 0, (size_t)(f->nl * f->K1) * sizeof(double));
    for (int64_t b = 0; b < f->nk; ++b) {
        const int64_t k = f->spec->units_k[b];
        if (k >= f->lo && k < f->lo + f->nl) {
            f->M[(k - f->lo) * f->K1 + b] = 1.0;
            if (f->spec->jacobian)
                f->M[(k - f->lo) * f->K1 + f->cj + b] = 1.0;
        }
    }
    for (int64_t r = 0; r < f->nl; ++r) {
        const int64_t i = f->lo + r;
        const double e = mo->mask[t - 1] && i >= first_out
                             ? a[i] - mo->d[(t - 1) * mo->n_out + (i - first_out)] : 0.0;
        f->M[r * f->K1 + f->cu] = fp[r] * e;
    }
    for (int64_t b = 0; b < f->K1; ++b)
        f->e[b] = 0;
    renormalise(f);
}

/* From lag L to L+1 of target t (requires t - L - 1 >= 1). */
static void advance(Flow *f, int64_t t, int64_t L)
{
    const int64_t n = f->n, nl = f->nl, K1 = f->K1;
    if (f->spec->jacobian) { /* H_{L+1} = W^T (F'(t-L) H_L): scale before the product */
        const double *fp = fprime_at(f, t - L);
        for (int64_t r = 0; r < nl; ++r)
            for (int64_t b = 0; b < f->nk; ++b)
                f->M[r * K1 + f->cj + b] *= fp[r];
    }
    for (int64_t c0 = 0; c0 < K1; c0 += f->kb) {
        const int64_t w = K1 - c0 < f->kb ? K1 - c0 : f->kb;
        /* (n, w) = W_local^T (n x n_local) * M[:, c0:c0+w] (n_local x w) */
        if (nl > 0)
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)w, (int)nl, 1.0,
                        f->mo->W, (int)n, f->M + c0, (int)K1, 0.0, f->P, (int)w);
        else
            memset(f->P, 0, (size_t)(n * w) * sizeof(double));
        gf_par_reduce_scatter_rows(f->par, f->P, f->R, (int)w);
        for (int64_t r = 0; r < nl; ++r)
            memcpy(f->M + r * K1 + c0, f->R + r * w, (size_t)w * sizeof(double));
    }
    /* G and u: F'(t-L-1) after the product */
    const double *fp = fprime_at(f, t - L - 1);
    for (int64_t r = 0; r < nl; ++r) {
        double *row = f->M + r * K1;
        for (int64_t b = 0; b < f->nk; ++b)
            row[b] *= fp[r];
        row[f->cu] *= fp[r];
    }
    renormalise(f);
}

/* log10 sqrt(sum_b S_b 4^e_b) over columns [c0, c0+cnt), exactly in log space. */
static double log10_fro(const double *S, const int64_t *e, int64_t c0, int64_t cnt)
{
    int64_t emax = INT64_MIN;
    for (int64_t b = c0; b < c0 + cnt; ++b)
        if (S[b] > 0 && e[b] > emax)
            emax = e[b];
    if (emax == INT64_MIN)
        return -INFINITY;
    double sum = 0;
    for (int64_t b = c0; b < c0 + cnt; ++b)
        if (S[b] > 0)
            sum += ldexp(S[b], (int)(2 * (e[b] - emax) > -4000 ? 2 * (e[b] - emax) : -4000));
    return 0.5 * log10(sum) + (double)emax * LOG10_2;
}

static double log10_max(const double *X, const int64_t *e, int64_t c0, int64_t cnt)
{
    double best = -INFINITY;
    for (int64_t b = c0; b < c0 + cnt; ++b)
        if (X[b] > 0)
            best = fmax(best, log10(X[b]) + (double)e[b] * LOG10_2);
    return best;
}

/* Norms of lag L of target index i (time t) into res (unit rank 0 records),
 * and this rank's V rows of G (and J) into gbuf/jbuf (nva, nk). */
static void record(Flow *f, int64_t i, int64_t t, int64_t L, GfFlowResult *res, double *gbuf,
                   double *jbuf)
{
    const int64_t K1 = f->K1, nk = f->nk;
    double *S = f->stat, *X = f->stat + K1;
    for (int64_t b = 0; b < 2 * K1; ++b)
        f->stat[b] = 0.0;
    for (int64_t a = 0; a < f->nva; ++a) {
        const double *row = f->M + (f->spec->units_v[f->va0 + a] - f->lo) * K1;
        for (int64_t b = 0; b < f->cu; ++b) {
            S[b] += row[b] * row[b];
            X[b] = fmax(X[b], fabs(row[b]));
        }
        for (int64_t b = 0; gbuf && b < nk; ++b)
            gbuf[a * nk + b] = ldexp(row[b], (int)f->e[b]);
        for (int64_t b = 0; jbuf && b < nk; ++b)
            jbuf[a * nk + b] = ldexp(row[f->cj + b], (int)f->e[f->cj + b]);
    }
    for (int64_t r = 0; r < f->nl; ++r) /* delta^(t) over all units, not only V */
        S[f->cu] += f->M[r * K1 + f->cu] * f->M[r * K1 + f->cu];
    gf_par_unit_sum_vec(f->par, S, (int)K1);
    gf_par_unit_max_vec(f->par, X, (int)K1);
    if (gf_par_unit_rank(f->par) != 0)
        return;
    const int64_t at = i * (f->spec->max_lag + 1) + L;
    res->log10_fro[at] = log10_fro(S, f->e, 0, nk);
    res->log10_max[at] = log10_max(X, f->e, 0, nk);
    if (f->spec->jacobian) {
        res->J_log10_fro[at] = log10_fro(S, f->e, f->cj, nk);
        res->J_log10_max[at] = log10_max(X, f->e, f->cj, nk);
    }
    const double *a = f->fw->a + (t - L - 1) * f->n; /* a(t-L-1), replicated */
    double aa = 0;
    for (int64_t j = 0; j < f->n; ++j)
        aa += a[j] * a[j];
    const double lc = S[f->cu] > 0 && aa > 0
                          ? 0.5 * log10(S[f->cu]) + (double)f->e[f->cu] * LOG10_2 + 0.5 * log10(aa)
                          : -INFINITY;
    res->log10_contribution[at] = lc;
    res->contribution[at] = pow(10.0, lc);
}

static void mark_invalid(const Flow *f, int64_t i, int64_t L, GfFlowResult *res, double *gbuf, double *jbuf)
{
    for (int64_t k = 0; gbuf && k < f->nva * f->nk; ++k)
        gbuf[k] = NAN;
    for (int64_t k = 0; jbuf && k < f->nva * f->nk; ++k)
        jbuf[k] = NAN;
    if (gf_par_unit_rank(f->par) != 0)
        return;
    const int64_t at = i * (f->spec->max_lag + 1) + L;
    res->log10_fro[at] = res->log10_max[at] = NAN;
    res->contribution[at] = res->log10_contribution[at] = NAN;
    if (f->spec->jacobian)
        res->J_log10_fro[at] = res->J_log10_max[at] = NAN;
}

/* max_i sum_j |w_ij|, max_j sum_i |w_ij|, max |w_ij|, measured max f'. */
static void weight_norms(const GfModel *mo, const GfForward *fw, const GfPar *par, GfFlowResult *res,
                         double *colsum)
{
    double rowmax = 0, wmax = 0, fpmax = 0;
    memset(colsum, 0, (size_t)mo->n * sizeof(double));
    for (int64_t r = 0; r < mo->n_local; ++r) {
        double s = 0;
        for (int64_t j = 0; j < mo->n; ++j) {
            const double w = fabs(mo->W[r * mo->n + j]);
            s += w;
            colsum[j] += w;
            wmax = fmax(wmax, w);
        }
        rowmax = fmax(rowmax, s);
    }
    for (int64_t k = 0; k < mo->T * mo->n_local; ++k)
        fpmax = fmax(fpmax, fw->fprime[k]);
    gf_par_unit_sum_vec(par, colsum, (int)mo->n);
    double colmax = 0;
    for (int64_t j = 0; j < mo->n; ++j)
        colmax = fmax(colmax, colsum[j]);
    res->norm_A = gf_par_unit_max(par, rowmax);
    res->norm_A_columns = colmax;
    res->w_max = gf_par_unit_max(par, wmax);
    res->fprime_max_theory = gf_act_fprime_max(mo->act);
    res->fprime_max_measured = gf_par_unit_max(par, fpmax);
    res->lambda = (double)mo->n * res->w_max * res->fprime_max_theory;
}

static void bounds(const GfModel *mo, const GfFlowSpec *spec, GfFlowResult *res)
{
    const double l10n = log10((double)mo->n);
    const double th = log10(res->fprime_max_theory * res->norm_A);
    const double me = log10(res->fprime_max_measured * res->norm_A);
    for (int64_t i = 0; i < spec->n_t; ++i)
        for (int64_t L = 0; L <= spec->max_lag; ++L) {
            const int64_t at = i * (spec->max_lag + 1) + L;
            const int valid = spec->targets[i] - L >= 1;
            /* L = 0: the bound is n whatever the factor (avoid 0 * -inf) */
            res->log10_bound[at] = !valid ? NAN : L == 0 ? l10n : l10n + (double)L * th;
            res->log10_bound_measured[at] = !valid ? NAN : L == 0 ? l10n : l10n + (double)L * me;
        }
}

int gf_flow_run(const GfModel *mo, const GfForward *fw, const GfFlowSpec *spec, const GfPar *par,
                GfFlowSink *sink, GfFlowResult *res, GfProgress *progress)
{
    Flow f;
    memset(&f, 0, sizeof f);
    f.mo = mo, f.fw = fw, f.spec = spec, f.par = par;
    f.n = mo->n, f.nl = mo->n_local, f.lo = mo->lo, f.nk = spec->n_k;
    f.cj = f.nk;
    f.K1 = f.nk * (spec->jacobian ? 2 : 1) + 1;
    f.cu = f.K1 - 1;
    f.va0 = lower_bound(spec->units_v, spec->n_v, f.lo);
    f.nva = lower_bound(spec->units_v, spec->n_v, f.lo + f.nl) - f.va0;
    f.kb = panel_width(f.n, f.K1, gf_par_unit_size(par));

    const int groups = gf_par_time_size(par), me = gf_par_time_rank(par);
    const int64_t cv = gf_flow_max_v_rows(spec, par), cl = gf_flow_batch_lags(spec, cv);
    const int64_t per_target = (spec->max_lag + 1) / cl; /* batches of cl lags; cl divides L+1 */
    int *owner = malloc((size_t)(spec->n_t ? spec->n_t : 1) * sizeof(int));
    double *colsum = gf_calloc((size_t)f.n, sizeof(double), "column sums (n)");
    f.M = gf_calloc((size_t)(f.nl * f.K1), sizeof(double), "flow block (n_local x K)");
    f.e = gf_calloc((size_t)f.K1, sizeof(int64_t), "flow exponents");
    f.P = gf_calloc((size_t)(f.n * f.kb), sizeof(double), "flow partial products (n x panel)");
    f.R = gf_calloc((size_t)(f.nl * f.kb), sizeof(double), "flow panel rows");
    f.stat = gf_calloc((size_t)(2 * f.K1), sizeof(double), "flow statistics");
    const size_t slab = (size_t)(cl * f.nva * f.nk);
    double *gbuf = spec->tensor ? gf_calloc(slab, sizeof(double), "G write buffer") : NULL;
    double *jbuf = spec->tensor && spec->jacobian ? gf_calloc(slab, sizeof(double), "J write buffer") : NULL;
    int rc = (!owner || !colsum || !f.M || !f.e || !f.P || !f.R || !f.stat ||
              (spec->tensor && !gbuf) || (spec->tensor && spec->jacobian && !jbuf))
                 ? gf_error(GF_ENOMEM, "out of memory for the flow tensor") : GF_OK;
    if (!(rc = gf_par_agree(par, rc))) {
        weight_norms(mo, fw, par, res, colsum);
        bounds(mo, spec, res);
        assign_groups(spec, groups, owner);

        /* Every rank walks the same number of rounds; a round is one batch of
         * cl lags of one of its group's targets, or nothing. */
        int64_t rounds = 0, mine = 0, total_lags = 0;
        for (int g = 0; g < groups; ++g) {
            int64_t c = 0;
            for (int64_t i = 0; i < spec->n_t; ++i)
                if (owner[i] == g) {
                    c += per_target;
                    if (g == me)
                        total_lags += valid_lags(spec, spec->targets[i]);
                }
            rounds = c > rounds ? c : rounds;
            if (g == me)
                mine = c;
        }
        if (progress)
            progress->total = total_lags;
        int64_t i = -1, done = 0, next = 0; /* next: index to look for my next target from */
        for (int64_t round = 0; round < rounds && !rc; ++round) {
            int64_t target = -1, lag0 = 0, nlags = 0;
            if (round < mine) {
                const int64_t batch = round % per_target;
                if (batch == 0) {
                    for (i = next; owner[i] != me; ++i)
                        ;
                    next = i + 1;
                }
                const int64_t t = spec->targets[i];
                target = i;
                lag0 = batch * cl;
                nlags = spec->max_lag + 1 - lag0 < cl ? spec->max_lag + 1 - lag0 : cl;
                for (int64_t L = lag0; L < lag0 + nlags; ++L) {
                    double *gb = gbuf ? gbuf + (L - lag0) * f.nva * f.nk : NULL;
                    double *jb = jbuf ? jbuf + (L - lag0) * f.nva * f.nk : NULL;
                    if (t - L < 1) {
                        mark_invalid(&f, i, L, res, gb, jb);
                        continue;
                    }
                    if (L == 0)
                        start(&f, t);
                    else
                        advance(&f, t, L - 1);
                    record(&f, i, t, L, res, gb, jb);
                    ++done;
                }
                if (progress)
                    gf_progress_step(progress, done);
            }
            if (spec->tensor && sink)
                rc = sink->put(sink->ctx, target, lag0, nlags, f.va0, f.nva, gbuf, jbuf);
        }
        /* each (target, lag) entry was recorded by exactly one rank, zeros elsewhere */
        const int64_t len = spec->n_t * (spec->max_lag + 1);
        if (!rc) {
            gf_par_world_sum_vec(par, res->log10_fro, len);
            gf_par_world_sum_vec(par, res->log10_max, len);
            gf_par_world_sum_vec(par, res->contribution, len);
            gf_par_world_sum_vec(par, res->log10_contribution, len);
            if (spec->jacobian) {
                gf_par_world_sum_vec(par, res->J_log10_fro, len);
                gf_par_world_sum_vec(par, res->J_log10_max, len);
            }
        }
    }
    free(owner), free(colsum), free(f.M), free(f.e), free(f.P), free(f.R), free(f.stat);
    free(gbuf), free(jbuf);
    return rc;
}
