/* blas.h — which BLAS kernels this process runs.  All functions are Local.
 *
 * OpenBLAS picks its kernels for the CPU at load time.  On some virtual CPUs
 * Debian 12's OpenBLAS (0.3.21) does not recognise a recent processor and
 * falls back to its baseline SSE3 kernels ("Prescott"), several times slower
 * than the AVX2 or AVX-512 ones the CPU runs (measured: 9.7 against 70 Gflop/s
 * for the flow's dgemm on a Xeon with AVX-512).  OPENBLAS_CORETYPE, set before
 * the program starts, overrides the choice. */
#ifndef GRADFLOW_BLAS_H
#define GRADFLOW_BLAS_H

#include <stddef.h>

/* The name of the kernels in use, e.g. "Haswell" (static storage). */
const char *gf_blas_kernels(void);

/* The BLAS build and its kernels, e.g. "OpenBLAS 0.3.21 NO_LAPACKE
 * DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64", into buf (always
 * terminated, truncated to size). */
void gf_blas_describe(char *buf, size_t size);

/* When the kernels lack the vector instructions this CPU has (baseline
 * kernels on an AVX2 CPU): writes the OPENBLAS_CORETYPE value that would use
 * them ("Haswell" or "SkylakeX") into buf and returns 1; otherwise returns 0
 * and buf is "".  Always 0 off x86-64. */
int gf_blas_kernels_behind(char *buf, size_t size);

#endif
