/* fuzz_weights.c — libFuzzer target: the --weights loader on arbitrary
 * files.  The input is the bytes of FILE in
 *
 *     gradflow --weights FILE:/W --steps 3 --flow-targets none
 *              --max-memory 256M -o OUT --force --quiet
 *
 * run in-process on one rank: the HDF5 open, the dataset's type, rank and
 * shape checks, the sizes the file claims (n from its shape: n^2 beyond
 * size_t, n x T beyond memory), the row reads and the finite-value check.
 * Every input must end with status 0 or a GfStatus; a finding is a crash,
 * a sanitizer report, a leak, a hang or a giant allocation (libFuzzer's
 * -timeout and -rss_limit_mb).  Crashes inside libhdf5 itself on corrupt
 * files are HDF5's (README, section Reliability, says what was found). */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "gradflow/error.h"
#include "gradflow/run.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char in_path[64], spec[80], out_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    MPI_Init(argc, argv);
    snprintf(in_path, sizeof in_path, "/tmp/gradflow-fuzz-%d-w.h5", (int)getpid());
    snprintf(spec, sizeof spec, "%s:/W", in_path);
    snprintf(out_path, sizeof out_path, "/tmp/gradflow-fuzz-%d-out.h5", (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(in_path, "wb");
    if (!f)
        return 0;
    const size_t put = fwrite(data, 1, size, f);
    fclose(f);
    if (put != size)
        return 0;
    char *words[] = {"gradflow", "--weights", spec, "--steps", "3", "--flow-targets", "none",
                     "--max-memory", "256M", "-o", out_path, "--force", "--quiet", NULL};
    const int status = gf_main(MPI_COMM_WORLD, (int)(sizeof words / sizeof words[0]) - 1, words);
    if (status != 0 && (status < GF_EUSAGE || status > GF_ECONFIG))
        abort(); /* not a documented exit status */
    gf_error_clear();
    return 0;
}
