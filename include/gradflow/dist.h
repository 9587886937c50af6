/* dist.h — block partition arithmetic (no MPI).
 *
 * n items are split over `parts` parts in contiguous blocks whose sizes differ
 * by at most one; the first n % parts parts get the extra item.  A part may be
 * empty when parts > n.  All functions are Local and pure.
 */
#ifndef GRADFLOW_DIST_H
#define GRADFLOW_DIST_H

#include <stdint.h>

typedef struct {
    int64_t lo;    /* first global index of the block */
    int64_t count; /* number of items in the block (may be 0) */
} GfBlock;

/* The block of part `index` (0 <= index < parts, parts >= 1, n >= 0). */
GfBlock gf_dist_block(int64_t n, int parts, int index);

/* The part that owns global item i (0 <= i < n). */
int gf_dist_owner(int64_t n, int parts, int64_t i);

#endif
