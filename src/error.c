/* error.c — the per-process error message (see error.h). */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/error.h"

static char gf_errmsg[GF_ERRMSG_MAX];

int gf_error(int code, const char *fmt, ...)
{
    if (gf_errmsg[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(gf_errmsg, sizeof gf_errmsg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *gf_error_message(void) { return gf_errmsg; }

void gf_error_set_message(const char *msg)
{
    snprintf(gf_errmsg, sizeof gf_errmsg, "%s", msg ? msg : "");
}

void gf_error_clear(void) { gf_errmsg[0] = '\0'; }

void *gf_calloc(size_t n, size_t size, const char *what)
{
    if (size != 0 && n > SIZE_MAX / size) {
        gf_error(GF_ENOMEM, "%s: %zu elements of %zu bytes overflow the address space", what, n,
                 size);
        return NULL;
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        gf_error(GF_ENOMEM, "%s: cannot allocate %zu bytes (out of memory on this rank)", what,
                 n * size);
    return p;
}
