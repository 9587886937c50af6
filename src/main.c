/* main.c — gradflow's entry point: MPI in, the program, MPI out. */
#include <mpi.h>

#include "gradflow/h5io.h"
#include "gradflow/run.h"

int main(int argc, char **argv)
{
    /* funneled: only this thread calls MPI; the output's write-back helper
     * (h5io.c) is a thread that makes no MPI call */
    int provided = MPI_THREAD_SINGLE;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    const int status = gf_main(MPI_COMM_WORLD, argc, argv);
    /* an output abandoned after an I/O error (the message is out, the
     * .partial left): MPI_Finalize would hang in HDF5's clean-up, so every
     * rank ends here with the same status */
    if (gf_h5_abandoned()) {
        MPI_Barrier(MPI_COMM_WORLD); /* rank 0 has printed the error */
        MPI_Abort(MPI_COMM_WORLD, status);
    }
    MPI_Finalize();
    return status;
}
