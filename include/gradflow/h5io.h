/* h5io.h — the only module that calls HDF5: the output file (format "gradflow/1",
 * SPEC §6) and the user's input datasets.
 *
 * The output is written to PATH.partial with collective parallel HDF5 (each
 * rank writes its own hyperslab) and renamed to PATH only after the root
 * attribute complete=1 has been written last; on failure the partial file is
 * removed, so a file named PATH is always whole and an earlier PATH is never
 * lost to a failed run.
 *
 * Every function is Collective on the world communicator of par, agrees on
 * errors before returning (gf_par_agree), and returns the agreed status.
 */
#ifndef GRADFLOW_H5IO_H
#define GRADFLOW_H5IO_H

#include <stdint.h>

#include "gradflow/bptt.h"
#include "gradflow/config.h"
#include "gradflow/flow.h"
#include "gradflow/forward.h"
#include "gradflow/model.h"
#include "gradflow/par.h"
#include "gradflow/train.h"

typedef struct GfH5Out GfH5Out;

/* Creates PATH.partial (replacing a stale partial file from a crashed run) and
 * writes the root provenance attributes with complete = 0. */
int gf_h5_create(const GfPar *par, const char *path, const char *command_line, const GfModel *sizes,
                 GfH5Out **out);

/* Opens PATH.partial, left by a stopped run (complete = 0), read-write to
 * continue it; records command_line as the attribute resumed_command_line. */
int gf_h5_reopen(const GfPar *par, const char *path, const char *command_line, const GfModel *sizes,
                 GfH5Out **out);

/* Flushes everything written so far to stable storage (a sync): what a
 * checkpoint then claims is on disk.  Collective; agreed status. */
int gf_h5_flush(GfH5Out *h);

/* /config: one attribute per resolved option, and the resolved INI text as /config/ini. */
int gf_h5_write_config(GfH5Out *h, const GfConfig *cfg, const char *ini);
/* /model (W, U, b, a0) only. */
int gf_h5_write_params(GfH5Out *h, const GfModel *model);
/* /model (W, U, b, a0) and /input (x, d, target_mask). */
int gf_h5_write_model(GfH5Out *h, const GfModel *model);
/* /forward (net, a, fprime). */
int gf_h5_write_forward(GfH5Out *h, const GfModel *model, const GfForward *fw);
/* /backward (delta, E) and /gradient (dE_dW, dE_dU, dE_db). */
int gf_h5_write_backward(GfH5Out *h, const GfModel *model, const GfBackward *bw);

/* /flow: the axis datasets (targets, lags, units_v, units_k) and, when
 * spec->tensor, /flow/G (and /flow/J), contiguous; sets *sink to stream the
 * tensor into them (gf_flow_run calls it).  Each rank writes its rows with
 * pwrite from a thread of its own while the flow computes (GRADFLOW_TENSOR_IO
 * =mpiio: through MPI-IO instead); gf_h5_flush, gf_h5_flow_end and
 * gf_h5_close wait for those writes and report their errors. */
int gf_h5_flow_begin(GfH5Out *h, const GfFlowSpec *spec, GfFlowSink *sink);

/* Local: GF_EUSAGE, with a message, when GRADFLOW_TENSOR_IO is set to
 * anything but posix or mpiio. */
int gf_h5_check_tensor_io(void);

/* For a resumed run: opens /flow/G (and /flow/J) of a reopened file, checks
 * their shape against spec, and sets *sink as gf_h5_flow_begin does. */
int gf_h5_flow_reopen(GfH5Out *h, const GfFlowSpec *spec, GfFlowSink *sink);

/* /flow norms, bounds and attributes, and /lag, from res (complete on every rank). */
int gf_h5_flow_end(GfH5Out *h, const GfFlowSpec *spec, const GfFlowResult *res);

/* /train: the run's attributes, per-epoch curves and the final weights. */
int gf_h5_write_train(GfH5Out *h, const GfModel *model, const GfTrainSpec *spec, const GfTrainLog *log);

/* /train attributes and /train/sweep: (lags x trials) success, success_at, final_test_error and the
 * success rate per lag; the arrays are complete on rank 0. */
int gf_h5_write_sweep(GfH5Out *h, const GfTrainSpec *spec, const int64_t *lags, int64_t n_lags,
                      int64_t trials, const double *success, const double *at, const double *error);

/* /checkpoint: the momentum of W, U, b and the epoch count, for resuming. */
int gf_h5_write_velocity(GfH5Out *h, const GfModel *model, const GfTrainLog *log);

/* Reads a training checkpoint (a file written with /model = the current
 * weights, /train, /checkpoint): this rank's rows of W, U, b into model, the
 * curves, counters and momentum into log (allocated for model's sizes), and
 * the checkpoint's resolved INI text into *ini (malloc'ed). */
int gf_h5_read_checkpoint(const GfPar *par, const char *path, char **ini, GfModel *model, GfTrainLog *log);

/* /checkpoint/done (lags x trials) of a sweep checkpoint (after gf_h5_write_sweep). */
int gf_h5_write_sweep_done(GfH5Out *h, const double *done);

/* Reads a sweep checkpoint into out (4 arrays of lags x trials: success,
 * success_at, final_test_error, done) and its resolved INI into *ini. */
int gf_h5_read_sweep_checkpoint(const GfPar *par, const char *path, char **ini, int64_t n_lags,
                                int64_t trials, double *out);

/* A flow checkpoint holds GF_FLOW_CHECKPOINT_ARRAYS (N_t x L+1) arrays, in
 * this order: log10_norm_fro, log10_norm_max, contribution,
 * log10_contribution, J_log10_norm_fro, J_log10_norm_max (the last two only
 * with the state Jacobian: count is 4 or 6). */
#define GF_FLOW_CHECKPOINT_ARRAYS 6

/* /checkpoint of a simulation stopped or checkpointed at write round
 * `round`: done (N_t, 1 = finished), the target axis, and the norms' rows
 * (complete on rank 0; rows of unfinished targets are ignored on reading). */
int gf_h5_write_flow_checkpoint(GfH5Out *h, const GfFlowSpec *spec, int64_t round, const double *done,
                                const double *const *norms, int count);

/* Reads a flow checkpoint on every rank: done, the norms and the resolved
 * INI (*ini, malloc'ed); checks that its target times are spec's. */
int gf_h5_read_flow_checkpoint(const GfPar *par, const char *path, char **ini, const GfFlowSpec *spec,
                               double *done, double *const *norms, int count);

/* Ends the file and frees h.  With status == GF_OK: writes complete = 1 last
 * (after a sync), closes, and rank 0 renames PATH.partial to PATH.
 * Otherwise (some rank failed, or the run stopped) closes and leaves
 * PATH.partial, which never claims complete = 1.  Returns the agreed status. */
int gf_h5_close(GfH5Out *h, int status);

/* Local.  1 when gf_h5_close abandoned a file after an I/O error: HDF5
 * would close it again in MPI_Finalize with collective flushes that may no
 * longer match across ranks, so the caller ends with MPI_Abort instead. */
int gf_h5_abandoned(void);

/* Opens the user's dataset spec "FILE.h5:/path" on rank 0 and checks that it
 * is a 2-D floating-point dataset; dims receives its shape on every rank.
 * Errors name `option` (e.g. "--weights"): GF_EIO when the file cannot be
 * opened, GF_EDATA when the dataset is missing or of the wrong type or rank. */
int gf_h5_probe(const GfPar *par, const char *spec, const char *option, int64_t dims[2]);

/* Reads rows [row0, row0 + nrows) of the 2-D dataset spec (cols columns, as
 * probed) into buf (nrows, cols) as doubles, each rank its own rows (nrows
 * may be 0), and checks that every value is finite unless allow_nan (NaN
 * then passes but infinities do not). */
int gf_h5_read_rows(const GfPar *par, const char *spec, const char *option, int64_t row0,
                    int64_t nrows, int64_t cols, double *buf, int allow_nan);

#endif
