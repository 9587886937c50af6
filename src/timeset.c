/* timeset.c — time-set parsing (see timeset.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/error.h"
#include "gradflow/timeset.h"

int gf_parse_index(const char *s, const char *end, int64_t *out)
{
    if (s == end || end - s > 18) /* below 10^18: no overflow */
        return -1;
    int64_t v = 0;
    for (const char *p = s; p < end; ++p) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}

/* Parses one time ("T" or a decimal integer) from [s, end); -1 when malformed. */
static int64_t parse_time(const char *s, const char *end, int64_t T)
{
    if (end - s == 1 && *s == 'T')
        return T;
    int64_t v;
    return gf_parse_index(s, end, &v) ? -1 : v;
}

int gf_timeset_parse(const char *spec, int64_t T, const char *option, unsigned char *mask)
{
    if (mask)
        memset(mask, 0, (size_t)T);
    if (!spec || !*spec)
        return gf_error(GF_EUSAGE, "%s: empty list; give times like 'T', '5', '1:10:2' (1 <= t <= T = %lld)",
                        option, (long long)T);
    const char *item = spec;
    for (;;) {
        const char *stop = strchr(item, ',');
        if (!stop)
            stop = item + strlen(item);
        /* split item into up to three fields at ':' */
        const char *f[4] = {item, NULL, NULL, NULL};
        int nf = 1;
        for (const char *p = item; p < stop; ++p)
            if (*p == ':') {
                if (nf == 3) {
                    nf = 4;
                    break;
                }
                f[nf++] = p + 1;
            }
        int64_t v[3] = {0, 0, 1};
        int bad = nf > 3;
        for (int k = 0; k < nf && !bad; ++k) {
            const char *e = (k + 1 < nf) ? f[k + 1] - 1 : stop;
            v[k] = parse_time(f[k], e, T);
            if (v[k] < 0 || (k == 2 && (f[k] == e || *f[k] == 'T')))
                bad = 1;
        }
        if (!bad && nf == 1)
            v[1] = v[0];
        if (bad)
            return gf_error(GF_EUSAGE,
                            "%s: cannot read '%.*s'; allowed: a time t, 'T' (the last step), or a "
                            "range a:b or a:b:step, separated by commas",
                            option, (int)(stop - item), item);
        if (v[0] < 1 || v[1] > T || v[0] > v[1] || v[2] < 1)
            return gf_error(GF_EUSAGE,
                            "%s: '%.*s' is outside the run; times must satisfy 1 <= a <= b <= T = "
                            "%lld and step >= 1",
                            option, (int)(stop - item), item, (long long)T);
        for (int64_t t = v[0]; mask && t <= v[1]; t += v[2])
            mask[t - 1] = 1;
        if (*stop == '\0')
            break;
        item = stop + 1;
    }
    return GF_OK;
}
