/* reference.h — for the MPI tests: an independent serial implementation of
 * SPEC §1-2 (naive loops over full arrays and closed-form activations, sharing
 * no code with the library's kernels) and the Check runner under MPI. */
#ifndef GRADFLOW_TEST_REFERENCE_H
#define GRADFLOW_TEST_REFERENCE_H

#include "gradflow/model.h"

typedef struct {
    double *net, *fp, *a;   /* (T, n), (T, n), (T+1, n) */
    double *delta;          /* (T, n) */
    double *dW, *dU, *db;   /* (n, n), (n, m), (n) */
    double E;
} Ref;

/* f(x) with f'(x) in *fp, by closed form. */
double ref_f(GfActivation act, double x, double *fp);

/* mo holds the full model (block 0..n). Computes the forward pass and E, and
 * with grads also delta and the gradients. */
void reference(const GfModel *mo, Ref *r, int grads);

void ref_alloc(Ref *r, int64_t n, int64_t m, int64_t T);
void ref_free(Ref *r);

/* Runs a Check suite under MPI (MPI initialised by the caller): no fork
 * (forked tests corrupt MPI), output on rank 0 only, and the failure count
 * agreed over ranks so every rank exits alike.  Finalizes MPI and returns
 * the exit status. */
struct Suite;
int run_mpi_suite(struct Suite *suite);

#endif
