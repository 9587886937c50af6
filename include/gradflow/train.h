/* train.h — learning long-term dependencies (SPEC §2's update on task.h's tasks).
 *
 * Methods:
 *   bptt   mini-batch gradient descent through time with momentum:
 *          v <- mu v - eta g,  w <- w + v,  g = the batch mean of dE/dw
 *          (with mu = 0 exactly SPEC §2's Delta w = -eta dE/dw);
 *   guess  random weight guessing: every weight and bias uniform in
 *          [-range, range], a fresh guess until one solves the task.
 * Success is checked on the test set after every epoch (bptt) or guess.
 *
 * Distribution: the sequences of a batch (and of the test set) are split
 * over the Pt time groups and the gradients summed with MPI_Allreduce over
 * the groups; within a group the units are split as in the core (one
 * Allgatherv per step forward, one Reduce_scatter per step backward).  In a
 * sweep each (lag, trial) runs whole on one group instead.
 */
#ifndef GRADFLOW_TRAIN_H
#define GRADFLOW_TRAIN_H

#include <stdint.h>

#include "gradflow/config.h"
#include "gradflow/error.h"
#include "gradflow/model.h"
#include "gradflow/par.h"
#include "gradflow/task.h"

typedef enum { GF_METHOD_BPTT = 0, GF_METHOD_GUESS = 1 } GfMethod;

typedef struct {
    GfTask task;
    GfMethod method;
    double lr, momentum, guess_range;
    int64_t batch, epochs, max_epochs, max_guesses, train_size, test_size;
    uint64_t seed;           /* data and initialisation */
    int split_batch;         /* 1: the batch is split over the time groups */
} GfTrainSpec;

/* What one run records; arrays (capacity, ...) row-major. */
typedef struct {
    int64_t capacity;        /* epochs the arrays hold */
    int64_t epochs;          /* epochs run (bptt) */
    int64_t guesses;         /* guesses made (guess) */
    int64_t success;         /* 1 when the task was solved */
    int64_t success_at;      /* the epoch or guess that solved it (1-based), else -1 */
    double *loss;            /* (capacity) mean E per training sequence over the epoch */
    double *grad_norm;       /* (capacity) mean ||dE/dW||_F of the batch gradients */
    double *test_error;      /* (capacity) max |a(T) - d(T)| over the test set after the epoch */
    double *lag_share;       /* (capacity, T) log10 mean ||delta(T-L)|| ||a(T-L-1)|| over the epoch */
    double *flow;            /* (capacity, T) log10 ||G(T-L, T)[:, out]||, test sequence 0 */
    double final_test_error;
    double *velocity;        /* (velocity_len) momentum of W, U, b rows, packed; NULL until
                              * gf_train_run allocates it or a resume restores it */
    int64_t velocity_len;
} GfTrainLog;

/* Called by gf_train_run after every epoch (Collective on world: every rank
 * calls it at the same epochs in a single run).  Returns 0 to go on, 1 to
 * stop here (the run can be resumed), or a GfStatus error. */
typedef struct {
    void *ctx;
    int (*after_epoch)(void *ctx, const GfModel *model, const GfTrainLog *log);
} GfTrainHook;

/* Local.  For `gradflow train`: checks the training options, and sets the
 * sizes the task fixes (steps, inputs, outputs: an option contradicting
 * them is an error) and the training defaults (units 16, tanh, w-max
 * 1/sqrt(n), no flow tensor) for options not given.  Without train: refuses
 * training options.  GF_EUSAGE with a message on error. */
int gf_train_configure(GfConfig *cfg);

/* Local.  Parses a sweep list ("5:50:5,100") into a malloc'ed array. */
int gf_train_parse_lags(const char *spec, int64_t **lags, int64_t *count);

/* Local. */
int gf_train_spec_from_config(const GfConfig *cfg, GfTrainSpec *spec);
int gf_train_log_alloc(GfTrainLog *log, int64_t capacity, int64_t T);
void gf_train_log_free(GfTrainLog *log);

/* Collective on the unit communicator, and on the time communicator when
 * spec->split_batch.  Trains (or guesses) the model in place: model holds
 * this rank's rows of the initial weights on entry and the final ones on
 * return (bptt; guess leaves the solving guess, or the last one).  A log
 * with epochs > 0 (restored from a checkpoint, velocity included) continues
 * from there.  hook may be NULL. */
int gf_train_run(const GfTrainSpec *spec, GfModel *model, const GfPar *par, GfTrainLog *log,
                 const GfTrainHook *hook);

/* Local.  The status gf_train_run returns when the hook stopped it. */
#define GF_TRAIN_STOPPED GF_STOPPED

#endif
