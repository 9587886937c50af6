/* stream.c — memory-bandwidth references for the gradflow benchmark.
 *
 * Usage: stream N [TRIAD_MIB] [PASSES]
 *   read:  time to stream one n x n double matrix once (read-only, a vector
 *          sum with 8 independent 64-byte accumulators), the mean of PASSES
 *          passes over the same matrix after one untimed pass, so the matrix
 *          sits wherever a matrix of that size sits when a program streams it
 *          again and again (as gradflow streams W once per lag or step);
 *   triad: a[i] = b[i] + s c[i] (STREAM's triad, 24 bytes per element
 *          counted, write-allocate not counted) over three arrays of
 *          TRIAD_MIB MiB each [512: together far larger than the caches], best
 *          of PASSES passes, as STREAM reports;
 *   triad_w: the same triad with three arrays of n*n/3 doubles, i.e. the same
 *          working set as W.
 * Prints one line of key=value pairs (seconds, bytes per second).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef double v8d __attribute__((vector_size(64)));

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double *alloc(size_t count)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, count * sizeof(double) + 64)) {
        fprintf(stderr, "stream: out of memory\n");
        exit(1);
    }
    return p;
}

static double read_pass(const double *a, size_t count)
{
    /* 8 independent 64-byte accumulators: enough loads in flight for one
     * core to reach its streaming rate (4 x 32-byte ones fall short) */
    v8d s[8] = {{0}};
    size_t i = 0;
    for (; i + 64 <= count; i += 64)
        for (int k = 0; k < 8; ++k) {
            v8d x;
            memcpy(&x, a + i + 8 * k, 64);
            s[k] += x;
        }
    v8d t = s[0];
    for (int k = 1; k < 8; ++k)
        t += s[k];
    double r = 0;
    for (int k = 0; k < 8; ++k)
        r += t[k];
    for (; i < count; ++i)
        r += a[i];
    return r;
}

static void triad(double *restrict a, const double *restrict b, const double *restrict c,
                  double q, size_t count)
{
    for (size_t i = 0; i < count; ++i)
        a[i] = b[i] + q * c[i];
}

/* best seconds of `passes` triads over arrays of `count` doubles */
static double time_triad(size_t count, int passes)
{
    double *a = alloc(count), *b = alloc(count), *c = alloc(count);
    for (size_t i = 0; i < count; ++i)
        a[i] = 0.0, b[i] = 1.0 + (double)(i & 7), c[i] = 0.5;
    triad(a, b, c, 3.0, count);
    double best = 1e300;
    for (int p = 0; p < passes; ++p) {
        const double t0 = now();
        triad(a, b, c, 3.0 + p, count);
        const double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    if (a[count / 2] == 42.0)
        printf("#");
    free(a), free(b), free(c);
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s N [TRIAD_MIB] [PASSES]\n", argv[0]);
        return 2;
    }
    const size_t n = (size_t)atol(argv[1]);
    const double triad_mib = argc > 2 ? atof(argv[2]) : 512.0;
    const int passes = argc > 3 ? atoi(argv[3]) : 10;
    if (n < 1 || triad_mib <= 0 || passes < 1)
        return 2;

    /* read-only stream of an n x n matrix */
    const size_t nn = n * n;
    double *W = alloc(nn);
    for (size_t i = 0; i < nn; ++i)
        W[i] = (double)(i % 1000) * 1e-3;
    volatile double sink = read_pass(W, nn);
    const double t0 = now();
    for (int p = 0; p < passes; ++p)
        sink += read_pass(W, nn);
    const double read_s = (now() - t0) / passes;
    free(W);

    const size_t big = (size_t)(triad_mib * 1048576.0 / 8.0);
    const double tb = time_triad(big, passes);
    const size_t small = nn / 3 > 0 ? nn / 3 : 1;
    const double tw = time_triad(small, passes);
    printf("n=%zu matrix_bytes=%zu read_s=%.9g read_bw=%.6g triad_bw=%.6g triad_mib=%g "
           "triad_w_bw=%.6g passes=%d sink=%g\n",
           n, nn * 8, read_s, (double)nn * 8.0 / read_s, 24.0 * (double)big / tb, triad_mib,
           24.0 * (double)small / tw, passes, (double)sink);
    return 0;
}
