/* config.h — gradflow's options: defaults, command line, INI file, validation,
 * and the resolved configuration as INI text and typed values.
 *
 * The same table drives the command line, the INI keys, --help, the resolved
 * INI text printed at start and the /config attributes of the output file, so
 * an option can never be known to one of them and not the others.
 * All functions are Local: every rank parses the same argv and INI text
 * (rank 0 reads the file, par broadcasts it), so all ranks reach the same
 * result and the same error without communicating.
 */
#ifndef GRADFLOW_CONFIG_H
#define GRADFLOW_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "gradflow/act.h"

#define GF_PATH_MAX 4096
#define GF_SPEC_MAX 1024

typedef enum { GF_INIT_UNIFORM = 0, GF_INIT_GAUSSIAN = 1 } GfInit;

typedef struct {
    int64_t units, inputs, outputs, steps; /* n, m, n_out, T */
    GfActivation activation;
    uint64_t seed;
    GfInit init;
    double w_max, gain;
    double input_weight_scale, bias_scale, a0_scale, input_scale, target_scale;
    char weights[GF_PATH_MAX];      /* FILE.h5:/dataset or "" */
    char inputs_file[GF_PATH_MAX];  /* FILE.h5:/dataset or "" */
    char targets_file[GF_PATH_MAX]; /* FILE.h5:/dataset or "" */
    char target_times[GF_SPEC_MAX]; /* a time list, or "file" (the targets file's rows) */
    char flow_targets[GF_SPEC_MAX]; /* "targets", "none" or a time list */
    int64_t max_lag;                /* -1: all lags (max t_i - 1) */
    char flow_units_k[GF_SPEC_MAX]; /* "outputs", "all" or a unit list */
    char flow_units_v[GF_SPEC_MAX]; /* "all" or a unit list */
    int no_flow_tensor, state_jacobian;
    /* gradflow train */
    int train;                      /* 1 for `gradflow train` */
    char task[32], method[16];
    int64_t lag, batch, epochs, max_epochs, train_size, test_size, max_guesses, trials;
    double noise, lr, momentum, guess_range;
    char sweep_lag[GF_SPEC_MAX];    /* "a:b:step" list of lags, or "" */
    int64_t checkpoint_every;       /* flow targets (train: epochs) between checkpoints (0: only when stopped) */
    double max_walltime;            /* seconds; stop cleanly before (0: no limit) */
    int resume;
    int allow_nonfinite;            /* carry on past inf/NaN activations or error signals */
    char max_memory[32];            /* bytes per rank with K/M/G/T suffix, or "" (physical / ranks) */
    char grid[64];                  /* "PtxPu" or "" (1 x P) */
    int grid_t, grid_u;             /* resolved by gf_config_validate */
    char output[GF_PATH_MAX];
    char config[GF_PATH_MAX];
    int dry_run, quiet, force;
    unsigned char given[64];        /* given[k]: option k was set by the user */
} GfConfig;

typedef enum { GF_ACTION_RUN, GF_ACTION_HELP, GF_ACTION_VERSION } GfAction;

typedef enum {
    GF_OPT_INT,    /* int64 */
    GF_OPT_UINT,   /* uint64 */
    GF_OPT_REAL,   /* double */
    GF_OPT_STRING, /* text, also activation/init names */
    GF_OPT_FLAG    /* 0/1 */
} GfOptKind;

/* One resolved option, for printing and for /config attributes. */
typedef struct {
    const char *name;
    GfOptKind kind;
    int64_t i;      /* GF_OPT_INT, GF_OPT_FLAG */
    uint64_t u;     /* GF_OPT_UINT */
    double d;       /* GF_OPT_REAL */
    const char *s;  /* GF_OPT_STRING (points into the config or a static name) */
} GfOptValue;

void gf_config_defaults(GfConfig *cfg);

/* Reads argv into cfg; sets *action.  Does not read --config: the caller reads
 * the file (rank 0) and passes its text to gf_config_apply_ini. GF_EUSAGE on error. */
int gf_config_parse_args(GfConfig *cfg, int argc, char **argv, GfAction *action);

/* Applies INI text (from file `path`, for messages) for every option the
 * command line did not set.  Keys are the long option names, at top level or
 * in a [gradflow] section.  GF_ECONFIG on an unknown key, a bad value or
 * malformed text. */
int gf_config_apply_ini(GfConfig *cfg, const char *text, const char *path);

/* Checks ranges and the grid against nranks; resolves grid_t, grid_u.
 * Sizes that input files determine are checked again once they are known
 * (gf_config_check_sizes). GF_EUSAGE on error. */
int gf_config_validate(GfConfig *cfg, int nranks);

/* Checks n, m, n_out, T and the target times once files have fixed them. */
int gf_config_check_sizes(GfConfig *cfg);

/* Is option `name` set by the user (command line or INI)? */
int gf_config_given(const GfConfig *cfg, const char *name);

/* Number of options, and option k's resolved value. */
int gf_config_option_count(void);
void gf_config_option(const GfConfig *cfg, int k, GfOptValue *out);

/* Writes the resolved configuration as INI text ("key = value" lines) into buf
 * (always NUL-terminated); returns the length it needed, as snprintf does. */
size_t gf_config_to_ini(const GfConfig *cfg, char *buf, size_t size);

void gf_config_print_help(FILE *out);

#endif
