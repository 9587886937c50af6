/* bptt.h — backpropagation through time and the gradients (SPEC §2).
 *
 *   e_k(tau) = a_k(tau) - d_k(tau) for output units k at target times, else 0
 *   delta(T+1) = 0,  delta(tau) = F'(tau) [ e(tau) + W^T delta(tau+1) ]
 *   dE/dW = sum_tau delta(tau) a(tau-1)^T,  dE/dU = sum delta x^T,  dE/db = sum delta
 */
#ifndef GRADFLOW_BPTT_H
#define GRADFLOW_BPTT_H

#include "gradflow/forward.h"
#include "gradflow/model.h"
#include "gradflow/par.h"
#include "gradflow/timer.h"

typedef struct {
    double *delta;   /* (T, n_local) delta(tau) at row tau-1, this rank's units */
    double *E;       /* (T) E(tau), 0 off target times; replicated */
    double loss;     /* E = sum_tau E(tau); replicated */
    double *dW;      /* (n_local, n) rows of dE/dW */
    double *dU;      /* (n_local, m) rows of dE/dU */
    double *db;      /* (n_local) */
    double norm_dW;  /* ||dE/dW||_F over all ranks; replicated */
    double *work;    /* (n + n_local) scratch for the backward products */
    int64_t bad_step;        /* the last step tau (the first reached backward) whose delta(tau) is
                              * not finite, 0 if none; replicated over the unit ranks */
    int64_t bad_lo, bad_hi;  /* first and last unit of delta(bad_step) that is not finite */
} GfBackward;

/* Local.  Allocates for model's sizes; GF_ENOMEM on failure. */
int gf_bptt_alloc(const GfModel *model, GfBackward *bw);
void gf_bptt_free(GfBackward *bw);

/* Local.  E(tau) for every tau from the replicated activations; returns E. */
double gf_bptt_loss(const GfModel *model, const GfForward *fw, double *E);

/* Collective on the unit communicator: one MPI_Reduce_scatter per step (the
 * partial products W_local^T delta_local(tau+1), n entries each, summed and
 * split back into blocks) and one MPI_Allreduce for the norm.  The gradients
 * are GEMMs over the whole time axis at the end. */
void gf_bptt_run(const GfModel *model, const GfForward *fw, GfBackward *bw, const GfPar *par,
                 GfProgress *progress);

#endif
