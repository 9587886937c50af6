/* forward.h — the forward pass net(tau) = W a(tau-1) + U x(tau) + b, a = f(net) (SPEC §1). */
#ifndef GRADFLOW_FORWARD_H
#define GRADFLOW_FORWARD_H

#include "gradflow/model.h"
#include "gradflow/par.h"
#include "gradflow/timer.h"

typedef struct {
    double *net;     /* (T, n_local) net(tau) at row tau-1, this rank's units */
    double *fprime;  /* (T, n_local) f'(net(tau)) */
    double *a;       /* (T+1, n) a(tau) at row tau, row 0 = a(0); replicated on every rank */
    int stop_nonfinite; /* set by the caller: stop after the first step with a non-finite a(tau) */
    int64_t bad_step;   /* that step (0: every a(tau) finite), the same on every rank */
    int64_t bad_lo, bad_hi; /* first and last unit of a(bad_step) that is not finite */
} GfForward;

/* Local.  Allocates the arrays for model's sizes; GF_ENOMEM on failure. */
int gf_forward_alloc(const GfModel *model, GfForward *fw);
void gf_forward_free(GfForward *fw);

/* Collective on the unit communicator (one MPI_Allgatherv per step).
 * U x(tau) for all tau is one GEMM up front; W a(tau-1) is a GEMV per step,
 * since each step needs the previous one's gathered state.  Every step's
 * gathered a(tau) is checked for inf/NaN (it is replicated, so every rank
 * finds the same step without communicating); see bad_step. */
void gf_forward_run(const GfModel *model, GfForward *fw, const GfPar *par, GfProgress *progress);

#endif
