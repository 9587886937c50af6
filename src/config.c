/* config.c — option table, command line, INI, validation (see config.h). */
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/config.h"
#include "gradflow/error.h"
#include "gradflow/flow.h"
#include "gradflow/timeset.h"

typedef enum { K_INT, K_UINT, K_REAL, K_STR, K_FLAG, K_ACT, K_INIT } Kind;

typedef struct {
    const char *name;   /* long option and INI key */
    Kind kind;
    size_t offset;      /* into GfConfig */
    size_t size;        /* capacity of K_STR fields */
    const char *metavar;
    const char *help;
    int ini;            /* may appear in an INI file */
} OptDef;

#define F(field) offsetof(GfConfig, field), sizeof(((GfConfig *)0)->field)

static const OptDef gf_opts[] = {
    {"units", K_INT, F(units), "N", "number of units n (taken from --weights when given)", 1},
    {"inputs", K_INT, F(inputs), "M", "number of external inputs m (0: the paper's net)", 1},
    {"outputs", K_INT, F(outputs), "N_OUT", "output units: the last N_OUT units, 1 <= N_OUT <= n", 1},
    {"steps", K_INT, F(steps), "T", "number of time steps T", 1},
    {"activation", K_ACT, F(activation), "NAME", "logistic | tanh | linear | relu", 1},
    {"seed", K_UINT, F(seed), "S", "seed of the counter-based generator (0 .. 2^64-1)", 1},
    {"init", K_INIT, F(init), "KIND", "uniform (w_ij ~ U[-w_max, w_max]) | gaussian (N(0, gain^2/n))", 1},
    {"w-max", K_REAL, F(w_max), "W", "bound of the uniform initialisation, >= 0", 1},
    {"gain", K_REAL, F(gain), "G", "gain of the gaussian initialisation, >= 0", 1},
    {"input-weight-scale", K_REAL, F(input_weight_scale), "S", "U ~ S * U[-1, 1], >= 0", 1},
    {"bias-scale", K_REAL, F(bias_scale), "S", "b ~ S * U[-1, 1], >= 0 (0: no bias)", 1},
    {"a0-scale", K_REAL, F(a0_scale), "S", "a(0) ~ S * U[-1, 1], >= 0 (0: a(0) = 0)", 1},
    {"input-scale", K_REAL, F(input_scale), "S", "x(t) ~ S * U[-1, 1], >= 0", 1},
    {"target-scale", K_REAL, F(target_scale), "S",
     "generated targets: S * U[0, 1] (logistic, relu) or S * U[-1, 1] (tanh, linear), >= 0", 1},
    {"target-times", K_STR, F(target_times), "LIST",
     "times where E(t) counts: comma list of t, a:b, a:b:step (T = last step); 'file': the "
     "non-NaN rows of --targets-file", 1},
    {"weights", K_STR, F(weights), "FILE.h5:/DSET", "load W (n x n float) instead of generating it", 1},
    {"inputs-file", K_STR, F(inputs_file), "FILE.h5:/DSET", "load x (T x m float) instead of generating it", 1},
    {"targets-file", K_STR, F(targets_file), "FILE.h5:/DSET",
     "load d (T x n_out float); rows of NaN are not target times", 1},
    {"flow-targets", K_STR, F(flow_targets), "LIST",
     "target times t_i of the flow tensor: 'targets' (the target times), 'none', or a time list", 1},
    {"max-lag", K_INT, F(max_lag), "L", "lags 0..L of the flow (-1: all, max t_i - 1)", 1},
    {"flow-units-k", K_STR, F(flow_units_k), "LIST", "target units K: outputs | all | 0-based list (a:b[:step])", 1},
    {"flow-units-v", K_STR, F(flow_units_v), "LIST", "source units V: all | 0-based list", 1},
    {"no-flow-tensor", K_FLAG, F(no_flow_tensor), "", "write the flow's norms, bounds and /lag but not /flow/G", 1},
    {"state-jacobian", K_FLAG, F(state_jacobian), "", "also write the state Jacobian d a(t)/d a(t-L) as /flow/J", 1},
    {"task", K_STR, F(task), "NAME", "train: latch | two-sequence | parity | adding", 1},
    {"lag", K_INT, F(lag), "L", "train: steps between the information and the target, >= 1", 1},
    {"noise", K_REAL, F(noise), "S", "train: standard deviation of the distractor inputs, >= 0", 1},
    {"method", K_STR, F(method), "NAME", "train: bptt (gradient descent) | guess (random weight guessing)", 1},
    {"lr", K_REAL, F(lr), "ETA", "train: learning rate eta > 0 (update -eta * batch-mean dE/dw)", 1},
    {"momentum", K_REAL, F(momentum), "MU", "train: momentum, 0 <= mu < 1", 1},
    {"batch", K_INT, F(batch), "B", "train: sequences per gradient step", 1},
    {"epochs", K_INT, F(epochs), "E", "train: run exactly E epochs (0: until solved, at most --max-epochs)", 1},
    {"max-epochs", K_INT, F(max_epochs), "E", "train: give up after E epochs", 1},
    {"train-size", K_INT, F(train_size), "N", "train: training sequences (an epoch is one pass)", 1},
    {"test-size", K_INT, F(test_size), "N", "train: test sequences; solved = every one within the threshold", 1},
    {"guess-range", K_REAL, F(guess_range), "W", "train: guess weights uniform in [-W, W]", 1},
    {"max-guesses", K_INT, F(max_guesses), "G", "train: give up after G guesses", 1},
    {"sweep-lag", K_STR, F(sweep_lag), "LIST", "train: a sweep over lags (a:b:step, commas); '' = the single --lag", 1},
    {"trials", K_INT, F(trials), "K", "train: trials per lag in a sweep (seeds from --seed and the index)", 1},
    {"checkpoint-every", K_INT, F(checkpoint_every), "N",
     "write OUTPUT.ckpt each time N more flow targets are finished (training: every N epochs; "
     "sweeps: rounds of cells); 0: only when stopped by SIGTERM/SIGUSR1 or --max-walltime", 1},
    {"max-walltime", K_REAL, F(max_walltime), "S", "stop cleanly (checkpoint, exit 75) after S seconds (0: no limit)", 1},
    {"resume", K_FLAG, F(resume), "", "continue a stopped run from OUTPUT.ckpt (and OUTPUT.partial); same options", 1},
    {"allow-nonfinite", K_FLAG, F(allow_nonfinite), "",
     "carry on when activations or error signals overflow to inf or NaN (default: stop with an error "
     "naming the step and units)", 1},
    {"max-memory", K_STR, F(max_memory), "BYTES",
     "refuse a run whose estimate per rank exceeds it, e.g. 4G (default: physical memory / ranks on the node)", 1},
    {"grid", K_STR, F(grid), "PtxPu", "process grid: Pt time groups x Pu ranks per group (default 1xP)", 1},
    {"output", K_STR, F(output), "FILE.h5", "output file; written as FILE.h5.partial, renamed when complete", 1},
    {"config", K_STR, F(config), "FILE.ini", "read options from an INI file; the command line wins", 0},
    {"dry-run", K_FLAG, F(dry_run), "", "print memory per rank and file size, check the output directory, write nothing", 1},
    {"quiet", K_FLAG, F(quiet), "", "no progress lines or configuration echo", 1},
    {"force", K_FLAG, F(force), "", "replace an existing output file (only once the new one is complete)", 1},
};
#define NOPTS ((int)(sizeof gf_opts / sizeof gf_opts[0]))
_Static_assert(sizeof gf_opts / sizeof gf_opts[0] <= sizeof((GfConfig *)0)->given,
               "GfConfig.given has a flag for every option");

static const char *const gf_init_names[] = {"uniform", "gaussian"};

void gf_config_defaults(GfConfig *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->units = 64;
    cfg->inputs = 0;
    cfg->outputs = 1;
    cfg->steps = 100;
    cfg->activation = GF_ACT_LOGISTIC;
    cfg->seed = 1;
    cfg->init = GF_INIT_UNIFORM;
    cfg->w_max = 1.0;
    cfg->gain = 1.0;
    cfg->input_weight_scale = 1.0;
    cfg->bias_scale = 0.0;
    cfg->a0_scale = 0.0;
    cfg->input_scale = 1.0;
    cfg->target_scale = 1.0;
    strcpy(cfg->target_times, "T");
    strcpy(cfg->flow_targets, "targets");
    cfg->max_lag = -1;
    strcpy(cfg->flow_units_k, "outputs");
    strcpy(cfg->flow_units_v, "all");
    strcpy(cfg->task, "latch");
    strcpy(cfg->method, "bptt");
    cfg->lag = 10;
    cfg->noise = 0.2;
    cfg->lr = 0.05;
    cfg->momentum = 0.9;
    cfg->batch = 20;
    cfg->epochs = 0;
    cfg->max_epochs = 300;
    cfg->train_size = 100;
    cfg->test_size = 100;
    cfg->guess_range = 100.0;
    cfg->max_guesses = 100000;
    cfg->trials = 1;
}

static const OptDef *find_opt(const char *name, size_t len)
{
    for (int k = 0; k < NOPTS; ++k)
        if (strlen(gf_opts[k].name) == len && strncmp(gf_opts[k].name, name, len) == 0)
            return &gf_opts[k];
    return NULL;
}

/* Stores text into option o; `where` prefixes messages ("--units" or "f.ini:3: units"). */
static int set_value(GfConfig *cfg, const OptDef *o, const char *text, const char *where, int code)
{
    char *base = (char *)cfg + o->offset, *end = NULL;
    errno = 0;
    switch (o->kind) {
    case K_INT: {
        long long v = strtoll(text, &end, 10);
        if (!*text || *end || errno == ERANGE)
            return gf_error(code, "%s: '%s' is not an integer (allowed: decimal digits, within "
                                  "+-9.2e18)", where, text);
        *(int64_t *)base = v;
        break;
    }
    case K_UINT: {
        unsigned long long v = strtoull(text, &end, 10);
        if (!*text || *end || errno == ERANGE || text[0] == '-')
            return gf_error(code, "%s: '%s' is not an unsigned integer (allowed: 0 .. 2^64-1)",
                            where, text);
        *(uint64_t *)base = v;
        break;
    }
    case K_REAL: {
        double v = strtod(text, &end);
        if (!*text || *end || errno == ERANGE || !isfinite(v))
            return gf_error(code, "%s: '%s' is not a finite number", where, text);
        *(double *)base = v;
        break;
    }
    case K_STR:
        if (strlen(text) >= o->size)
            return gf_error(code, "%s: value is %zu characters long; at most %zu are allowed", where,
                            strlen(text), o->size - 1);
        strcpy(base, text);
        break;
    case K_FLAG:
        if (!strcmp(text, "1") || !strcmp(text, "true") || !strcmp(text, "yes") || !strcmp(text, "on"))
            *(int *)base = 1;
        else if (!strcmp(text, "0") || !strcmp(text, "false") || !strcmp(text, "no") ||
                 !strcmp(text, "off"))
            *(int *)base = 0;
        else
            return gf_error(code, "%s: '%s' is not a boolean (allowed: true/false, yes/no, on/off, 1/0)",
                            where, text);
        break;
    case K_ACT:
        if (gf_act_parse(text, (GfActivation *)base) != 0)
            return gf_error(code, "%s: unknown activation '%s' (allowed: logistic, tanh, linear, relu)",
                            where, text);
        break;
    case K_INIT:
        if (!strcmp(text, "uniform"))
            *(GfInit *)base = GF_INIT_UNIFORM;
        else if (!strcmp(text, "gaussian"))
            *(GfInit *)base = GF_INIT_GAUSSIAN;
        else
            return gf_error(code, "%s: unknown initialisation '%s' (allowed: uniform, gaussian)", where,
                            text);
        break;
    }
    cfg->given[o - gf_opts] = 1;
    return GF_OK;
}

int gf_config_parse_args(GfConfig *cfg, int argc, char **argv, GfAction *action)
{
    *action = GF_ACTION_RUN;
    int k0 = 1;
    if (argc > 1 && !strcmp(argv[1], "train")) { /* the subcommand */
        cfg->train = 1;
        k0 = 2;
    }
    for (int k = k0; k < argc; ++k) {
        const char *arg = argv[k];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            *action = GF_ACTION_HELP;
            return GF_OK;
        }
        if (!strcmp(arg, "--version")) {
            *action = GF_ACTION_VERSION;
            return GF_OK;
        }
        const OptDef *o = NULL;
        const char *value = NULL;
        if (!strcmp(arg, "-o")) {
            o = find_opt("output", 6);
        } else if (!strncmp(arg, "--", 2)) {
            const char *eq = strchr(arg + 2, '=');
            size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
            o = find_opt(arg + 2, len);
            if (eq)
                value = eq + 1;
        }
        if (!o)
            return gf_error(GF_EUSAGE, "unknown option '%s' (see gradflow --help for the options)", arg);
        char where[96];
        snprintf(where, sizeof where, "--%s", o->name);
        if (o->kind == K_FLAG && !value) {
            value = "1";
        } else if (!value) {
            if (k + 1 >= argc)
                return gf_error(GF_EUSAGE, "%s needs a value (%s)", where, o->metavar);
            value = argv[++k];
        }
        int rc = set_value(cfg, o, value, where, GF_EUSAGE);
        if (rc)
            return rc;
    }
    return GF_OK;
}

typedef struct {
    GfConfig *cfg;
    unsigned char cmdline[64]; /* options given on the command line (they win) */
    const char *path;
    int status;
} IniState;

/* Debian's libinih passes no line numbers to handlers, so messages name the key. */
static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
    IniState *st = user;
    char where[GF_PATH_MAX + 128];
    snprintf(where, sizeof where, "%s: key '%s'", st->path, name);
    if (section[0] && strcmp(section, "gradflow") != 0) {
        st->status = gf_error(GF_ECONFIG, "%s: unknown section [%s] (allowed: none, or [gradflow])",
                              st->path, section);
        return 0;
    }
    const OptDef *o = find_opt(name, strlen(name));
    if (!o || !o->ini) {
        st->status = gf_error(GF_ECONFIG,
                              "%s: unknown key '%s' (keys are the long option names of "
                              "gradflow --help, without '--'; 'config' cannot be nested)",
                              st->path, name);
        return 0;
    }
    if (st->cmdline[o - gf_opts])
        return 1; /* the command line wins */
    int rc = set_value(st->cfg, o, value, where, GF_ECONFIG);
    if (rc) {
        st->status = rc;
        return 0;
    }
    return 1;
}

int gf_config_apply_ini(GfConfig *cfg, const char *text, const char *path)
{
    IniState st = {.cfg = cfg, .path = path, .status = GF_OK};
    memcpy(st.cmdline, cfg->given, sizeof st.cmdline);
    int rc = ini_parse_string(text, on_ini_entry, &st);
    if (st.status)
        return st.status;
    if (rc > 0)
        return gf_error(GF_ECONFIG, "%s:%d: cannot parse this line (expected 'key = value', "
                                    "'[gradflow]' or a '#'/';' comment)", path, rc);
    if (rc < 0)
        return gf_error(GF_ECONFIG, "%s: cannot parse the file (out of memory)", path);
    return GF_OK;
}

int gf_config_given(const GfConfig *cfg, const char *name)
{
    const OptDef *o = find_opt(name, strlen(name));
    return o ? cfg->given[o - gf_opts] : 0;
}

static int parse_grid(GfConfig *cfg, int nranks)
{
    if (!cfg->grid[0]) { /* stays "" so a stored configuration runs on any rank count */
        cfg->grid_t = 1;
        cfg->grid_u = nranks;
        return GF_OK;
    }
    char *end = NULL;
    errno = 0;
    long pt = strtol(cfg->grid, &end, 10);
    long pu = -1;
    if (end != cfg->grid && (*end == 'x' || *end == 'X')) {
        char *p = end + 1;
        pu = strtol(p, &end, 10);
        if (end == p || *end)
            pu = -1;
    }
    if (errno || pt < 1 || pu < 1 || pt > 1 << 24 || pu > 1 << 24)
        return gf_error(GF_EUSAGE, "--grid: '%s' is not a grid; write PtxPu with positive integers, "
                                   "e.g. 1x%d", cfg->grid, nranks);
    if (pt * pu != nranks)
        return gf_error(GF_EUSAGE, "--grid: %ldx%ld has %ld ranks but the job has %d; Pt * Pu must "
                                   "equal the number of MPI ranks", pt, pu, pt * pu, nranks);
    cfg->grid_t = (int)pt;
    cfg->grid_u = (int)pu;
    return GF_OK;
}

static int check_file_spec(const char *value, const char *option)
{
    if (!value[0])
        return GF_OK;
    const char *colon = strrchr(value, ':');
    if (!colon || colon == value || colon[1] != '/')
        return gf_error(GF_EUSAGE, "%s: '%s' must name a file and a dataset as FILE.h5:/path/to/dataset",
                        option, value);
    return GF_OK;
}

int gf_config_validate(GfConfig *cfg, int nranks)
{
    struct { const char *name; double v; } reals[] = {
        {"w-max", cfg->w_max}, {"gain", cfg->gain}, {"input-weight-scale", cfg->input_weight_scale},
        {"bias-scale", cfg->bias_scale}, {"a0-scale", cfg->a0_scale},
        {"input-scale", cfg->input_scale}, {"target-scale", cfg->target_scale},
        {"max-walltime", cfg->max_walltime}};
    for (size_t k = 0; k < sizeof reals / sizeof reals[0]; ++k)
        if (!(reals[k].v >= 0.0))
            return gf_error(GF_EUSAGE, "--%s: %g is negative; it must be >= 0", reals[k].name,
                            reals[k].v);
    if (cfg->checkpoint_every < 0)
        return gf_error(GF_EUSAGE, "--checkpoint-every: %" PRId64 " is negative; it must be >= 0 (0: "
                        "checkpoint only when stopped)", cfg->checkpoint_every);
    int rc;
    if ((rc = check_file_spec(cfg->weights, "--weights")) ||
        (rc = check_file_spec(cfg->inputs_file, "--inputs-file")) ||
        (rc = check_file_spec(cfg->targets_file, "--targets-file")))
        return rc;
    if (!cfg->output[0])
        return gf_error(GF_EUSAGE, "no output file; give -o FILE.h5 (or output = FILE.h5 in the "
                                   "config file)");
    size_t len = strlen(cfg->output);
    if (cfg->output[len - 1] == '/')
        return gf_error(GF_EUSAGE, "-o: '%s' names a directory; give a file name such as "
                                   "%srun.h5", cfg->output, cfg->output);
    if (len + sizeof ".partial" > GF_PATH_MAX)
        return gf_error(GF_EUSAGE, "-o: the path is too long (at most %d characters)",
                        GF_PATH_MAX - (int)sizeof ".partial");
    if ((rc = parse_grid(cfg, nranks)))
        return rc;
    return gf_config_check_sizes(cfg);
}

int gf_config_check_sizes(GfConfig *cfg)
{
    /* with a targets file its non-NaN rows are the target times: recorded as
     * 'file', so the resolved configuration replays whatever their pattern */
    if (cfg->targets_file[0] && !gf_config_given(cfg, "target-times"))
        strcpy(cfg->target_times, "file");
    /* MPI counts and HDF5 selections are int-sized per rank; keep every global
     * extent within int so no count can wrap. */
    const int64_t lim = INT32_MAX;
    if (cfg->units < 1 || cfg->units > lim)
        return gf_error(GF_EUSAGE, "--units: %" PRId64 " is not allowed; n must be 1 .. %" PRId64,
                        cfg->units, lim);
    if (cfg->steps < 1 || cfg->steps > lim)
        return gf_error(GF_EUSAGE, "--steps: %" PRId64 " is not allowed; T must be 1 .. %" PRId64,
                        cfg->steps, lim);
    if (cfg->inputs < 0 || cfg->inputs > lim)
        return gf_error(GF_EUSAGE, "--inputs: %" PRId64 " is not allowed; m must be 0 .. %" PRId64,
                        cfg->inputs, lim);
    if (cfg->outputs < 1 || cfg->outputs > cfg->units)
        return gf_error(GF_EUSAGE, "--outputs: %" PRId64 " is not allowed; n_out must be 1 .. n = %" PRId64,
                        cfg->outputs, cfg->units);
    if (!strcmp(cfg->target_times, "file") && !cfg->targets_file[0])
        return gf_error(GF_EUSAGE, "--target-times: 'file' means the rows of --targets-file that "
                                   "are not NaN, but no --targets-file is given");
    /* the lists are checked without a mask: no allocation before the memory check */
    if (strcmp(cfg->target_times, "file") != 0) {
        int rc = gf_timeset_parse(cfg->target_times, cfg->steps, "--target-times", NULL);
        if (rc)
            return rc;
    }
    if (strcmp(cfg->flow_targets, "targets") && strcmp(cfg->flow_targets, "none")) {
        int rc = gf_timeset_parse(cfg->flow_targets, cfg->steps, "--flow-targets", NULL);
        if (rc)
            return rc;
    }
    if (cfg->max_lag < -1 || cfg->max_lag > cfg->steps - 1)
        return gf_error(GF_EUSAGE, "--max-lag: %" PRId64 " is not allowed; L must be -1 (all lags) "
                                   "or 0 .. T-1 = %" PRId64, cfg->max_lag, cfg->steps - 1);
    /* checked only: the lists are built after the memory check */
    int rc = gf_flow_parse_units(cfg->flow_units_k, cfg->units, cfg->outputs, "--flow-units-k", NULL, NULL);
    if (rc)
        return rc;
    if (!strcmp(cfg->flow_units_v, "outputs"))
        return gf_error(GF_EUSAGE, "--flow-units-v: 'outputs' is not allowed; give 'all' or a "
                                   "0-based unit list");
    return gf_flow_parse_units(cfg->flow_units_v, cfg->units, cfg->outputs, "--flow-units-v", NULL, NULL);
}

int gf_config_option_count(void) { return NOPTS; }

void gf_config_option(const GfConfig *cfg, int k, GfOptValue *out)
{
    const OptDef *o = &gf_opts[k];
    const char *base = (const char *)cfg + o->offset;
    memset(out, 0, sizeof *out);
    out->name = o->name;
    switch (o->kind) {
    case K_INT: out->kind = GF_OPT_INT; out->i = *(const int64_t *)base; break;
    case K_UINT: out->kind = GF_OPT_UINT; out->u = *(const uint64_t *)base; break;
    case K_REAL: out->kind = GF_OPT_REAL; out->d = *(const double *)base; break;
    case K_STR: out->kind = GF_OPT_STRING; out->s = base; break;
    case K_FLAG: out->kind = GF_OPT_FLAG; out->i = *(const int *)base; break;
    case K_ACT: out->kind = GF_OPT_STRING; out->s = gf_act_name(*(const GfActivation *)base); break;
    case K_INIT: out->kind = GF_OPT_STRING; out->s = gf_init_names[*(const GfInit *)base]; break;
    }
}

size_t gf_config_to_ini(const GfConfig *cfg, char *buf, size_t size)
{
    size_t used = 0;
    for (int k = 0; k < NOPTS; ++k) {
        /* training options only in a training run's INI, so a simulation's
         * INI replays without the subcommand */
        if (!gf_opts[k].ini || (!cfg->train && !strncmp(gf_opts[k].help, "train:", 6)))
            continue;
        GfOptValue v;
        gf_config_option(cfg, k, &v);
        char *dst = used < size ? buf + used : NULL;
        size_t room = used < size ? size - used : 0;
        int w = 0;
        switch (v.kind) {
        case GF_OPT_INT: case GF_OPT_FLAG:
            w = snprintf(dst, room, "%s = %" PRId64 "\n", v.name, v.i); break;
        case GF_OPT_UINT: w = snprintf(dst, room, "%s = %" PRIu64 "\n", v.name, v.u); break;
        /* %.17g round-trips every double, so the INI text reproduces the run exactly */
        case GF_OPT_REAL: w = snprintf(dst, room, "%s = %.17g\n", v.name, v.d); break;
        case GF_OPT_STRING: w = snprintf(dst, room, "%s = %s\n", v.name, v.s); break;
        }
        used += (size_t)(w > 0 ? w : 0);
    }
    if (size && used >= size)
        buf[size - 1] = '\0';
    return used;
}

void gf_config_print_help(FILE *out)
{
    fprintf(out,
            "Usage: mpirun -np P gradflow [options] -o FILE.h5\n"
            "       mpirun -np P gradflow train [options] -o FILE.h5\n"
            "\n"
            "Simulates a fully recurrent net (Hochreiter, Bengio, Frasconi, Schmidhuber 2001):\n"
            "forward pass net(t) = W a(t-1) + U x(t) + b, a(t) = f(net(t)); backpropagation\n"
            "through time with delta(t) = dE/dnet(t); gradients dE/dW, dE/dU, dE/db. Ranks share\n"
            "the units in contiguous blocks; everything goes to one parallel HDF5 file (format\n"
            "gradflow/1, see README.md). The gradient-flow tensor G(s,t) = d delta(s)/d delta(t),\n"
            "its exact log10 norms and the paper's bounds go to /flow and /lag.\n"
            "`gradflow train` trains the net on a long-time-lag task (options marked train:)\n"
            "with BPTT or random weight guessing and records the gradient flow as it learns\n"
            "(/train). Success: every test sequence's |a(T) - d(T)| below 0.2 (latch,\n"
            "two-sequence, parity) or 0.04 (adding).\n\n"
            "Options (also INI keys for --config, without '--'):\n");
    GfConfig def;
    gf_config_defaults(&def);
    for (int k = 0; k < NOPTS; ++k) {
        const OptDef *o = &gf_opts[k];
        char lhs[64];
        snprintf(lhs, sizeof lhs, "%s--%s %s", !strcmp(o->name, "output") ? "-o, " : "", o->name,
                 o->metavar);
        fprintf(out, "  %-34s %s", lhs, o->help);
        GfOptValue v;
        gf_config_option(&def, k, &v);
        switch (v.kind) {
        case GF_OPT_INT: fprintf(out, " [%" PRId64 "]", v.i); break;
        case GF_OPT_UINT: fprintf(out, " [%" PRIu64 "]", v.u); break;
        case GF_OPT_REAL: fprintf(out, " [%g]", v.d); break;
        case GF_OPT_STRING: if (v.s[0]) fprintf(out, " [%s]", v.s); break;
        case GF_OPT_FLAG: break;
        }
        fputc('\n', out);
    }
    fprintf(out,
            "  %-34s %s\n  %-34s %s\n\n"
            "Exit status: 0 success, 64 bad option, 65 bad input data, 71 out of memory,\n"
            "74 I/O error, 78 bad config file, 70 internal error.\n",
            "-h, --help", "this text", "--version", "print the version and git revision");
}
