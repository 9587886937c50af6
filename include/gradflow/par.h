/* par.h — every MPI collective gradflow uses lives behind this interface.
 *
 * Ranks form a grid P = Pt x Pu (SPEC §5): rank r has time index r / Pu and
 * unit index r % Pu.  The Pu ranks that share a time index form the "unit"
 * communicator and split the n units in contiguous blocks (dist.h).
 * Functions say whether they are Collective (and on which communicator) or Local.
 */
#ifndef GRADFLOW_PAR_H
#define GRADFLOW_PAR_H

#include <mpi.h>
#include <stdint.h>

#include "gradflow/dist.h"

typedef struct GfPar GfPar;

/* Collective on world.  Wraps (does not duplicate) world; no grid yet. */
int gf_par_create(MPI_Comm world, GfPar **out);

/* Collective on world.  Splits world into the Pt x Pu grid and partitions n
 * units over the unit communicator. grid_t * grid_u must equal the size. */
int gf_par_set_grid(GfPar *par, int grid_t, int grid_u, int64_t n);

/* Local.  Frees what gf_par_create/set_grid made (Collective on world if a grid
 * was set, since communicators are freed). */
void gf_par_destroy(GfPar *par);

int gf_par_rank(const GfPar *par);   /* Local: rank in world */
int gf_par_size(const GfPar *par);   /* Local: size of world */
MPI_Comm gf_par_world(const GfPar *par);
MPI_Comm gf_par_unit_comm(const GfPar *par);
int gf_par_unit_rank(const GfPar *par);
int gf_par_unit_size(const GfPar *par);
/* Local: this rank's block of units, and the block of unit-rank r. */
GfBlock gf_par_units(const GfPar *par);
GfBlock gf_par_units_of(const GfPar *par, int unit_rank);

/* Collective on world.  Agrees on `status` (0 = fine on this rank): returns
 * GF_OK when every rank passed it 0, else the status of the lowest failing
 * rank, whose error message is then recorded on every rank (so rank 0 can
 * print the root cause).  One MPI_Allreduce on the good path. */
int gf_par_agree(const GfPar *par, int status);

/* Collective on world: the number of ranks that share this rank's node. */
int gf_par_node_size(const GfPar *par);

/* Collective on world: 1 when flag is nonzero on any rank. */
int gf_par_any(const GfPar *par, int flag);

/* Collective on world.  Broadcasts a NUL-terminated string from rank 0; on the
 * other ranks *text is replaced by a malloc'ed copy (caller frees). A NULL
 * *text on rank 0 is broadcast as NULL. */
int gf_par_bcast_string(const GfPar *par, char **text);

/* Collective on world: broadcast count doubles / int64s from rank 0. */
void gf_par_bcast_doubles(const GfPar *par, double *buf, int64_t count);
void gf_par_bcast_int64(const GfPar *par, int64_t *buf, int count);

/* Collective on the unit communicator.  full (n) holds this rank's block at
 * its global offset on entry and every rank's block on return: MPI_Allgatherv
 * in place. */
void gf_par_allgather_units(const GfPar *par, double *full);

/* Collective on the unit communicator.  Sums the n-vectors `partial` of all
 * unit ranks and leaves this rank's block of the sum in local (n_local):
 * MPI_Reduce_scatter. */
void gf_par_reduce_scatter_units(const GfPar *par, const double *partial, double *local);

/* Collective on the unit communicator.  As above for an (n, cols) row-major
 * block: the (n, cols) partials are summed and this rank keeps its
 * (n_local, cols) rows.  cols * n must fit in an int. */
void gf_par_reduce_scatter_rows(const GfPar *par, const double *partial, double *local, int cols);

/* Collective on the unit communicator.  full (n, cols) row-major holds this
 * rank's rows on entry and every rank's rows on return (in place). */
void gf_par_allgather_rows(const GfPar *par, double *full, int cols);

/* Collective on the unit communicator.  From this rank's rows W (n_local, n)
 * of an n x n matrix, builds its rows of the transpose, Wt (n_local, n):
 * Wt[j - lo][i] = W[i][j] (MPI_Alltoallv of the blocks). */
int gf_par_transpose_rows(const GfPar *par, const double *W, double *Wt);

/* Collective on the time communicator (the Pt ranks that share a unit
 * block): element-wise sum / max of buf over the time groups, in place. */
void gf_par_time_sum_vec(const GfPar *par, double *buf, int64_t count);
void gf_par_time_max_vec(const GfPar *par, double *buf, int count);

/* Collective on the unit communicator: element-wise sum / max over the unit
 * ranks of buf (count entries), in place. */
void gf_par_unit_sum_vec(const GfPar *par, double *buf, int count);
void gf_par_unit_max_vec(const GfPar *par, double *buf, int count);

/* Collective on world: element-wise sum over all ranks of buf, in place. */
void gf_par_world_sum_vec(const GfPar *par, double *buf, int64_t count);

/* Local: this rank's time-group index (0 .. Pt-1) and the number of groups. */
int gf_par_time_rank(const GfPar *par);
int gf_par_time_size(const GfPar *par);

/* Collective on the unit communicator: global sum / max of a local value. */
double gf_par_unit_sum(const GfPar *par, double v);
double gf_par_unit_max(const GfPar *par, double v);

/* Collective on world: min, average and max of v over all ranks. */
void gf_par_min_avg_max(const GfPar *par, double v, double out[3]);

#endif
