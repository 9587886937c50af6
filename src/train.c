/* train.c — BPTT training and weight guessing on the long-lag tasks (see train.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/error.h"
#include "gradflow/rng.h"
#include "gradflow/train.h"

#define LOG10_2 0.301029995663981195213738894724493027
#define STREAM_GUESS 120u

int gf_train_log_alloc(GfTrainLog *log, int64_t capacity, int64_t T)
{
    memset(log, 0, sizeof *log);
    log->capacity = capacity;
    log->success_at = -1;
    const size_t c = (size_t)(capacity ? capacity : 1);
    if (!(log->loss = gf_calloc(c, sizeof(double), "training log")) ||
        !(log->grad_norm = gf_calloc(c, sizeof(double), "training log")) ||
        !(log->test_error = gf_calloc(c, sizeof(double), "training log")) ||
        !(log->lag_share = gf_calloc(c * (size_t)T, sizeof(double), "training log (epochs x T)")) ||
        !(log->flow = gf_calloc(c * (size_t)T, sizeof(double), "training log (epochs x T)"))) {
        gf_train_log_free(log);
        return GF_ENOMEM;
    }
    return GF_OK;
}

void gf_train_log_free(GfTrainLog *log)
{
    free(log->loss), free(log->grad_norm), free(log->test_error), free(log->lag_share), free(log->flow);
    free(log->velocity);
    memset(log, 0, sizeof *log);
}

/* ---- a batch of sequences through the distributed net ---- */

typedef struct {
    const GfTrainSpec *spec;
    GfModel *mo;
    const GfPar *par;
    int64_t n, nl, lo, m, T, cap;   /* cap: sequences a batch holds on this group */
    double *X;     /* (T, m, cap) inputs, column j = sequence j */
    double *D;     /* (cap) targets at T */
    double *A;     /* (T+1, n, cap) activations, replicated in the group */
    double *FP;    /* (T, n_local, cap) f'(net) */
    double *DL;    /* (T, n_local, cap) delta */
    double *P;     /* (n, cap) partial products W_local^T delta */
    double *G;     /* gradient: W (n_local, n), U (n_local, m), b (n_local), packed */
    double *V;     /* momentum, same layout */
    double *sq;    /* (T, cap) per-sequence sums of squares of delta(T-L) */
    double *share; /* (T) sum over sequences of ||delta(T-L)|| ||a(T-L-1)|| */
    double *seq;   /* (T, m) one sequence's inputs, as the task makes them */
    double *u;     /* (n_local) the flow vector of flow_norms */
    int64_t glen;  /* length of G and V */
} Batch;

/* Forward pass of sequences [0, B) already in X: A, FP. Collective on the unit comm. */
static void forward(Batch *b, int64_t B)
{
    const int64_t n = b->n, nl = b->nl, m = b->m, c = b->cap;
    const GfModel *mo = b->mo;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < B; ++j)
            b->A[i * c + j] = mo->a0[i];
    for (int64_t t = 1; t <= b->T; ++t) {
        double *prev = b->A + (t - 1) * n * c, *now = b->A + t * n * c;
        double *net = now + b->lo * c; /* this rank's rows of a(t), computed in place */
        for (int64_t r = 0; r < nl; ++r)
            for (int64_t j = 0; j < B; ++j)
                net[r * c + j] = mo->b[r];
        if (nl > 0) {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nl, (int)B, (int)n, 1.0, mo->W,
                        (int)n, prev, (int)c, 1.0, net, (int)c);
            if (m > 0)
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nl, (int)B, (int)m, 1.0,
                            mo->U, (int)m, b->X + (t - 1) * m * c, (int)c, 1.0, net, (int)c);
        }
        double *fp = b->FP + (t - 1) * nl * c;
        for (int64_t r = 0; r < nl; ++r)
            gf_act_apply(mo->act, (size_t)B, net + r * c, net + r * c, fp + r * c);
        gf_par_allgather_rows(b->par, now, (int)c);
    }
}

/* BPTT for sequences [0, B): adds their summed gradient to b->G and their
 * per-lag shares to b->share; returns sum of 1/2 e^2. Collective on the unit comm. */
static double backward(Batch *b, int64_t B)
{
    const int64_t n = b->n, nl = b->nl, m = b->m, c = b->cap, T = b->T, out = n - 1;
    const GfModel *mo = b->mo;
    double loss = 0;
    for (int64_t j = 0; j < B; ++j) {
        const double e = b->A[T * n * c + out * c + j] - b->D[j];
        loss += 0.5 * e * e;
    }
    double *gW = b->G, *gU = b->G + nl * n, *gb = b->G + nl * n + nl * m;
    for (int64_t t = T; t >= 1; --t) {
        double *dl = b->DL + (t - 1) * nl * c;
        const double *fp = b->FP + (t - 1) * nl * c;
        if (t < T) {
            if (nl > 0)
                cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)B, (int)nl, 1.0,
                            mo->W, (int)n, b->DL + t * nl * c, (int)c, 0.0, b->P, (int)B);
            else
                memset(b->P, 0, (size_t)(n * B) * sizeof(double));
            gf_par_reduce_scatter_rows(b->par, b->P, dl, (int)B); /* packed (nl, B) */
            for (int64_t r = nl - 1; r >= 0; --r) /* unpack to stride c, last row first */
                for (int64_t j = B - 1; j >= 0; --j)
                    dl[r * c + j] = dl[r * B + j] * fp[r * c + j];
        } else {
            for (int64_t r = 0; r < nl; ++r)
                for (int64_t j = 0; j < B; ++j)
                    dl[r * c + j] = (b->lo + r == out)
                                        ? fp[r * c + j] * (b->A[T * n * c + out * c + j] - b->D[j])
                                        : 0.0;
        }
        /* gradients: W += delta(t) a(t-1)^T, U += delta(t) x(t)^T, b += delta(t) 1 */
        if (nl > 0) {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nl, (int)n, (int)B, 1.0, dl,
                        (int)c, b->A + (t - 1) * n * c, (int)c, 1.0, gW, (int)n);
            if (m > 0)
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nl, (int)m, (int)B, 1.0, dl,
                            (int)c, b->X + (t - 1) * m * c, (int)c, 1.0, gU, (int)m);
        }
        for (int64_t r = 0; r < nl; ++r)
            for (int64_t j = 0; j < B; ++j)
                gb[r] += dl[r * c + j];
        for (int64_t j = 0; j < B; ++j) {
            double s = 0;
            for (int64_t r = 0; r < nl; ++r)
                s += dl[r * c + j] * dl[r * c + j];
            b->sq[(T - t) * c + j] = s; /* lag L = T - t */
        }
    }
    /* per-lag share: ||delta(T-L)||_2 ||a(T-L-1)||_2 per sequence */
    gf_par_unit_sum_vec(b->par, b->sq, (int)(T * c));
    for (int64_t L = 0; L < T; ++L) {
        const double *a = b->A + (T - L - 1) * n * c;
        for (int64_t j = 0; j < B; ++j) {
            double aa = 0;
            for (int64_t i = 0; i < n; ++i)
                aa += a[i * c + j] * a[i * c + j];
            b->share[L] += sqrt(b->sq[L * c + j]) * sqrt(aa);
        }
    }
    return loss;
}

/* Loads sequences [first, first + B) of set `set` into X, D. */
static void load(Batch *b, int set, int64_t first, int64_t B)
{
    const int64_t m = b->m, c = b->cap, T = b->T;
    double *x = b->seq;
    for (int64_t j = 0; j < B; ++j) {
        gf_task_sequence(&b->spec->task, b->spec->seed, set, (uint64_t)(first + j), x, &b->D[j]);
        for (int64_t t = 0; t < T; ++t)
            for (int64_t k = 0; k < m; ++k)
                b->X[t * m * c + k * c + j] = x[t * m + k];
    }
}

/* The share of `count` sequences split over the groups (or all when not split). */
static void my_share(const Batch *b, int64_t count, int64_t *first, int64_t *len)
{
    if (!b->spec->split_batch) {
        *first = 0, *len = count;
        return;
    }
    const GfBlock blk = gf_dist_block(count, gf_par_time_size(b->par), gf_par_time_rank(b->par));
    *first = blk.lo, *len = blk.count;
}

/* Max |a(T) - d(T)| over the test set, every group and rank agreeing. */
static double test_error(Batch *b)
{
    int64_t first, len;
    my_share(b, b->spec->test_size, &first, &len);
    double worst = 0;
    for (int64_t k = 0; k < len; k += b->cap) {
        const int64_t B = len - k < b->cap ? len - k : b->cap;
        load(b, 1, first + k, B);
        forward(b, B);
        for (int64_t j = 0; j < B; ++j)
            worst = fmax(worst, fabs(b->A[b->T * b->n * b->cap + (b->n - 1) * b->cap + j] - b->D[j]));
    }
    if (b->spec->split_batch)
        gf_par_time_max_vec(b->par, &worst, 1);
    return worst;
}

/* log10 ||G(T-L, T)[:, out]|| for L = 0..T-1 on test sequence 0, renormalised
 * by exact powers of two each step (a single column of SPEC §3's tensor). */
static void flow_norms(Batch *b, double *out)
{
    const int64_t n = b->n, nl = b->nl, c = b->cap, T = b->T;
    load(b, 1, 0, 1);
    forward(b, 1);
    double *u = b->u, *p = b->P;
    int64_t e = 0;
    for (int64_t r = 0; r < nl; ++r)
        u[r] = b->lo + r == n - 1 ? 1.0 : 0.0;
    for (int64_t L = 0; L < T; ++L) {
        double ss = 0;
        for (int64_t r = 0; r < nl; ++r)
            ss += u[r] * u[r];
        ss = gf_par_unit_sum(b->par, ss);
        out[L] = ss > 0 ? 0.5 * log10(ss) + (double)e * LOG10_2 : -INFINITY;
        if (L + 1 == T)
            break;
        /* u <- F'(T-L-1) W^T u, then renormalise */
        if (nl > 0)
            cblas_dgemv(CblasRowMajor, CblasTrans, (int)nl, (int)n, 1.0, b->mo->W, (int)n, u, 1, 0.0, p, 1);
        else
            memset(p, 0, (size_t)n * sizeof(double));
        gf_par_reduce_scatter_rows(b->par, p, u, 1);
        const double *fp = b->FP + (T - L - 2) * nl * c;
        double mx = 0;
        for (int64_t r = 0; r < nl; ++r) {
            u[r] *= fp[r * c];
            mx = fmax(mx, fabs(u[r]));
        }
        mx = gf_par_unit_max(b->par, mx);
        if (mx > 0 && isfinite(mx)) {
            const int k = ilogb(mx);
            for (int64_t r = 0; r < nl; ++r)
                u[r] = ldexp(u[r], -k);
            e += k;
        }
    }
}

static int batch_alloc(Batch *b, const GfTrainSpec *spec, GfModel *mo, const GfPar *par)
{
    memset(b, 0, sizeof *b);
    b->spec = spec, b->mo = mo, b->par = par;
    b->n = mo->n, b->nl = mo->n_local, b->lo = mo->lo, b->m = mo->m, b->T = mo->T;
    int64_t cap = spec->batch > spec->test_size ? spec->batch : spec->test_size;
    cap = cap > 64 ? (spec->batch > 64 ? spec->batch : 64) : cap; /* test set in chunks */
    b->cap = cap < 1 ? 1 : cap;
    const size_t c = (size_t)b->cap, T = (size_t)b->T, n = (size_t)b->n, nl = (size_t)b->nl;
    b->glen = b->nl * b->n + b->nl * b->m + b->nl;
    if (!(b->X = gf_calloc(T * (size_t)(b->m ? b->m : 1) * c, sizeof(double), "batch inputs")) ||
        !(b->D = gf_calloc(c, sizeof(double), "batch targets")) ||
        !(b->A = gf_calloc((T + 1) * n * c, sizeof(double), "batch activations (T+1, n, B)")) ||
        !(b->FP = gf_calloc(T * nl * c, sizeof(double), "batch f' (T, n_local, B)")) ||
        !(b->DL = gf_calloc(T * nl * c, sizeof(double), "batch delta (T, n_local, B)")) ||
        !(b->P = gf_calloc(n * c, sizeof(double), "batch partial products")) ||
        !(b->G = gf_calloc((size_t)b->glen, sizeof(double), "gradient")) ||
        !(b->V = gf_calloc((size_t)b->glen, sizeof(double), "momentum")) ||
        !(b->sq = gf_calloc(T * c, sizeof(double), "per-lag sums")) ||
        !(b->share = gf_calloc(T, sizeof(double), "per-lag share")) ||
        !(b->seq = gf_calloc(T * (size_t)(b->m ? b->m : 1), sizeof(double), "one sequence")) ||
        !(b->u = gf_calloc(nl ? nl : 1, sizeof(double), "flow vector")))
        return GF_ENOMEM;
    return GF_OK;
}

static void batch_free(Batch *b)
{
    free(b->X), free(b->D), free(b->A), free(b->FP), free(b->DL), free(b->P), free(b->G), free(b->V);
    free(b->sq), free(b->share), free(b->seq), free(b->u);
}

/* Every weight and bias of guess g uniform in [-range, range]; the value of
 * global entry (i, j) depends only on (seed, g, i, j), so any grid agrees. */
static void guess_weights(GfModel *mo, const GfTrainSpec *spec, int64_t g)
{
    const int64_t n = mo->n, m = mo->m, per = n * (n + m + 1);
    for (int64_t r = 0; r < mo->n_local; ++r) {
        const int64_t i = mo->lo + r;
        const uint64_t base = (uint64_t)(g * per + i * (n + m + 1));
        for (int64_t j = 0; j < n; ++j)
            mo->W[r * n + j] = spec->guess_range * gf_rng_symmetric(spec->seed, STREAM_GUESS, base + (uint64_t)j);
        for (int64_t j = 0; j < m; ++j)
            mo->U[r * m + j] = spec->guess_range * gf_rng_symmetric(spec->seed, STREAM_GUESS, base + (uint64_t)(n + j));
        mo->b[r] = spec->guess_range * gf_rng_symmetric(spec->seed, STREAM_GUESS, base + (uint64_t)(n + m));
    }
}

int gf_train_run(const GfTrainSpec *spec, GfModel *mo, const GfPar *par, GfTrainLog *log,
                 const GfTrainHook *hook)
{
    Batch b;
    /* the group's ranks enter collectives together: all or none go on */
    int rc = (int)gf_par_unit_max(par, (double)batch_alloc(&b, spec, mo, par));
    if (rc) {
        batch_free(&b);
        return rc;
    }
    const int64_t T = mo->T, nl = mo->n_local, n = mo->n, m = mo->m;
    if (spec->method == GF_METHOD_GUESS) {
        for (int64_t g = 0; g < spec->max_guesses; ++g) {
            guess_weights(mo, spec, g);
            log->guesses = g + 1;
            const double err = test_error(&b);
            log->final_test_error = err;
            if (err < spec->task.threshold) {
                log->success = 1;
                log->success_at = g + 1;
                break;
            }
        }
        batch_free(&b);
        return GF_OK;
    }
    if (!log->velocity) {
        log->velocity = gf_calloc((size_t)b.glen, sizeof(double), "momentum");
        log->velocity_len = b.glen;
    }
    rc = !log->velocity ? GF_ENOMEM
         : log->velocity_len != b.glen ? gf_error(GF_EINTERNAL, "restored momentum has %lld entries, "
                                                  "expected %lld", (long long)log->velocity_len,
                                                  (long long)b.glen)
                                       : GF_OK;
    if ((rc = (int)gf_par_unit_max(par, (double)rc))) { /* the message is on the rank that failed */
        batch_free(&b);
        return rc;
    }
    free(b.V);
    b.V = log->velocity; /* the log owns the momentum, so a checkpoint holds it */
    const int64_t limit = spec->epochs > 0 ? spec->epochs : spec->max_epochs;
    int stopped = 0;
    if (log->success && spec->epochs <= 0)
        stopped = -1; /* resumed after the solving epoch: nothing left to do */
    for (int64_t epoch = log->epochs; !stopped && epoch < limit && epoch < log->capacity; ++epoch) {
        double loss = 0, gnorm = 0;
        int64_t batches = 0;
        memset(b.share, 0, (size_t)T * sizeof(double));
        for (int64_t first = 0; first < spec->train_size; first += spec->batch, ++batches) {
            const int64_t Bg = spec->train_size - first < spec->batch ? spec->train_size - first : spec->batch;
            int64_t off, len;
            my_share(&b, Bg, &off, &len);
            memset(b.G, 0, (size_t)b.glen * sizeof(double));
            double l = 0;
            if (len > 0) {
                load(&b, 0, first + off, len);
                forward(&b, len);
                l = backward(&b, len);
            }
            if (spec->split_batch) { /* sum over the groups' sequences */
                gf_par_time_sum_vec(par, b.G, b.glen);
                gf_par_time_sum_vec(par, &l, 1);
            }
            double ss = 0;
            for (int64_t k = 0; k < b.glen; ++k)
                b.G[k] /= (double)Bg; /* the batch mean */
            for (int64_t k = 0; k < nl * n; ++k)
                ss += b.G[k] * b.G[k];
            gnorm += sqrt(gf_par_unit_sum(par, ss));
            loss += l;
            /* v <- mu v - eta g; w <- w + v (W, U, b packed in the same order) */
            double *w[3] = {mo->W, mo->U, mo->b};
            const int64_t len3[3] = {nl * n, nl * m, nl};
            for (int q = 0, k = 0; q < 3; ++q)
                for (int64_t x = 0; x < len3[q]; ++x, ++k) {
                    b.V[k] = spec->momentum * b.V[k] - spec->lr * b.G[k];
                    w[q][x] += b.V[k];
                }
        }
        if (spec->split_batch)
            gf_par_time_sum_vec(par, b.share, T);
        log->loss[epoch] = loss / (double)spec->train_size;
        log->grad_norm[epoch] = gnorm / (double)batches;
        for (int64_t L = 0; L < T; ++L)
            log->lag_share[epoch * T + L] = log10(b.share[L] / (double)spec->train_size);
        flow_norms(&b, log->flow + epoch * T);
        const double err = test_error(&b);
        log->test_error[epoch] = err;
        log->final_test_error = err;
        log->epochs = epoch + 1;
        if (err < spec->task.threshold && !log->success) {
            log->success = 1;
            log->success_at = epoch + 1;
            if (spec->epochs <= 0)
                stopped = -1;
        }
        if (hook && !stopped && epoch + 1 < limit) { /* nothing to stop after the last epoch */
            const int h = hook->after_epoch(hook->ctx, mo, log);
            if (h < 0 || h > 1) {
                b.V = NULL;
                batch_free(&b);
                return h;
            }
            stopped = h;
        }
    }
    b.V = NULL; /* owned by the log */
    batch_free(&b);
    return stopped == 1 ? GF_TRAIN_STOPPED : GF_OK;
}

/* ---- options ---- */

static const char *const train_only[] = {"task", "lag", "noise", "method", "lr", "momentum", "batch",
                                         "epochs", "max-epochs", "train-size", "test-size",
                                         "guess-range", "max-guesses", "sweep-lag", "trials"};

int gf_train_parse_lags(const char *spec, int64_t **lags, int64_t *count)
{
    *lags = NULL;
    *count = 0;
    int64_t cap = 0;
    const char *p = spec;
    while (*p) {
        char *end;
        long long a = strtoll(p, &end, 10), b = a, step = 1;
        int bad = end == p;
        if (!bad && *end == ':') {
            const char *q = end + 1;
            b = strtoll(q, &end, 10);
            bad = end == q;
            if (!bad && *end == ':') {
                q = end + 1;
                step = strtoll(q, &end, 10);
                bad = end == q;
            }
        }
        if (bad || (*end && *end != ',') || a < 1 || b < a || step < 1 || b > 1000000) {
            free(*lags);
            *lags = NULL;
            return gf_error(GF_EUSAGE, "--sweep-lag: cannot read '%s'; give lags >= 1 as a comma list of "
                                       "L and a:b[:step] (at most 10^6)", spec);
        }
        for (long long L = a; L <= b; L = b - L < step ? b + 1 : L + step) { /* no overflow for a huge step */
            if (*count == cap) {
                cap = cap ? 2 * cap : 16;
                int64_t *grown = realloc(*lags, (size_t)cap * sizeof(int64_t));
                if (!grown) {
                    free(*lags);
                    *lags = NULL;
                    return gf_error(GF_ENOMEM, "--sweep-lag: out of memory");
                }
                *lags = grown;
            }
            (*lags)[(*count)++] = L;
        }
        p = *end ? end + 1 : end;
    }
    if (*count == 0)
        return gf_error(GF_EUSAGE, "--sweep-lag: the list is empty");
    return GF_OK;
}

int gf_train_configure(GfConfig *cfg)
{
    if (!cfg->train) {
        for (size_t k = 0; k < sizeof train_only / sizeof train_only[0]; ++k)
            if (gf_config_given(cfg, train_only[k]))
                return gf_error(GF_EUSAGE, "--%s belongs to `gradflow train`; run `gradflow train "
                                           "--%s ...`", train_only[k], train_only[k]);
        return GF_OK;
    }
    GfTaskKind kind;
    if (gf_task_parse(cfg->task, &kind))
        return gf_error(GF_EUSAGE, "--task: unknown task '%s' (allowed: latch, two-sequence, parity, "
                                   "adding)", cfg->task);
    if (strcmp(cfg->method, "bptt") && strcmp(cfg->method, "guess"))
        return gf_error(GF_EUSAGE, "--method: unknown method '%s' (allowed: bptt, guess)", cfg->method);
    struct { const char *name; int ok; const char *allowed; } checks[] = {
        {"lag", cfg->lag >= 1 && cfg->lag <= 1000000, "1 .. 10^6"},
        {"noise", cfg->noise >= 0, ">= 0"},
        {"lr", cfg->lr > 0, "> 0"},
        {"momentum", cfg->momentum >= 0 && cfg->momentum < 1, "0 <= mu < 1"},
        {"batch", cfg->batch >= 1 && cfg->batch <= 1 << 20, "1 .. 2^20"},
        {"epochs", cfg->epochs >= 0 && cfg->epochs <= 1 << 24, "0 .. 2^24"},
        {"max-epochs", cfg->max_epochs >= 1 && cfg->max_epochs <= 1 << 24, "1 .. 2^24"},
        {"train-size", cfg->train_size >= 1 && cfg->train_size <= 1 << 24, "1 .. 2^24"},
        {"test-size", cfg->test_size >= 1 && cfg->test_size <= 1 << 24, "1 .. 2^24"},
        {"guess-range", cfg->guess_range > 0, "> 0"},
        {"max-guesses", cfg->max_guesses >= 1, ">= 1"},
        {"trials", cfg->trials >= 1 && cfg->trials <= 1 << 20, "1 .. 2^20"},
        {"checkpoint-every", cfg->checkpoint_every >= 0, ">= 0"},
        {"max-walltime", cfg->max_walltime >= 0, ">= 0 seconds"},
        {"resume", !cfg->resume || cfg->sweep_lag[0] || strcmp(cfg->method, "guess"),
         "used for BPTT runs and for sweeps (a single guessing run starts over)"},
    };
    for (size_t k = 0; k < sizeof checks / sizeof checks[0]; ++k)
        if (!checks[k].ok)
            return gf_error(GF_EUSAGE, "--%s: the value is not allowed; it must be %s", checks[k].name,
                            checks[k].allowed);
    int64_t *lags = NULL, count = 0, maxlag = cfg->lag;
    if (cfg->sweep_lag[0]) {
        int rc = gf_train_parse_lags(cfg->sweep_lag, &lags, &count);
        if (rc)
            return rc;
        for (int64_t k = 0; k < count; ++k)
            maxlag = lags[k] > maxlag ? lags[k] : maxlag;
        free(lags);
    }
    /* the task fixes the sizes; a contradicting option is an error */
    GfTask task;
    gf_task_init(&task, kind, maxlag, cfg->noise);
    struct { const char *name; int64_t *field; int64_t value; } sizes[] = {
        {"steps", &cfg->steps, task.T}, {"inputs", &cfg->inputs, task.m}, {"outputs", &cfg->outputs, 1}};
    for (size_t k = 0; k < 3; ++k) {
        if (gf_config_given(cfg, sizes[k].name) && *sizes[k].field != sizes[k].value)
            return gf_error(GF_EUSAGE, "--%s: the task %s with lag %lld has %s = %lld; drop --%s",
                            sizes[k].name, cfg->task, (long long)maxlag, sizes[k].name,
                            (long long)sizes[k].value, sizes[k].name);
        *sizes[k].field = sizes[k].value;
    }
    if (!gf_config_given(cfg, "units"))
        cfg->units = 16;
    if (!gf_config_given(cfg, "activation"))
        cfg->activation = GF_ACT_TANH; /* targets are +-0.8 */
    if (!gf_config_given(cfg, "w-max"))
        cfg->w_max = 1.0 / sqrt((double)cfg->units);
    if (!gf_config_given(cfg, "flow-targets"))
        strcpy(cfg->flow_targets, "none"); /* training records its own flow norms */
    return GF_OK;
}

int gf_train_spec_from_config(const GfConfig *cfg, GfTrainSpec *spec)
{
    memset(spec, 0, sizeof *spec);
    GfTaskKind kind;
    if (gf_task_parse(cfg->task, &kind))
        return gf_error(GF_EUSAGE, "--task: unknown task '%s'", cfg->task);
    gf_task_init(&spec->task, kind, cfg->lag, cfg->noise);
    spec->method = strcmp(cfg->method, "guess") ? GF_METHOD_BPTT : GF_METHOD_GUESS;
    spec->lr = cfg->lr;
    spec->momentum = cfg->momentum;
    spec->guess_range = cfg->guess_range;
    spec->batch = cfg->batch;
    spec->epochs = cfg->epochs;
    spec->max_epochs = cfg->max_epochs;
    spec->max_guesses = cfg->max_guesses;
    spec->train_size = cfg->train_size;
    spec->test_size = cfg->test_size;
    spec->seed = cfg->seed;
    spec->split_batch = 1;
    return GF_OK;
}
