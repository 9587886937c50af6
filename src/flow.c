/* flow.c — gradient-flow tensor, log-space norms, bounds, per-lag share (see flow.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/error.h"
#include "gradflow/flow.h"
#include "gradflow/timer.h"
#include "gradflow/timeset.h"

#define LOG10_2 0.301029995663981195213738894724493027

/* ---- unit lists ---- */

int gf_flow_parse_units(const char *spec, int64_t n, int64_t n_out, const char *option,
                        int64_t **units, int64_t *count)
{
    if (units)
        *units = NULL;
    if (count)
        *count = 0;
    /* without units only the list is checked: no O(n) memory before the memory check */
    unsigned char *mask = units ? gf_calloc((size_t)n, 1, "unit list") : NULL;
    if (units && !mask)
        return GF_ENOMEM;
    int rc = GF_OK;
    if (!strcmp(spec, "all")) {
        if (mask)
            memset(mask, 1, (size_t)n);
    } else if (!strcmp(spec, "outputs")) {
        if (mask)
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
                bad = gf_parse_index(item, stop, &a) || (b = a, 0);
            else
                bad = gf_parse_index(item, c1, &a) || gf_parse_index(c1 + 1, c2 ? c2 : stop, &b) ||
                      (c2 && (gf_parse_index(c2 + 1, stop, &step) || memchr(c2 + 1, ':', (size_t)(stop - c2 - 1))));
            if (bad || step < 1 || a > b || b >= n) {
                rc = gf_error(GF_EUSAGE,
                              "%s: '%.*s' is not allowed; give 'all', 'outputs', or a comma list of "
                              "0-based units i and ranges a:b[:step] with 0 <= a <= b < n = %lld",
                              option, (int)(stop - item), item, (long long)n);
                break;
            }
            for (int64_t i = a; mask && i <= b; i += step)
                mask[i] = 1;
            if (!*stop)
                break;
            item = stop + 1;
        }
    }
    if (!units) /* a valid item always names a unit: the list is not empty */
        return rc;
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
    return most;
}

int64_t gf_flow_batch_lags(const GfFlowSpec *spec, int64_t cv)
{
    const double slab = (double)cv * (double)spec->n_k * 8.0 * (spec->jacobian ? 2.0 : 1.0);
    int64_t cl = (int64_t)((1 << 20) / slab);
    if (cl < 1)
        cl = 1;
    if (cl > spec->max_lag + 1)
        cl = spec->max_lag + 1;
    while ((spec->max_lag + 1) % cl) /* a divisor of L+1: every round writes a whole batch */
        --cl;
    return cl;
}

/* Column panel width of the products: all columns at once while the (n,
 * cols) scratch of partial products stays within 64 MiB, else panels of that
 * size (each panel streams W once more). */
static int64_t panel_width(int64_t n, int64_t cols)
{
    const int64_t fit = (int64_t)(64.0 * (1 << 20) / (8.0 * (double)n));
    return cols <= fit ? cols : (fit > 0 ? fit : 1);
}

/* How many targets advance together: as many as keep the block within 256
 * MiB and the write buffers within 128 MiB per rank, at least one. */
static int64_t active_cap(const GfFlowSpec *spec, int64_t n, int64_t cv, int64_t cl)
{
    const int64_t K1 = spec->n_k * (spec->jacobian ? 2 : 1) + 1;
    const double block = 8.0 * (double)n * (double)K1; /* worst case: n_local = n */
    const double bufs = spec->tensor ? 16.0 * (double)cl * (double)cv * (double)spec->n_k : 0.0;
    double cap = 256.0 * (1 << 20) / block;
    if (bufs > 0 && 128.0 * (1 << 20) / bufs < cap)
        cap = 128.0 * (1 << 20) / bufs;
    int64_t c = cap < 1.0 ? 1 : (int64_t)cap;
    return c < spec->n_t ? c : (spec->n_t > 0 ? spec->n_t : 1);
}

int64_t gf_flow_estimate_rank_bytes(const GfFlowSpec *spec, int64_t n_, int64_t n_local, int Pu, int64_t cv)
{
    /* in double: products of sizes up to 2^31 overflow int64 */
    const int64_t cl = gf_flow_batch_lags(spec, cv), cap_ = active_cap(spec, n_, cv, cl);
    const double K1 = (double)(spec->n_k * (spec->jacobian ? 2 : 1) + 1), cap = (double)cap_;
    const double n = (double)n_, nl = (double)n_local, ld = cap * K1;
    const double kb = (double)panel_width(n_, cap_ * (int64_t)K1);
    const double cells = (double)spec->n_t * (double)(spec->max_lag + 1);
    /* the block (twice when one rank holds every row, else the rows of W^T),
     * the gathered panel */
    const double doubles = nl * ld * (Pu == 1 ? 2 : 1) + (Pu == 1 ? 0 : nl * n) + n * kb + 4 * ld + n
                           + (spec->tensor ? cap * 2 * (double)cl * (double)cv * (double)spec->n_k : 0)
                           /* the sink's staging copy of one round (h5io's tensor writer) */
                           + (spec->tensor ? (spec->jacobian ? 2 : 1) * (double)cl * (double)cv * (double)spec->n_k : 0)
                           + (spec->jacobian ? 8 : 6) * cells
                           /* a checkpoint's copy of the norms and its done flags */
                           + (spec->jacobian ? 6 : 4) * cells + (double)spec->n_t;
    const double bytes = 8 * doubles + (double)(sizeof(int) + sizeof(int64_t) + 1) * (double)spec->n_t +
                         (double)(7 * sizeof(int64_t)) * cap; /* targets and free slots */
    return !(bytes > 0) ? 0 : bytes < 9.2e18 ? (int64_t)bytes : INT64_MAX;
}

/* Valid lags of target t: 0 .. min(L, t-1). */
static int64_t valid_lags(const GfFlowSpec *spec, int64_t t)
{
    return (t - 1 < spec->max_lag ? t - 1 : spec->max_lag) + 1;
}

/* Assigns each target to a time group, largest lag count first onto the least
 * loaded group (ties: lowest index), so the groups finish together.  load:
 * (groups) scratch. */
static void assign_groups(const GfFlowSpec *spec, int groups, int64_t *load, int *owner)
{
    memset(load, 0, (size_t)groups * sizeof(int64_t));
    /* targets ascend, so their lag counts ascend: walk from the end */
    for (int64_t i = spec->n_t - 1; i >= 0; --i) {
        int g = 0;
        for (int h = 1; h < groups; ++h)
            if (load[h] < load[g])
                g = h;
        owner[i] = g;
        load[g] += valid_lags(spec, spec->targets[i]);
    }
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

/* ---- the recurrence, batched by source time ---- */

/* A target being worked on.  All active targets advance together: the step
 * from source time s+1 to s multiplies one W^T against the columns of every
 * active target, so W is streamed once per step for all of them. */
typedef struct {
    int64_t i, t;        /* target index and time */
    int64_t last;        /* last valid lag, min(L, t-1) */
    int64_t lag;         /* lag recorded at the current step */
    int64_t col;         /* first of its K1 columns in the block */
    int64_t fill;        /* lags in its write buffer */
    int64_t slot;        /* its write buffer in the pool */
    int ghost;           /* finished before a resume: keeps its columns' place in the products
                          * (so the others' arithmetic is the uninterrupted run's), computes
                          * and writes nothing */
} Target;

typedef struct {
    const GfModel *mo;
    const GfForward *fw;
    const GfFlowSpec *spec;
    const GfPar *par;
    GfFlowSink *sink;
    GfFlowResult *res;
    int64_t n, nl, lo, nk, K1; /* K1 columns a target: G (nk), J (nk if jacobian), u (1) */
    int64_t cj, cu;            /* offsets of a target's J columns and u column */
    int64_t va0, nva;          /* this rank's V rows: units_v[va0 .. va0+nva) */
    int64_t cl;                /* lags a write batch (divides L+1) */
    int64_t cap, ld;           /* targets active at once, row stride of M (cap * K1) */
    int64_t kb;                /* column panel width of the products */
    double *M;                 /* (n_local, ld): mantissas; column c is M[:,c] * 2^e[c] */
    int64_t *e;                /* (ld) binary exponents */
    double *M2;                /* (n_local, ld) the next step's block when Pu = 1 */
    double *P;                 /* (n, kb) gathered panel of M */
    double *Wt;                /* (n_local, n) rows lo.. of W^T (columns of W), when Pu > 1 */
    double *pend;              /* (ld) renormalisation factor 2^-k owed to each column: applied
                                * after the next product (linear), saving a pass over M */
    int64_t nstat;             /* columns whose statistics this step already holds */
    unsigned char *in_v;       /* (n_local) 1 where the local row is a V unit */
    double *stat;              /* (3 ld): max over all rows, max over V rows, sums of squares */
    Target *act;               /* (cap) active targets in column order */
    int64_t nact, nreal;       /* active targets, those of them not ghosts */
    int64_t *free_slots, nfree;
    double *pool;              /* (cap, 2, cl, nva, nk) write buffers, G then J */
    int64_t puts;              /* collective write rounds made */
    const GfFlowControl *ctl;  /* targets to skip, hook at every round (may be NULL) */
    unsigned char *done;       /* (N_t) targets this group finished, or skipped */
    int64_t finished;          /* how many */
    int dry;                   /* count the rounds only */
    int rc;
} Flow;

static const double *fprime_at(const Flow *f, int64_t tau) { return f->fw->fprime + (tau - 1) * f->nl; }

static double *gbuf_of(const Flow *f, const Target *a)
{
    return f->pool + a->slot * 2 * f->cl * f->nva * f->nk;
}

/* x * 2^k exactly: a multiplication when 2^k is a normal double, else ldexp. */
static inline double scale2(double x, int64_t k)
{
    return (k > -1000 && k < 1000) ? x * ldexp(1.0, (int)k)
                                   : ldexp(x, (int)(k < -100000 ? -100000 : k > 100000 ? 100000 : k));
}

/* Columns [c0, c1) of one row: x *= g * pend[c]; the largest |x| into mx,
 * and for a V row also x^2 into ss and the largest |x| into mv. */
static inline void scale_measure(double *restrict row, int64_t c0, int64_t c1, double g,
                                 const double *restrict pend, double *restrict mx,
                                 double *restrict ss, double *restrict mv, int v)
{
    if (v) {
        for (int64_t c = c0; c < c1; ++c) {
            const double x = row[c] * (g * pend[c]), ax = fabs(x);
            row[c] = x;
            mx[c] = ax > mx[c] ? ax : mx[c];
            mv[c] = ax > mv[c] ? ax : mv[c];
            ss[c] += x * x;
        }
    } else {
        for (int64_t c = c0; c < c1; ++c) {
            const double x = row[c] * (g * pend[c]), ax = fabs(x);
            row[c] = x;
            mx[c] = ax > mx[c] ? ax : mx[c];
        }
    }
}

/* From source time s+1 to s for every active target. */
static void advance_all(Flow *f, int64_t s)
{
    const int64_t n = f->n, nl = f->nl, ld = f->ld, cols = f->nact * f->K1;
    if (f->spec->jacobian) { /* H_{L+1} = W^T (F'(t-L) H_L), t-L = s+1: scale before */
        const double *fp = fprime_at(f, s + 1);
        for (int64_t r = 0; r < nl; ++r)
            for (int64_t a = 0; a < f->nact; ++a) {
                double *x = f->M + r * ld + f->act[a].col + f->cj;
                for (int64_t b = 0; b < f->nk; ++b)
                    x[b] *= fp[r];
            }
    }
    if (gf_par_unit_size(f->par) == 1 && f->kb >= cols) {
        /* one rank holds every row: no reduction, the product lands in M2 */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)cols, (int)nl, 1.0,
                    f->mo->W, (int)n, f->M, (int)ld, 0.0, f->M2, (int)ld);
        double *tmp = f->M;
        f->M = f->M2;
        f->M2 = tmp;
    } else {
        /* W split by columns for the flow: gather the panel's rows of M from every
         * rank into P (n, w), then this rank's rows of W^T M are one GEMM with a
         * small (n_local, w) output: no partial sums to reduce.  The panel of M is
         * in P by then, so the product overwrites it in place (ldc = ld). */
        for (int64_t c0 = 0; c0 < cols; c0 += f->kb) {
            const int64_t w = cols - c0 < f->kb ? cols - c0 : f->kb;
            for (int64_t r = 0; r < nl; ++r)
                memcpy(f->P + (f->lo + r) * w, f->M + r * ld + c0, (size_t)w * sizeof(double));
            gf_par_allgather_rows(f->par, f->P, (int)w);
            if (nl > 0 && f->Wt) /* rows of W^T held explicitly (Pu > 1) */
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nl, (int)w, (int)n, 1.0,
                            f->Wt, (int)n, f->P, (int)w, 0.0, f->M + c0, (int)ld);
            else if (nl > 0) /* one rank holds all of W: W^T M directly */
                cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)w, (int)n, 1.0,
                            f->mo->W, (int)n, f->P, (int)w, 0.0, f->M + c0, (int)ld);
        }
    }
    /* one pass: G and u columns by F'(s), every column by its owed factor, and
     * the statistics measure() needs (max over all rows; max and sum of
     * squares over V rows; sum of squares of u over all rows) */
    const double *fp = fprime_at(f, s);
    double *mx = f->stat, *mv = f->stat + cols, *ss = f->stat + 2 * cols;
    memset(f->stat, 0, (size_t)(3 * cols) * sizeof(double));
    for (int64_t r = 0; r < nl; ++r) {
        double *row = f->M + r * ld;
        const int v = f->in_v[r];
        if (!f->spec->jacobian) { /* every column is G or u: all scale by F'(s) */
            scale_measure(row, 0, cols, fp[r], f->pend, mx, ss, mv, v);
        } else {
            for (int64_t a = 0; a < f->nact; ++a) {
                const int64_t c0 = f->act[a].col;
                scale_measure(row, c0, c0 + f->nk, fp[r], f->pend, mx, ss, mv, v);
                scale_measure(row, c0 + f->cj, c0 + f->cj + f->nk, 1.0, f->pend, mx, ss, mv, v);
                scale_measure(row, c0 + f->cu, c0 + f->cu + 1, fp[r], f->pend, mx, ss, mv, v);
            }
        }
        if (!v) /* u's norm runs over all units, not only V */
            for (int64_t a = 0; a < f->nact; ++a) {
                const double x = row[f->act[a].col + f->cu];
                ss[f->act[a].col + f->cu] += x * x;
            }
    }
    for (int64_t c = 0; c < cols; ++c)
        f->pend[c] = 1.0;
    f->nstat = cols;
}

/* Adds target index i at its lag 0: G_0 = H_0 = I[:,K], u_0 = F'(t) e(t). */
static void join(Flow *f, int64_t i)
{
    const GfModel *mo = f->mo;
    Target *a = &f->act[f->nact++];
    a->i = i;
    a->t = f->spec->targets[i];
    a->last = (a->t - 1 < f->spec->max_lag ? a->t - 1 : f->spec->max_lag);
    a->lag = 0;
    a->col = (f->nact - 1) * f->K1;
    a->fill = 0;
    a->slot = f->free_slots[--f->nfree];
    a->ghost = f->ctl && f->ctl->skip && f->ctl->skip[i];
    f->nreal += !a->ghost;
    if (f->dry)
        return;
    const int64_t first_out = mo->n - mo->n_out, t = a->t;
    const double *fp = fprime_at(f, t), *at = f->fw->a + t * mo->n;
    for (int64_t r = 0; r < f->nl; ++r) {
        double *x = f->M + r * f->ld + a->col;
        memset(x, 0, (size_t)f->K1 * sizeof(double));
        const int64_t u = f->lo + r;
        const double e = mo->mask[t - 1] && u >= first_out
                             ? at[u] - mo->d[(t - 1) * mo->n_out + (u - first_out)] : 0.0;
        x[f->cu] = a->ghost ? 0.0 : fp[r] * e;
    }
    for (int64_t b = 0; b < f->nk && !a->ghost; ++b) {
        const int64_t k = f->spec->units_k[b];
        if (k >= f->lo && k < f->lo + f->nl) {
            f->M[(k - f->lo) * f->ld + a->col + b] = 1.0;
            if (f->spec->jacobian)
                f->M[(k - f->lo) * f->ld + a->col + f->cj + b] = 1.0;
        }
    }
    for (int64_t b = 0; b < f->K1; ++b) {
        f->e[a->col + b] = 0;
        f->pend[a->col + b] = 1.0;
    }
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


/* The norms of every active target at the current step (unit rank 0 keeps
 * them), its V rows into its write buffer, then the exact power-of-two
 * renormalisation: one MAX and one SUM allreduce for all targets. */
static void measure(Flow *f)
{
    const int64_t cols = f->nact * f->K1, ld = f->ld, nk = f->nk;
    double *mx = f->stat, *mv = f->stat + cols, *ss = f->stat + 2 * cols;
    /* advance_all() measured the columns it produced; targets that joined
     * since are measured here.  The three arrays are packed for `cols`. */
    if (f->nstat != cols) {
        const int64_t old = f->nstat; /* its arrays were packed for `old` columns */
        memmove(ss, f->stat + 2 * old, (size_t)old * sizeof(double));
        memmove(mv, f->stat + old, (size_t)old * sizeof(double));
        memset(mx + old, 0, (size_t)(cols - old) * sizeof(double));
        memset(mv + old, 0, (size_t)(cols - old) * sizeof(double));
        memset(ss + old, 0, (size_t)(cols - old) * sizeof(double));
        for (int64_t r = 0; r < f->nl; ++r) {
            const double *x = f->M + r * ld;
            for (int64_t c = old; c < cols; ++c) {
                const int64_t b = (c % f->K1);
                const double ax = fabs(x[c]);
                mx[c] = ax > mx[c] ? ax : mx[c];
                if (b == f->cu) {
                    ss[c] += x[c] * x[c];
                } else if (f->in_v[r]) {
                    ss[c] += x[c] * x[c];
                    mv[c] = ax > mv[c] ? ax : mv[c];
                }
            }
        }
        f->nstat = cols;
    }
    gf_par_unit_max_vec(f->par, mx, (int)(2 * cols));
    gf_par_unit_sum_vec(f->par, ss, (int)cols);

    const int keep = gf_par_unit_rank(f->par) == 0;
    for (int64_t q = 0; q < f->nact; ++q) {
        const Target *a = &f->act[q];
        const int64_t c = a->col, at = a->i * (f->spec->max_lag + 1) + a->lag;
        if (a->ghost)
            continue;
        if (keep) {
            GfFlowResult *res = f->res;
            res->log10_fro[at] = log10_fro(ss, f->e, c, nk);
            res->log10_max[at] = log10_max(mv, f->e, c, nk);
            if (f->spec->jacobian) {
                res->J_log10_fro[at] = log10_fro(ss, f->e, c + f->cj, nk);
                res->J_log10_max[at] = log10_max(mv, f->e, c + f->cj, nk);
            }
            const double *prev = f->fw->a + (a->t - a->lag - 1) * f->n; /* a(t-L-1) */
            double aa = 0;
            for (int64_t j = 0; j < f->n; ++j)
                aa += prev[j] * prev[j];
            const double lc = ss[c + f->cu] > 0 && aa > 0
                                  ? 0.5 * log10(ss[c + f->cu]) + (double)f->e[c + f->cu] * LOG10_2 +
                                        0.5 * log10(aa)
                                  : -INFINITY;
            res->log10_contribution[at] = lc;
            res->contribution[at] = pow(10.0, lc);
        }
        if (f->spec->tensor) {
            double *gb = gbuf_of(f, a) + a->fill * f->nva * nk;
            double *jb = gb + f->cl * f->nva * nk;
            /* G = M 2^e: one multiplication by a power of two a column while 2^e is a
             * normal double (exact), ldexp only where it is not (entries leave range) */
            double *p2 = f->stat + 3 * cols; /* (K1) scratch after the statistics */
            int wide = 0;
            for (int64_t b = 0; b < f->K1; ++b) {
                const int64_t k = f->e[c + b];
                wide |= !(k > -1000 && k < 1000);
                p2[b] = (k > -1000 && k < 1000) ? ldexp(1.0, (int)k) : 0.0;
            }
            for (int64_t v = 0; v < f->nva; ++v) {
                const double *x = f->M + (f->spec->units_v[f->va0 + v] - f->lo) * ld + c;
                if (!wide) {
                    for (int64_t b = 0; b < nk; ++b)
                        gb[v * nk + b] = x[b] * p2[b];
                    for (int64_t b = 0; f->spec->jacobian && b < nk; ++b)
                        jb[v * nk + b] = x[f->cj + b] * p2[f->cj + b];
                } else {
                    for (int64_t b = 0; b < nk; ++b)
                        gb[v * nk + b] = scale2(x[b], f->e[c + b]);
                    for (int64_t b = 0; f->spec->jacobian && b < nk; ++b)
                        jb[v * nk + b] = scale2(x[f->cj + b], f->e[c + f->cj + b]);
                }
            }
        }
    }
    /* renormalise: column c owes 2^-k, k the exponent of its largest entry,
     * paid after the next product; multiplying by a power of two is exact.
     * Only a factor outside the normal range (possible at lag 0) is paid now. */
    for (int64_t c = 0; c < cols; ++c) {
        if (!(mx[c] > 0.0) || !isfinite(mx[c]))
            continue;
        const int k = ilogb(mx[c]);
        if (k == 0)
            continue;
        f->e[c] += k;
        if (k > -1000 && k < 1000) {
            f->pend[c] = ldexp(1.0, -k);
        } else {
            for (int64_t r = 0; r < f->nl; ++r)
                f->M[r * ld + c] = ldexp(f->M[r * ld + c], -k);
        }
    }
}

/* One collective round: lags [lag0, lag0+nlags) of target a, or nothing, to
 * the sink; then the control hook (both agree their status across ranks). */
static void emit(Flow *f, const Target *a, int64_t lag0, int64_t nlags)
{
    ++f->puts;
    if (f->dry || f->rc)
        return;
    if (f->spec->tensor && f->sink) {
        const double *gb = a ? gbuf_of(f, a) : NULL;
        const double t0 = gf_time_now();
        f->rc = f->sink->put(f->sink->ctx, a ? a->i : -1, lag0, nlags, f->va0, f->nva, gb,
                             a && f->spec->jacobian ? gb + f->cl * f->nva * f->nk : NULL);
        f->res->write_s += gf_time_now() - t0;
    }
    if (!f->rc && f->ctl && f->ctl->round)
        f->rc = f->ctl->round(f->ctl->ctx, f->puts, f->done, f->finished, f->res);
}

/* After a target's lag was recorded: write a full batch; at its last valid
 * lag also the NaN lags beyond (t - L < 1), then free its columns. */
static void release(Flow *f, int64_t q);

static void settle(Flow *f, int64_t q)
{
    Target *a = &f->act[q];
    const int64_t slab = f->nva * f->nk, L = f->spec->max_lag;
    if (a->ghost) {
        if (a->lag == a->last)
            release(f, q);
        return;
    }
    ++a->fill;
    if (a->lag < a->last) {
        if (a->fill == f->cl) {
            emit(f, a, a->lag + 1 - f->cl, f->cl);
            a->fill = 0;
        }
        return;
    }
    if (!f->dry && gf_par_unit_rank(f->par) == 0)
        for (int64_t lag = a->last + 1; lag <= L; ++lag) {
            const int64_t at = a->i * (L + 1) + lag;
            f->res->log10_fro[at] = f->res->log10_max[at] = NAN;
            f->res->contribution[at] = f->res->log10_contribution[at] = NAN;
            if (f->spec->jacobian)
                f->res->J_log10_fro[at] = f->res->J_log10_max[at] = NAN;
        }
    int64_t lag0 = a->lag + 1 - a->fill;
    while (lag0 <= L) { /* batches of cl lags, NaN past the last valid one */
        if (lag0 + f->cl > L && !f->dry) { /* its last round: finished once written */
            f->done[a->i] = 1;
            ++f->finished;
        }
        if (!f->dry && f->spec->tensor) {
            double *gb = gbuf_of(f, a);
            for (int64_t k = a->fill * slab; k < f->cl * slab; ++k)
                gb[k] = NAN;
            for (int64_t k = f->cl * slab + a->fill * slab; f->spec->jacobian && k < 2 * f->cl * slab; ++k)
                gb[k] = NAN;
        }
        emit(f, a, lag0, f->cl);
        lag0 += f->cl;
        a->fill = 0;
    }
    release(f, q);
}

/* Frees the columns of the q-th active target: the later targets shift left. */
static void release(Flow *f, int64_t q)
{
    const Target *a = &f->act[q];
    f->nreal -= !a->ghost;
    f->free_slots[f->nfree++] = a->slot;
    const int64_t c = a->col, tail = f->nact * f->K1 - c - f->K1;
    if (!f->dry && tail > 0) {
        for (int64_t r = 0; r < f->nl; ++r)
            memmove(f->M + r * f->ld + c, f->M + r * f->ld + c + f->K1, (size_t)tail * sizeof(double));
        memmove(f->e + c, f->e + c + f->K1, (size_t)tail * sizeof(int64_t));
        memmove(f->pend + c, f->pend + c + f->K1, (size_t)tail * sizeof(double));
    }
    for (int64_t p = q + 1; p < f->nact; ++p) {
        f->act[p - 1] = f->act[p];
        f->act[p - 1].col -= f->K1;
    }
    --f->nact;
}

/* Runs (or, dry, counts the write rounds of) the targets idx[0..count), in
 * ascending time, in waves of at most cap targets from the latest down. */
static void drive(Flow *f, const int64_t *idx, int64_t count, GfProgress *progress)
{
    int64_t done = 0;
    for (int64_t w1 = count; w1 > 0 && !f->rc; w1 -= f->cap) {
        const int64_t w0 = w1 > f->cap ? w1 - f->cap : 0;
        int64_t s_lo = INT64_MAX;
        for (int64_t q = w0; q < w1; ++q) {
            const int64_t t = f->spec->targets[idx[q]];
            const int64_t first = t - (t - 1 < f->spec->max_lag ? t - 1 : f->spec->max_lag);
            s_lo = first < s_lo ? first : s_lo;
        }
        int64_t j = w1 - 1; /* next target to join, descending in time */
        for (int64_t s = f->spec->targets[idx[w1 - 1]]; s >= s_lo && !f->rc; --s) {
            if (f->nreal > 0 && !f->dry)
                advance_all(f, s);
            else
                f->nstat = 0; /* nothing advanced: measure() measures every column */
            for (; j >= w0 && f->spec->targets[idx[j]] == s; --j)
                join(f, idx[j]);
            if (f->nact == 0)
                continue;
            for (int64_t q = 0; q < f->nact; ++q)
                f->act[q].lag = f->act[q].t - s;
            if (!f->dry && f->nreal > 0)
                measure(f);
            done += f->nreal;
            for (int64_t q = f->nact - 1; q >= 0; --q)
                settle(f, q);
            if (progress && !f->dry)
                gf_progress_step(progress, done);
        }
    }
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
                GfFlowSink *sink, const GfFlowControl *ctl, GfFlowResult *res, GfProgress *progress)
{
    const int groups = gf_par_time_size(par), me = gf_par_time_rank(par);
    Flow f;
    memset(&f, 0, sizeof f);
    f.mo = mo, f.fw = fw, f.spec = spec, f.par = par, f.sink = sink, f.res = res, f.ctl = ctl;
    f.n = mo->n, f.nl = mo->n_local, f.lo = mo->lo, f.nk = spec->n_k;
    f.cj = f.nk;
    f.K1 = f.nk * (spec->jacobian ? 2 : 1) + 1;
    f.cu = f.K1 - 1;
    f.va0 = lower_bound(spec->units_v, spec->n_v, f.lo);
    f.nva = lower_bound(spec->units_v, spec->n_v, f.lo + f.nl) - f.va0;
    f.cl = gf_flow_batch_lags(spec, gf_flow_max_v_rows(spec, par));
    f.cap = active_cap(spec, f.n, gf_flow_max_v_rows(spec, par), f.cl);
    f.ld = f.cap * f.K1;
    f.kb = panel_width(f.n, f.ld);

    int *owner = gf_calloc((size_t)(spec->n_t ? spec->n_t : 1), sizeof(int), "flow schedule");
    int64_t *idx = gf_calloc((size_t)(spec->n_t ? spec->n_t : 1), sizeof(int64_t), "flow schedule");
    int64_t *load = gf_calloc((size_t)groups, sizeof(int64_t), "flow schedule");
    f.done = gf_calloc((size_t)(spec->n_t ? spec->n_t : 1), 1, "flow schedule");
    double *colsum = gf_calloc((size_t)f.n, sizeof(double), "column sums (n)");
    f.M = gf_calloc((size_t)(f.nl * f.ld), sizeof(double), "flow block (n_local x active K)");
    f.e = gf_calloc((size_t)f.ld, sizeof(int64_t), "flow exponents");
    f.M2 = gf_par_unit_size(par) == 1
               ? gf_calloc((size_t)(f.nl * f.ld), sizeof(double), "flow block (n_local x active K)")
               : NULL;
    f.pend = gf_calloc((size_t)f.ld, sizeof(double), "flow factors");
    f.in_v = gf_calloc((size_t)(f.nl ? f.nl : 1), 1, "flow V rows");
    for (int64_t v = 0; f.in_v && v < f.nva; ++v)
        f.in_v[spec->units_v[f.va0 + v] - f.lo] = 1;
    f.P = gf_calloc((size_t)(f.n * f.kb), sizeof(double), "flow gathered panel (n x panel)");
    f.Wt = gf_par_unit_size(par) > 1 ? gf_calloc((size_t)(f.nl * f.n), sizeof(double),
                                                 "W^T rows (n_local x n)") : NULL;
    f.stat = gf_calloc((size_t)(3 * f.ld + f.K1), sizeof(double), "flow statistics");
    f.act = gf_calloc((size_t)f.cap, sizeof(Target), "flow targets");
    f.free_slots = gf_calloc((size_t)f.cap, sizeof(int64_t), "flow targets");
    f.pool = spec->tensor ? gf_calloc((size_t)(f.cap * 2 * f.cl * f.nva * f.nk), sizeof(double),
                                      "flow write buffers") : NULL;
    int rc = (!owner || !idx || !load || !f.done || !colsum || !f.M || !f.e || !f.P || !f.stat || !f.act ||
              (gf_par_unit_size(par) == 1 && !f.M2) || (gf_par_unit_size(par) > 1 && !f.Wt) ||
              !f.pend || !f.in_v ||
              !f.free_slots || (spec->tensor && !f.pool)) ? GF_ENOMEM : GF_OK;
    /* the transpose is collective: only once every rank has its buffers */
    if (!(rc = gf_par_agree(par, rc)) && gf_par_unit_size(par) > 1)
        rc = gf_par_agree(par, gf_par_transpose_rows(par, mo->W, f.Wt));
    if (!rc) {
        weight_norms(mo, fw, par, res, colsum);
        bounds(mo, spec, res);
        assign_groups(spec, groups, load, owner);
        for (int64_t i = 0; ctl && ctl->skip && i < spec->n_t; ++i)
            if (ctl->skip[i]) {
                f.done[i] = 1;
                ++f.finished;
            }
        /* Every rank makes as many collective write rounds as the busiest
         * group: count each group's rounds with a dry run of its schedule. */
        int64_t rounds = 0, mine = 0, count = 0, total_lags = 0;
        for (int g = 0; g < groups; ++g) {
            int64_t c = 0;
            for (int64_t i = 0; i < spec->n_t; ++i)
                if (owner[i] == g)
                    idx[c++] = i;
            f.dry = 1;
            f.puts = f.nact = f.nreal = 0;
            f.nfree = f.cap;
            for (int64_t k = 0; k < f.cap; ++k)
                f.free_slots[k] = k;
            drive(&f, idx, c, NULL);
            rounds = f.puts > rounds ? f.puts : rounds;
            if (g == me)
                mine = c;
        }
        for (int64_t i = 0; i < spec->n_t; ++i)
            if (owner[i] == me) {
                idx[count++] = i;
                if (!(ctl && ctl->skip && ctl->skip[i]))
                    total_lags += valid_lags(spec, spec->targets[i]);
            }
        (void)mine;
        if (progress)
            progress->total = total_lags;
        f.dry = 0;
        f.puts = f.nact = f.nreal = 0;
        f.nfree = f.cap;
        for (int64_t k = 0; k < f.cap; ++k)
            f.free_slots[k] = k;
        drive(&f, idx, count, progress);
        while (!f.rc && f.puts < rounds) /* this group is done: empty rounds */
            emit(&f, NULL, 0, 0);
        rc = f.rc;
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
    free(owner), free(idx), free(load), free(f.done), free(colsum), free(f.M), free(f.e), free(f.P), free(f.stat);
    free(f.act), free(f.free_slots), free(f.pool), free(f.M2), free(f.Wt), free(f.pend), free(f.in_v);
    return rc;
}
