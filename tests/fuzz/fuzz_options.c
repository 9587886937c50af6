/* fuzz_options.c — libFuzzer target: gradflow's whole prolog on arbitrary
 * input, as `gradflow WORDS... --dry-run` on one rank: the command line, the
 * --config INI reader, validation, the size, overflow and memory checks, the
 * time and unit lists, the flow's estimate.
 *
 * Input: words, one a line, after "gradflow".  When the first line is
 * "[ini]", the rest is an INI file instead, passed with --config.
 * "--dry-run -o FILE" always follows, so nothing is written.  Every input
 * must end with status 0 or a GfStatus; a finding is a crash, a sanitizer
 * report, a leak, or an input slower than libFuzzer's -timeout (a hang or a
 * giant allocation). */
#define _DEFAULT_SOURCE /* strsep */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gradflow/error.h"
#include "gradflow/run.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_WORDS = 48 };
static char ini_path[64], out_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    MPI_Init(argc, argv);
    snprintf(ini_path, sizeof ini_path, "/tmp/gradflow-fuzz-%d.ini", (int)getpid());
    snprintf(out_path, sizeof out_path, "/tmp/gradflow-fuzz-%d.h5", (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 16))
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *words[MAX_WORDS + 5];
    int n = 0;
    words[n++] = "gradflow";
    char *rest = text, *line = strsep(&rest, "\n");
    if (line && !strcmp(line, "[ini]")) {
        FILE *f = fopen(ini_path, "wb");
        if (f) {
            fputs(rest ? rest : "", f);
            fclose(f);
        }
        words[n++] = "--config";
        words[n++] = ini_path;
    } else {
        for (; line && n < MAX_WORDS; line = strsep(&rest, "\n"))
            words[n++] = line;
    }
    words[n++] = "--dry-run";
    words[n++] = "-o";
    words[n++] = out_path;
    words[n] = NULL;
    const int status = gf_main(MPI_COMM_WORLD, n, words);
    if (status != 0 && (status < GF_EUSAGE || status > GF_ECONFIG))
        abort(); /* not a documented exit status */
    gf_error_clear();
    free(text);
    return 0;
}
