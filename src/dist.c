/* dist.c — block partition arithmetic (see dist.h). */
#include "gradflow/dist.h"

GfBlock gf_dist_block(int64_t n, int parts, int index)
{
    const int64_t base = n / parts, extra = n % parts;
    GfBlock b;
    b.lo = index * base + (index < extra ? index : extra);
    b.count = base + (index < extra ? 1 : 0);
    return b;
}

int gf_dist_owner(int64_t n, int parts, int64_t i)
{
    const int64_t base = n / parts, extra = n % parts;
    /* The first `extra` parts hold base + 1 items each. */
    if (i < extra * (base + 1))
        return (int)(i / (base + 1));
    return (int)(extra + (i - extra * (base + 1)) / base);
}
