/* timeset.h — sets of time steps written as "T", "5", "1:10:2", "10:T:5", ...
 * All functions are Local. */
#ifndef GRADFLOW_TIMESET_H
#define GRADFLOW_TIMESET_H

#include <stdint.h>

/* Parses spec, a comma list of items `t` or `a:b[:step]` (inclusive, step >= 1;
 * `T` stands for the last step T), into mask (T entries, mask[tau-1] = 1 when
 * tau is listed; entries not listed are set to 0; mask NULL: only check the
 * list, in time independent of T).  On error returns GF_EUSAGE
 * with a message naming `option`, the offending item and what is allowed. */
int gf_timeset_parse(const char *spec, int64_t T, const char *option, unsigned char *mask);

/* Local.  A decimal number of 1 to 18 digits in [s, end) (so below 10^18,
 * never overflowing) into *out; -1 when malformed or longer. */
int gf_parse_index(const char *s, const char *end, int64_t *out);

#endif
