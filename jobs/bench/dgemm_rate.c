/* dgemm_rate.c — cblas_dgemm rate at exactly the flow's GEMM shape (benchmark helper).
 *
 * gradflow's flow recurrence does, per lag, the row-major product
 *     C (n x k1) = W^T (n x n, CblasTrans) * M (n x k1),   k1 = |K| + 1
 * (the extra column carries delta^(t) for the per-lag share).  This program
 * times that call with the same OpenBLAS (run it with OPENBLAS_NUM_THREADS=1)
 * and prints one line of key=value pairs:
 *     n=.. k1=.. calls=.. seconds_per_call=.. (mean) median_s=.. gflops=.. (2 n n k1 / mean)
 * Usage: dgemm_rate N K1 [CALLS]        (one untimed warm-up call first)
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s N K1 [CALLS]\n", argv[0]);
        return 2;
    }
    const long n = atol(argv[1]), k1 = atol(argv[2]), calls = argc > 3 ? atol(argv[3]) : 5;
    if (n < 1 || k1 < 1 || calls < 1)
        return 2;
    double *W = malloc((size_t)(n * n) * sizeof(double));
    double *M = malloc((size_t)(n * k1) * sizeof(double));
    double *C = malloc((size_t)(n * k1) * sizeof(double));
    double *t = malloc((size_t)calls * sizeof(double));
    if (!W || !M || !C || !t) {
        fprintf(stderr, "dgemm_rate: out of memory\n");
        return 1;
    }
    /* values of order 1 (no denormals, no zeros that a BLAS could skip) */
    unsigned long long s = 88172645463325252ULL;
    for (long i = 0; i < n * n; ++i) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        W[i] = (double)(s >> 11) * 0x1p-53 - 0.5;
    }
    for (long i = 0; i < n * k1; ++i) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        M[i] = (double)(s >> 11) * 0x1p-53 - 0.5;
        C[i] = 0.0;
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)k1, (int)n, 1.0, W, (int)n,
                M, (int)k1, 0.0, C, (int)k1);
    double sum = 0;
    for (long c = 0; c < calls; ++c) {
        const double t0 = now();
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)k1, (int)n, 1.0, W,
                    (int)n, M, (int)k1, 0.0, C, (int)k1);
        t[c] = now() - t0;
        sum += t[c];
    }
    qsort(t, (size_t)calls, sizeof(double), cmp);
    const double mean = sum / (double)calls, med = t[calls / 2];
    printf("n=%ld k1=%ld calls=%ld seconds_per_call=%.9g median_s=%.9g gflops=%.6g check=%.3g\n",
           n, k1, calls, mean, med, 2.0 * (double)n * (double)n * (double)k1 / mean * 1e-9, C[0]);
    free(W), free(M), free(C), free(t);
    return 0;
}
