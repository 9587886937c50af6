/* act.h — activation functions f and their derivatives f' (SPEC §1).
 * All functions are Local and pure. */
#ifndef GRADFLOW_ACT_H
#define GRADFLOW_ACT_H

#include <stddef.h>

typedef enum {
    GF_ACT_LOGISTIC = 0, /* 1/(1+e^-x),  f' = f(1-f) <= 0.25 */
    GF_ACT_TANH = 1,     /* tanh x,      f' = 1-f^2  <= 1 */
    GF_ACT_LINEAR = 2,   /* x,           f' = 1 */
    GF_ACT_RELU = 3      /* max(0,x),    f' = [x > 0] (0 at x = 0) */
} GfActivation;

#define GF_ACT_COUNT 4

/* Parses a name ("logistic", "tanh", "linear", "relu"); 0 on success, -1 otherwise. */
int gf_act_parse(const char *name, GfActivation *out);

/* The canonical name. */
const char *gf_act_name(GfActivation act);

/* The theoretical maximum of f' (0.25 for logistic, 1 otherwise). */
double gf_act_fprime_max(GfActivation act);

/* a[i] = f(net[i]) and fprime[i] = f'(net[i]) for i < len. */
void gf_act_apply(GfActivation act, size_t len, const double *net, double *a, double *fprime);

#endif
