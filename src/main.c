/* main.c — gradflow's entry point: MPI in, the program, MPI out. */
#include <mpi.h>

#include "gradflow/run.h"

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    const int status = gf_main(MPI_COMM_WORLD, argc, argv);
    MPI_Finalize();
    return status;
}
