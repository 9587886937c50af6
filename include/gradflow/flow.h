/* flow.h — the gradient-flow tensor G(s,t) = d delta(s) / d delta(t), its exact
 * log-space norms, the paper's bounds and the per-lag share of the gradient
 * (SPEC §3-4), and optionally the state Jacobian J(t,s) = d a(t) / d a(s).
 *
 * For each target time t and lag L = 0, 1, ..:
 *   G_0 = I[:,K],      G_{L+1} = F'(t-L-1) W^T G_L            (columns K)
 *   H_0 = I[:,K],      H_{L+1} = W^T F'(t-L) H_L               (H_L = J(t,t-L)^T[:,K])
 *   u_0 = F'(t) e(t),  u_{L+1} = F'(t-L-1) W^T u_L             (u_L = delta^(t)(t-L))
 * Each column is kept as M * 2^e with its own integer exponent e, renormalised
 * after every lag by the exact power of two of the column's largest entry, so
 * the arithmetic on M is the arithmetic on G with exact scalings: the log10
 * norms stay exact at any lag while G's entries under- or overflow double.
 *
 * Distribution: the Pt time groups share the target times (balanced by their
 * lag counts); within a group, rank u holds rows [lo, lo+n_local) of M, so it
 * holds O(n_local * |K|) of the tensor, never the whole.  A lag is GEMMs
 * W_local^T M (n_local x n by n x cols, in column panels that bound the
 * scratch to O(n |K| / Pu)) combined by MPI_Reduce_scatter.
 */
#ifndef GRADFLOW_FLOW_H
#define GRADFLOW_FLOW_H

#include <stdint.h>

#include "gradflow/forward.h"
#include "gradflow/model.h"
#include "gradflow/par.h"
#include "gradflow/timer.h"

typedef struct {
    int64_t n_t;          /* N_t target times */
    int64_t *targets;     /* (N_t) ascending times t_i, 1 <= t_i <= T */
    int64_t max_lag;      /* L: lags 0..L are recorded */
    int64_t n_k, n_v;     /* |K|, |V| */
    int64_t *units_k;     /* (N_k) ascending 0-based target units k */
    int64_t *units_v;     /* (N_v) ascending 0-based source units v */
    int tensor;           /* stream G (and J) through the sink */
    int jacobian;         /* also compute J */
} GfFlowSpec;

/* Per-(target, lag) results, (N_t, L+1) row-major, NaN where t_i - L < 1.
 * Complete on every rank after gf_flow_run. */
typedef struct {
    double *log10_fro, *log10_max;         /* of G(t_i-L, t_i)[V,K] */
    double *J_log10_fro, *J_log10_max;     /* of J(t_i, t_i-L)^T[V,K] (jacobian only) */
    double *log10_bound, *log10_bound_measured;
    double *contribution, *log10_contribution; /* ||delta^(t)(t-L)||_2 ||a(t-L-1)||_2 */
    double norm_A;          /* max_i sum_j |w_ij| */
    double norm_A_columns;  /* max_j sum_i |w_ij| */
    double w_max;           /* max |w_ij| */
    double lambda;          /* n w_max f'max */
    double fprime_max_theory, fprime_max_measured;
    double write_s;         /* this rank's seconds in the sink (writing the tensor) */
} GfFlowResult;

/* Receives the tensor lag batch by lag batch.  put is called the same number
 * of times on every rank of the world (Collective on world), once a round;
 * a rank with nothing this round passes target = -1 and nlags = 0.
 * G and J (J NULL unless jacobian) are (nlags, nva, N_k) row-major: this
 * rank's V rows [va0, va0 + nva) (indices into units_v) at lags
 * [lag0, lag0 + nlags) of target index `target`.  Returns a status that is
 * already agreed across ranks. */
typedef struct {
    void *ctx;
    int (*put)(void *ctx, int64_t target, int64_t lag0, int64_t nlags, int64_t va0, int64_t nva,
               const double *G, const double *J);
} GfFlowSink;

/* Control of a long flow run: what to leave out, and a hook at every round.
 * skip (N_t, may be NULL): 1 for targets already finished (a resumed run);
 * they are neither computed nor written.  round (may be NULL) is called by
 * every rank at every write round, whether or not the tensor is written: a
 * point all ranks reach in step, so it may make collective calls.  done
 * (N_t) is 1 for the targets this rank's group has finished (all their
 * lags written, their norms in res on unit rank 0 of the group) or skipped;
 * finished counts them.  round returns GF_OK to go on, GF_STOPPED to stop
 * the run there (gf_flow_run returns GF_STOPPED), or an error; its return
 * must be the same on every rank. */
typedef struct {
    const unsigned char *skip;
    void *ctx;
    int (*round)(void *ctx, int64_t round, const unsigned char *done, int64_t finished,
                 const GfFlowResult *res);
} GfFlowControl;

/* Local.  Parses the unit list `spec` ("all", "outputs", or a comma list of
 * 0-based units i and ranges a:b[:step], inclusive) into a sorted unique
 * array (malloc'ed into *units, caller frees). GF_EUSAGE naming option.
 * units and count NULL: only checks the list, allocating nothing. */
int gf_flow_parse_units(const char *spec, int64_t n, int64_t n_out, const char *option,
                        int64_t **units, int64_t *count);

/* Local.  The lags of a write round: about 1 MiB of tensor per rank (G and J
 * together), at least one, a divisor of L+1.  cv from gf_flow_max_v_rows. */
int64_t gf_flow_batch_lags(const GfFlowSpec *spec, int64_t cv);

/* Local.  The most V rows any unit rank of `par` holds. */
int64_t gf_flow_max_v_rows(const GfFlowSpec *spec, const GfPar *par);

/* Local.  Bytes gf_flow_run allocates on a rank with n_local units (of n,
 * Pu ranks per group, at most cv V rows per rank), as --dry-run reports. */
int64_t gf_flow_estimate_rank_bytes(const GfFlowSpec *spec, int64_t n, int64_t n_local, int Pu, int64_t cv);

/* Local.  Least-squares slope of y against x = 0..count-1 over the finite
 * entries (the decay rate of log10 ||G|| per step); NaN if fewer than two. */
double gf_flow_fit_slope(const double *y, int64_t count);

/* Local.  Allocates the result arrays for spec; GF_ENOMEM on failure. */
int gf_flow_result_alloc(const GfFlowSpec *spec, GfFlowResult *res);
void gf_flow_result_free(GfFlowResult *res);

/* Collective on world.  Computes everything above for the run in model/fw,
 * streaming the tensor through sink (may be NULL when !spec->tensor); ctl
 * may be NULL.  res must be zero on entry except, on one rank, the rows of
 * skipped targets (they are summed over the world at the end). */
int gf_flow_run(const GfModel *model, const GfForward *fw, const GfFlowSpec *spec, const GfPar *par,
                GfFlowSink *sink, const GfFlowControl *ctl, GfFlowResult *res, GfProgress *progress);

#endif
