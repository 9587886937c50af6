/* error.h — status codes and the per-process error message.
 *
 * Every function that can fail returns a GfStatus.  The first failure on a
 * process records one message (what was wrong, what is allowed); later
 * failures keep the first message, which names the root cause.  Ranks agree
 * on failures with gf_par_agree() (par.h), which brings the message of the
 * lowest failing rank to rank 0 for printing.
 *
 * Codes follow sysexits(3) so that job scripts can tell them apart.
 * All functions here are Local.
 */
#ifndef GRADFLOW_ERROR_H
#define GRADFLOW_ERROR_H

typedef enum {
    GF_OK = 0,
    GF_EUSAGE = 64,    /* bad command line or option value */
    GF_EDATA = 65,     /* an input file has the wrong shape, type or values */
    GF_EINTERNAL = 70, /* a bug or a failed library call that should not fail */
    GF_ENOMEM = 71,    /* an allocation failed */
    GF_EIO = 74,       /* a file could not be read, created or written */
    GF_STOPPED = 75,   /* stopped cleanly (signal, --max-walltime): the state is in a
                        * checkpoint; requeue and --resume (EX_TEMPFAIL) */
    GF_ECONFIG = 78    /* the --config file is unreadable or malformed */
} GfStatus;

#define GF_ERRMSG_MAX 1024

/* Records the message (printf-style) unless one is already recorded, and
 * returns code, so that callers can write `return gf_error(GF_EUSAGE, ...)`. */
int gf_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The recorded message, or "" when none. */
const char *gf_error_message(void);

/* Replaces the recorded message (used when agreeing on errors across ranks). */
void gf_error_set_message(const char *msg);

/* Forgets the recorded message. */
void gf_error_clear(void);

/* Allocates n elements of size bytes each, zeroed; records a GF_ENOMEM message
 * naming what (a tensor name) on failure or overflow. NULL for n == 0 is never
 * returned: at least one byte is allocated so that NULL always means failure. */
void *gf_calloc(size_t n, size_t size, const char *what);

#endif
