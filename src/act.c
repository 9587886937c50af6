/* act.c — activation functions (see act.h). */
#include <math.h>
#include <string.h>

#include "gradflow/act.h"

static const char *const gf_act_names[GF_ACT_COUNT] = {"logistic", "tanh", "linear", "relu"};

int gf_act_parse(const char *name, GfActivation *out)
{
    for (int i = 0; i < GF_ACT_COUNT; ++i)
        if (strcmp(name, gf_act_names[i]) == 0) {
            *out = (GfActivation)i;
            return 0;
        }
    return -1;
}

const char *gf_act_name(GfActivation act)
{
    return (unsigned)act < GF_ACT_COUNT ? gf_act_names[act] : "?";
}

double gf_act_fprime_max(GfActivation act) { return act == GF_ACT_LOGISTIC ? 0.25 : 1.0; }

void gf_act_apply(GfActivation act, size_t len, const double *net, double *a, double *fprime)
{
    switch (act) {
    case GF_ACT_LOGISTIC:
        for (size_t i = 0; i < len; ++i) {
            /* exp(-x) overflows to inf for x < -709: f = 0, f' = 0, as the limit. */
            const double y = 1.0 / (1.0 + exp(-net[i]));
            a[i] = y;
            fprime[i] = y * (1.0 - y);
        }
        break;
    case GF_ACT_TANH:
        for (size_t i = 0; i < len; ++i) {
            const double y = tanh(net[i]);
            a[i] = y;
            fprime[i] = 1.0 - y * y;
        }
        break;
    case GF_ACT_LINEAR:
        for (size_t i = 0; i < len; ++i) {
            a[i] = net[i];
            fprime[i] = 1.0;
        }
        break;
    case GF_ACT_RELU:
        for (size_t i = 0; i < len; ++i) {
            a[i] = net[i] > 0.0 ? net[i] : 0.0;
            fprime[i] = net[i] > 0.0 ? 1.0 : 0.0;
        }
        break;
    }
}
