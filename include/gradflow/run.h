/* run.h — the gradflow program as a library call, so tests can run it in-process. */
#ifndef GRADFLOW_RUN_H
#define GRADFLOW_RUN_H

#include <mpi.h>
#include <stdint.h>

/* Collective on world.  Runs `gradflow argv...` (argv[0] is the program name)
 * and returns its exit status (0, or a GfStatus code), identical on every
 * rank.  Rank 0 prints the one error message; no rank calls MPI_Abort for a
 * user error. MPI must be initialised. */
int gf_main(MPI_Comm world, int argc, char **argv);

/* Local.  Bytes of memory a rank with n_local units needs for a run of sizes
 * (n, m, n_out, T): every array gradflow allocates, as --dry-run reports. */
int64_t gf_estimate_rank_bytes(int64_t n, int64_t m, int64_t n_out, int64_t T, int64_t n_local);

/* Local.  Bytes of the output file's datasets (metadata excluded). */
int64_t gf_estimate_file_bytes(int64_t n, int64_t m, int64_t n_out, int64_t T);

#endif
