/* blas.c — which BLAS kernels this process runs (see blas.h). */
#include <cblas.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gradflow/blas.h"

const char *gf_blas_kernels(void)
{
    const char *core = openblas_get_corename();
    return core ? core : "unknown";
}

void gf_blas_describe(char *buf, size_t size)
{
    const char *config = openblas_get_config();
    if (config && strstr(config, gf_blas_kernels())) /* DYNAMIC_ARCH builds name them */
        snprintf(buf, size, "%s", config);
    else
        snprintf(buf, size, "%s (kernels: %s)", config ? config : "OpenBLAS", gf_blas_kernels());
}

int gf_blas_kernels_behind(char *buf, size_t size)
{
    if (size)
        buf[0] = '\0';
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    /* OpenBLAS's x86-64 kernel families with AVX2 and FMA; any other on an
     * AVX2+FMA CPU leaves most of the floating-point rate unused */
    static const char *const wide[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"};
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return 0;
    for (size_t k = 0; k < sizeof wide / sizeof wide[0]; ++k)
        if (!strcasecmp(gf_blas_kernels(), wide[k]))
            return 0;
    const int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    snprintf(buf, size, "%s", avx512 ? "SkylakeX" : "Haswell");
    return 1;
#else
    (void)size;
    return 0;
#endif
}
