/* run.c — the gradflow program: prolog (options, files, checks), the
 * simulation (forward, BPTT), epilog (file, summary).  See run.h. */
#include <errno.h>
#include <signal.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "gf_gitrev.h"
#include "gradflow/blas.h"
#include "gradflow/bptt.h"
#include "gradflow/config.h"
#include "gradflow/error.h"
#include "gradflow/flow.h"
#include "gradflow/forward.h"
#include "gradflow/timeset.h"
#include "gradflow/train.h"
#include "gradflow/h5io.h"
#include "gradflow/model.h"
#include "gradflow/par.h"
#include "gradflow/rng.h"
#include "gradflow/run.h"
#include "gradflow/timer.h"

/* Estimates are sums of products of sizes up to 2^31 (n^2 alone passes 2^62):
 * computed in double, and at most INT64_MAX. */
static int64_t saturate(double bytes)
{
    return !(bytes > 0) ? 0 : bytes < 9.2e18 ? (int64_t)bytes : INT64_MAX;
}

int64_t gf_estimate_rank_bytes(int64_t n_, int64_t m_, int64_t n_out_, int64_t T_, int64_t nl_)
{
    const double n = (double)n_, m = (double)m_, n_out = (double)n_out_, T = (double)T_, nl = (double)nl_;
    const double doubles = 2 * nl * n        /* W, dE/dW */
                           + 2 * nl * m      /* U, dE/dU */
                           + 2 * nl          /* b, dE/db */
                           + n               /* a0 */
                           + T * m           /* x */
                           + T * n_out       /* d */
                           + 3 * T * nl      /* net, fprime, delta */
                           + (T + 1) * n     /* a, replicated */
                           + T               /* E */
                           + n + nl;         /* BPTT scratch */
    return saturate(8 * doubles + T); /* + target mask */
}

int64_t gf_estimate_file_bytes(int64_t n_, int64_t m_, int64_t n_out_, int64_t T_)
{
    const double n = (double)n_, m = (double)m_, n_out = (double)n_out_, T = (double)T_;
    const double doubles = 2 * n * n + 2 * n * m + 3 * n /* W, dW, U, dU, b, a0, db */
                           + T * m + T * n_out + T       /* x, d, E */
                           + 4 * T * n;                  /* net, a, fprime, delta */
    const double scales = 8 * (3 * T + 4 * n + 3 * m + n_out); /* each group's own axes */
    return saturate(8 * doubles + T + scales);
}

/* Rank 0 prints the agreed error once. */
static int fail(const GfPar *par, int rc)
{
    /* 75 (EX_TEMPFAIL) is a clean stop with a checkpoint, not an error */
    if (gf_par_rank(par) == 0)
        fprintf(stderr, "gradflow: %s%s\n", rc == GF_TRAIN_STOPPED ? "" : "error: ",
                gf_error_message()[0] ? gf_error_message() : "unknown failure");
    return rc;
}

static char *join_args(int argc, char **argv)
{
    size_t len = 1;
    for (int k = 0; k < argc; ++k)
        len += 3 + 4 * strlen(argv[k]); /* a quote inside quotes becomes 4 bytes */
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    for (int k = 0; k < argc; ++k) {
        const int quote = argv[k][0] == '\0' || strpbrk(argv[k], " \t\"'\\$") != NULL;
        if (k)
            *p++ = ' ';
        if (quote)
            *p++ = '\'';
        for (const char *c = argv[k]; *c; ++c) {
            if (quote && *c == '\'') {
                memcpy(p, "'\\''", 4);
                p += 4;
            } else {
                *p++ = *c;
            }
        }
        if (quote)
            *p++ = '\'';
    }
    *p = '\0';
    return s;
}

/* Rank 0 reads the --config file; every rank applies the broadcast text. */
static int read_config_file(const GfPar *par, GfConfig *cfg)
{
    char *text = NULL;
    int rc = GF_OK;
    if (gf_par_rank(par) == 0) {
        FILE *f = fopen(cfg->config, "rb");
        if (!f) {
            rc = gf_error(GF_ECONFIG, "--config: cannot read '%s': %s", cfg->config, strerror(errno));
        } else {
            fseek(f, 0, SEEK_END);
            long len = ftell(f);
            fseek(f, 0, SEEK_SET);
            if (len < 0 || len > (1L << 24))
                rc = gf_error(GF_ECONFIG, "--config: '%s' is not a regular file of at most 16 MiB",
                              cfg->config);
            else if (!(text = malloc((size_t)len + 1)))
                rc = gf_error(GF_ENOMEM, "--config: out of memory reading '%s'", cfg->config);
            else if (fread(text, 1, (size_t)len, f) != (size_t)len)
                rc = gf_error(GF_ECONFIG, "--config: cannot read '%s'", cfg->config);
            else
                text[len] = '\0';
            fclose(f);
        }
    }
    if ((rc = gf_par_agree(par, rc))) {
        free(text);
        return rc;
    }
    if ((rc = gf_par_bcast_string(par, &text)))
        return rc;
    rc = gf_config_apply_ini(cfg, text, cfg->config);
    free(text);
    return gf_par_agree(par, rc);
}

/* A size given on the command line must agree with the one a file fixes. */
static int take_size(GfConfig *cfg, const char *opt, int64_t *field, int64_t value, const char *file_opt,
                     const char *spec)
{
    if (gf_config_given(cfg, opt) && *field != value)
        return gf_error(GF_EUSAGE, "--%s %" PRId64 " contradicts %s '%s', whose shape gives %" PRId64
                                   "; drop --%s or use a matching file", opt, *field, file_opt, spec,
                        value, opt);
    *field = value;
    return GF_OK;
}

/* Collective: fixes n, T, m, n_out from the input files' shapes. */
static int probe_inputs(const GfPar *par, GfConfig *cfg)
{
    int64_t d[2];
    int rc = GF_OK;
    if (cfg->weights[0]) {
        if ((rc = gf_h5_probe(par, cfg->weights, "--weights", d)))
            return rc;
        if (d[0] != d[1])
            return gf_par_agree(par, gf_error(GF_EDATA, "--weights: '%s' is %" PRId64 " x %" PRId64
                                                        "; W must be square (n x n)", cfg->weights, d[0], d[1]));
        rc = take_size(cfg, "units", &cfg->units, d[0], "--weights", cfg->weights);
    }
    if (!rc && cfg->inputs_file[0]) {
        if ((rc = gf_h5_probe(par, cfg->inputs_file, "--inputs-file", d)))
            return rc;
        rc = take_size(cfg, "steps", &cfg->steps, d[0], "--inputs-file", cfg->inputs_file);
        rc = rc ? rc : take_size(cfg, "inputs", &cfg->inputs, d[1], "--inputs-file", cfg->inputs_file);
    }
    if (!rc && cfg->targets_file[0]) {
        if ((rc = gf_h5_probe(par, cfg->targets_file, "--targets-file", d)))
            return rc;
        rc = take_size(cfg, "steps", &cfg->steps, d[0], "--targets-file", cfg->targets_file);
        rc = rc ? rc : take_size(cfg, "outputs", &cfg->outputs, d[1], "--targets-file", cfg->targets_file);
    }
    return gf_par_agree(par, rc);
}

/* Parses "4G", "512M", "1e9" into bytes; -1 when malformed. */
static double parse_bytes(const char *text)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || errno || !(v > 0))
        return -1;
    const char *units = "KMGTP";
    const char *u = *end ? strchr(units, *end) : NULL;
    if (*end && (!u || (end[1] && strcmp(end + 1, "iB") && strcmp(end + 1, "B"))))
        return -1;
    for (const char *p = units; u && p <= u; ++p)
        v *= 1024.0;
    return v;
}

/* Collective on world: refuses (before allocating) a run whose per-rank
 * estimate exceeds --max-memory, or by default the node's physical memory
 * shared by the ranks on it. */
static int check_memory(const GfPar *par, const GfConfig *cfg, double estimate)
{
    const int node = gf_par_node_size(par);
    double limit;
    if (cfg->max_memory[0]) {
        limit = parse_bytes(cfg->max_memory);
        if (limit < 0)
            return gf_error(GF_EUSAGE, "--max-memory: '%s' is not a size; write bytes with an optional "
                                       "K, M, G, T suffix (powers of 1024), e.g. 4G", cfg->max_memory);
    } else {
        limit = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / node;
    }
    if (estimate > limit)
        return gf_error(GF_EUSAGE, "the run needs about %.3g GiB per rank but %s allows %.3g GiB; use "
                                   "more ranks (or nodes), smaller sizes, or raise --max-memory "
                                   "(gradflow --dry-run prints the estimate)", estimate / 1073741824.0,
                        cfg->max_memory[0] ? "--max-memory" : "the node's memory shared by its ranks",
                        limit / 1073741824.0);
    return GF_OK;
}

/* Rank 0: the output must be new (or --force), its directory writable with room. */
static int check_output(const GfConfig *cfg, int64_t file_bytes)
{
    struct stat st;
    if (stat(cfg->output, &st) == 0 && S_ISDIR(st.st_mode))
        return gf_error(GF_EIO, "-o: '%s' is a directory; give a file name", cfg->output);
    if (stat(cfg->output, &st) == 0 && !cfg->force)
        return gf_error(GF_EIO, "-o: '%s' already exists; pass --force to replace it (the old file "
                                "is replaced only once the new one is complete)", cfg->output);
    char ckpt[GF_PATH_MAX + 8];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", cfg->output);
    if (!cfg->resume && !cfg->force && stat(ckpt, &st) == 0)
        return gf_error(GF_EUSAGE, "-o: '%s' holds the state of a stopped run: --resume continues it; "
                                "--force starts over (the checkpoint is replaced)", ckpt);
    char dir[GF_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", cfg->output);
    const char *d = dirname(dir);
    if (access(d, W_OK | X_OK) != 0)
        return gf_error(GF_EIO, "-o: cannot write into directory '%s': %s", d, strerror(errno));
    struct statvfs vfs;
    if (statvfs(d, &vfs) == 0) {
        const double avail = (double)vfs.f_bavail * (double)vfs.f_frsize;
        if (avail < 1.05 * (double)file_bytes)
            return gf_error(GF_EIO, "-o: directory '%s' has %.3g GB free; the output needs about %.3g GB",
                            d, avail / 1e9, 1.05 * (double)file_bytes / 1e9);
    }
    return GF_OK;
}

static void print_bytes(FILE *out, const char *label, double bytes)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int k = 0;
    while (bytes >= 1024.0 && k < 5)
        bytes /= 1024.0, ++k;
    fprintf(out, "%s%.2f %s", label, bytes, u[k]);
}

/* Collective: loads or generates every model array; checks loaded values. */
static int load_model(const GfPar *par, const GfConfig *cfg, GfModel *mo)
{
    int rc = GF_OK;
    if (cfg->weights[0])
        rc = gf_h5_read_rows(par, cfg->weights, "--weights", mo->lo, mo->n_local, mo->n, mo->W, 0);
    if (!rc && cfg->inputs_file[0])
        rc = gf_h5_read_rows(par, cfg->inputs_file, "--inputs-file", 0, mo->T, mo->m, mo->x, 0);
    if (!rc && cfg->targets_file[0]) {
        rc = gf_h5_read_rows(par, cfg->targets_file, "--targets-file", 0, mo->T, mo->n_out, mo->d, 1);
        int64_t targets = 0;
        for (int64_t t = 0; !rc && t < mo->T; ++t) {
            int64_t nan = 0;
            for (int64_t k = 0; k < mo->n_out; ++k)
                nan += isnan(mo->d[t * mo->n_out + k]) != 0;
            if (nan != 0 && nan != mo->n_out)
                rc = gf_error(GF_EDATA, "--targets-file: row %" PRId64 " (time %" PRId64 ") is NaN in %"
                              PRId64 " of %" PRId64 " columns; a row is either all NaN (no target) "
                              "or all finite", t, t + 1, nan, mo->n_out);
            mo->mask[t] = nan == 0;
            targets += nan == 0;
            if (nan)
                for (int64_t k = 0; k < mo->n_out; ++k)
                    mo->d[t * mo->n_out + k] = 0.0;
        }
        if (!rc && targets == 0)
            rc = gf_error(GF_EDATA, "--targets-file: every row is NaN, so there is no target time");
        if (!rc && strcmp(cfg->target_times, "file") != 0) { /* a list given beside the file */
            unsigned char *given = gf_calloc((size_t)mo->T, 1, "target mask");
            rc = given ? gf_timeset_parse(cfg->target_times, mo->T, "--target-times", given) : GF_ENOMEM;
            if (!rc && memcmp(given, mo->mask, (size_t)mo->T) != 0)
                rc = gf_error(GF_EUSAGE, "--target-times '%.200s' differs from the target times of "
                                         "--targets-file (its rows that are not NaN); drop one of them",
                              cfg->target_times);
            free(given);
        }
        rc = gf_par_agree(par, rc);
    }
    if (!rc)
        gf_model_generate(mo, cfg, cfg->weights[0] != 0, cfg->inputs_file[0] != 0,
                          cfg->targets_file[0] != 0);
    return rc;
}

/* Local.  The flow's targets, lags and units from the options and the target
 * mask (T); fs->n_t == 0 when --flow-targets none. */
static int flow_spec(const GfConfig *cfg, const unsigned char *mask, GfFlowSpec *fs)
{
    memset(fs, 0, sizeof *fs);
    if (!strcmp(cfg->flow_targets, "none"))
        return GF_OK;
    const int64_t T = cfg->steps;
    unsigned char *sel = gf_calloc((size_t)T, 1, "flow target list");
    if (!sel)
        return GF_ENOMEM;
    int rc = GF_OK;
    if (!strcmp(cfg->flow_targets, "targets"))
        memcpy(sel, mask, (size_t)T);
    else
        rc = gf_timeset_parse(cfg->flow_targets, T, "--flow-targets", sel);
    for (int64_t t = 0; !rc && t < T; ++t)
        fs->n_t += sel[t];
    if (!rc && !(fs->targets = gf_calloc((size_t)fs->n_t, sizeof(int64_t), "flow targets")))
        rc = GF_ENOMEM;
    for (int64_t t = 0, k = 0; !rc && t < T; ++t)
        if (sel[t])
            fs->targets[k++] = t + 1;
    free(sel);
    if (!rc) {
        fs->max_lag = cfg->max_lag >= 0 ? cfg->max_lag : fs->targets[fs->n_t - 1] - 1;
        fs->tensor = !cfg->no_flow_tensor;
        fs->jacobian = cfg->state_jacobian;
        rc = gf_flow_parse_units(cfg->flow_units_k, cfg->units, cfg->outputs, "--flow-units-k",
                                 &fs->units_k, &fs->n_k);
    }
    if (!rc)
        rc = gf_flow_parse_units(cfg->flow_units_v, cfg->units, cfg->outputs, "--flow-units-v",
                                 &fs->units_v, &fs->n_v);
    return rc;
}

static void flow_spec_free(GfFlowSpec *fs)
{
    free(fs->targets), free(fs->units_k), free(fs->units_v);
    memset(fs, 0, sizeof *fs);
}

static int64_t flow_file_bytes(const GfFlowSpec *fs)
{
    const double cells = (double)fs->n_t * (double)(fs->max_lag + 1);
    return saturate(8 * ((fs->tensor ? (fs->jacobian ? 2 : 1) * cells * (double)fs->n_v * (double)fs->n_k : 0) +
                         (fs->jacobian ? 8 : 6) * cells + 2 * (double)(fs->n_t + fs->max_lag + 1) +
                         (double)(fs->n_v + fs->n_k)));
}

/* Rank 0: one line per target: the fitted decay of log10 ||G||_F per step,
 * the bounds' rates, and the lag where the flow fell below 1e-16 of its start. */
static void report_flow(const GfFlowSpec *fs, const GfFlowResult *res)
{
    const int64_t nl = fs->max_lag + 1, shown = fs->n_t < 16 ? fs->n_t : 16;
    printf("  flow: ||W||_A = %.6g, columns %.6g, w_max = %.6g, lambda = %.6g, f'max %.6g "
           "(measured %.6g)\n", res->norm_A, res->norm_A_columns, res->w_max, res->lambda,
           res->fprime_max_theory, res->fprime_max_measured);
    const double th = log10(res->fprime_max_theory * res->norm_A);
    const double me = log10(res->fprime_max_measured * res->norm_A);
    for (int64_t i = 0; i < shown; ++i) {
        const double *y = res->log10_fro + i * nl;
        const int64_t valid = fs->targets[i] - 1 < fs->max_lag ? fs->targets[i] : nl;
        int64_t below = -1;
        for (int64_t L = 1; L < valid && below < 0; ++L)
            if (y[L] - y[0] < -16.0)
                below = L;
        printf("  flow t = %" PRId64 ": log10||G||_F slope %.4f per step (fit over L = 0..%" PRId64
               "); bound %.4f per step (measured f'max: %.4f); ", fs->targets[i],
               gf_flow_fit_slope(y, valid), valid - 1, th, me);
        if (below >= 0)
            printf("below 1e-16 of its start at L = %" PRId64 "\n", below);
        else
            printf("never below 1e-16 of its start\n");
    }
    if (shown < fs->n_t)
        printf("  flow: %" PRId64 " more targets in /flow/log10_norm_fro\n", fs->n_t - shown);
}

static void report_timer(const GfPar *par, const char *name, double seconds)
{
    double s[3];
    gf_par_min_avg_max(par, seconds, s);
    if (gf_par_rank(par) == 0)
        printf("  %-10s %9.3f s min %9.3f s avg %9.3f s max\n", name, s[0], s[1], s[2]);
}

/* ---- stopping and resuming training ---- */

static volatile sig_atomic_t gf_stop_signal; /* set by SIGTERM / SIGUSR1 */

static void on_stop_signal(int sig) { gf_stop_signal = sig; }

/* SIGTERM and SIGUSR1 (Slurm's --signal) ask for a clean stop at the next
 * boundary instead of ending the process. */
typedef struct {
    struct sigaction term, usr1;
} StopHandlers;

static void stop_handlers_install(StopHandlers *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    gf_stop_signal = 0;
    sigaction(SIGTERM, &sa, &old->term);
    sigaction(SIGUSR1, &sa, &old->usr1);
}

static void stop_handlers_restore(const StopHandlers *old)
{
    sigaction(SIGTERM, &old->term, NULL);
    sigaction(SIGUSR1, &old->usr1, NULL);
}

/* Why the run stopped, as agreed by agree_stop. */
static const char *gf_stop_reason = "";

/* Collective on world: stop when any rank got a stop signal or any rank's
 * wall time is up.  extra (may be NULL, count <= 6 doubles) rides along in
 * the same MPI_Allreduce as a sum. */
static int agree_stop(const GfPar *par, const GfConfig *cfg, double t_start, double *extra, int count)
{
    double v[8] = {gf_stop_signal != 0,
                   cfg->max_walltime > 0 && gf_time_now() - t_start > cfg->max_walltime};
    for (int k = 0; k < count && k < 6; ++k)
        v[2 + k] = extra[k];
    gf_par_world_sum_vec(par, v, 2 + count);
    for (int k = 0; k < count && k < 6; ++k)
        extra[k] = v[2 + k];
    gf_stop_reason = v[0] > 0 ? "a stop signal" : v[1] > 0 ? "--max-walltime" : "";
    return v[0] > 0 || v[1] > 0;
}

/* Fault injection for the reliability tests: GRADFLOW_FAULT=RANK:STEP[:SIG]
 * makes world rank RANK raise SIG (KILL, the default, TERM or USR1) on itself
 * at step STEP: the STEP-th write round of a simulation's flow, training
 * epoch STEP, or round STEP of a sweep. */
static struct {
    int rank, sig;
    int64_t step;
} gf_fault = {-1, 0, 0};

static int parse_fault(void)
{
    const char *v = getenv("GRADFLOW_FAULT");
    if (!v || !*v)
        return GF_OK;
    int rank = -1, used = 0;
    long long step = 0;
    char sig[8] = "KILL";
    const int got = sscanf(v, "%d:%lld%n:%7[A-Z0-9]%n", &rank, &step, &used, sig, &used);
    const int sn = !strcmp(sig, "KILL") ? SIGKILL : !strcmp(sig, "TERM") ? SIGTERM
                 : !strcmp(sig, "USR1") ? SIGUSR1 : 0;
    if (got < 2 || v[used] || rank < 0 || step < 1 || !sn)
        return gf_error(GF_EUSAGE, "GRADFLOW_FAULT='%s': expected RANK:STEP[:KILL|TERM|USR1], a rank "
                                   ">= 0 and a step >= 1 (a testing aid: that rank signals itself "
                                   "at that step)", v);
    gf_fault.rank = rank, gf_fault.step = step, gf_fault.sig = sn;
    return GF_OK;
}

static void fault_point(const GfPar *par, int64_t step)
{
    if (gf_fault.rank == gf_par_rank(par) && gf_fault.step == step)
        raise(gf_fault.sig);
}

typedef struct {
    const GfPar *par;
    const GfConfig *cfg;
    const char *ini, *cmdline;
    char ckpt[GF_PATH_MAX + 8];
    double t_start;
    const GfTrainSpec *spec;
    int64_t stopped_at;
} Checkpointer;

/* Collective on world: writes OUTPUT.ckpt (via .partial and a rename, so an
 * older checkpoint survives a failed write). */
static int write_checkpoint(Checkpointer *c, const GfModel *mo, const GfTrainLog *log)
{
    GfH5Out *h = NULL;
    int rc = gf_h5_create(c->par, c->ckpt, c->cmdline, mo, &h);
    rc = rc ? rc : gf_h5_write_config(h, c->cfg, c->ini);
    rc = rc ? rc : gf_h5_write_params(h, mo);
    rc = rc ? rc : gf_h5_write_train(h, mo, c->spec, log);
    rc = rc ? rc : gf_h5_write_velocity(h, mo, log);
    return gf_h5_close(h, rc);
}

/* The hook after every epoch: stop when any rank got a signal or the wall
 * time is up (one collective decides), checkpoint when stopping or due. */
static int after_epoch(void *ctx, const GfModel *mo, const GfTrainLog *log)
{
    Checkpointer *c = ctx;
    fault_point(c->par, log->epochs);
    const int stop = agree_stop(c->par, c->cfg, c->t_start, NULL, 0);
    if (stop || (c->cfg->checkpoint_every > 0 && log->epochs % c->cfg->checkpoint_every == 0)) {
        const int rc = write_checkpoint(c, mo, log);
        if (rc)
            return rc;
    }
    if (stop)
        c->stopped_at = log->epochs;
    return stop;
}

/* The first option whose value differs between two resolved INI texts,
 * ignoring those that may change between a run and its resumption. */
static int ini_differs(const char *old, const char *now, char *what, size_t size)
{
    static const char *const free_keys[] = {"resume", "checkpoint-every", "max-walltime", "force", "quiet",
                                            "dry-run", "grid"};
    for (const char *line = now; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *eq = memchr(line, '=', len);
        if (eq) {
            size_t klen = (size_t)(eq - line);
            while (klen && line[klen - 1] == ' ')
                --klen;
            int skip = 0;
            for (size_t k = 0; k < sizeof free_keys / sizeof free_keys[0]; ++k)
                skip |= strlen(free_keys[k]) == klen && !strncmp(free_keys[k], line, klen);
            /* the same line must be in the checkpoint's text */
            int found = 0;
            for (const char *p = old; !skip && !found && *p;) {
                const char *e = strchr(p, '\n');
                const size_t l = e ? (size_t)(e - p) : strlen(p);
                found = l == len && !strncmp(p, line, len);
                p = e ? e + 1 : p + l;
            }
            if (!skip && !found) {
                snprintf(what, size, "%.*s", (int)len, line);
                return 1;
            }
        }
        line = end ? end + 1 : line + len;
    }
    return 0;
}

/* ---- stopping and resuming a simulation's flow ---- */

typedef struct {
    const GfPar *par;
    const GfConfig *cfg;
    const char *ini, *cmdline;
    const GfModel *mo;
    const GfFlowSpec *fs;
    GfH5Out *h;               /* the output in progress */
    char ckpt[GF_PATH_MAX + 8];
    double t_start;
    int64_t skipped;          /* targets restored from a checkpoint (finished before) */
    int64_t counted;          /* finished targets of this rank's group counted so far (from skipped) */
    int64_t since;            /* finished, over all groups, since the last checkpoint */
    int64_t stopped_round;    /* -1 unless stopped */
    int64_t finished_at_stop; /* targets finished when it stopped */
} FlowCheckpointer;

/* The arrays of res a flow checkpoint keeps (GF_FLOW_CHECKPOINT_ARRAYS order). */
static int flow_norm_arrays(const GfFlowSpec *fs, const GfFlowResult *res, double **out)
{
    out[0] = res->log10_fro, out[1] = res->log10_max;
    out[2] = res->contribution, out[3] = res->log10_contribution;
    out[4] = res->J_log10_fro, out[5] = res->J_log10_max;
    return fs->jacobian ? 6 : 4;
}

/* Collective on world: flushes the output (what the checkpoint claims is on
 * disk first), then writes OUTPUT.ckpt via .partial and a rename, so that the
 * previous checkpoint survives a failure here. */
static int write_flow_checkpoint(FlowCheckpointer *c, int64_t round, const unsigned char *done,
                                 const GfFlowResult *res)
{
    const GfFlowSpec *fs = c->fs;
    const int64_t nt = fs->n_t, len = nt * (fs->max_lag + 1);
    int rc = gf_h5_flush(c->h);
    if (rc)
        return rc;
    double *arrays[GF_FLOW_CHECKPOINT_ARRAYS];
    const int count = flow_norm_arrays(fs, res, arrays);
    double *buf = gf_calloc((size_t)(count * len + nt), sizeof(double), "checkpoint copy of the flow norms");
    if ((rc = gf_par_agree(c->par, buf ? GF_OK : GF_ENOMEM))) {
        free(buf);
        return rc;
    }
    /* a finished target's rows are on one rank (unit rank 0 of its group, or
     * rank 0 for those restored from a checkpoint), zeros elsewhere */
    double *mask = buf + count * len;
    const double *copies[GF_FLOW_CHECKPOINT_ARRAYS];
    for (int k = 0; k < count; ++k) {
        memcpy(buf + k * len, arrays[k], (size_t)len * sizeof(double));
        gf_par_world_sum_vec(c->par, buf + k * len, len);
        copies[k] = buf + k * len;
    }
    for (int64_t i = 0; i < nt; ++i)
        mask[i] = done[i] && gf_par_unit_rank(c->par) == 0 ? 1.0 : 0.0;
    gf_par_world_sum_vec(c->par, mask, nt);
    for (int64_t i = 0; i < nt; ++i)
        mask[i] = mask[i] > 0 ? 1.0 : 0.0;
    GfH5Out *hc = NULL;
    rc = gf_h5_create(c->par, c->ckpt, c->cmdline, c->mo, &hc);
    rc = rc ? rc : gf_h5_write_config(hc, c->cfg, c->ini);
    rc = rc ? rc : gf_h5_write_flow_checkpoint(hc, fs, round, mask, copies, count);
    rc = gf_h5_close(hc, rc);
    free(buf);
    return rc;
}

/* The hook at every write round of the flow: fault injection, the agreed
 * stop decision, and a checkpoint when stopping or when due. */
static int flow_round(void *ctx, int64_t round, const unsigned char *done, int64_t finished,
                      const GfFlowResult *res)
{
    FlowCheckpointer *c = ctx;
    fault_point(c->par, round);
    /* one collective: the stop votes and the targets finished since the last
     * round, counted once per group (by its unit rank 0) */
    double newly = gf_par_unit_rank(c->par) == 0 ? (double)(finished - c->counted) : 0.0;
    c->counted = finished;
    const int stop = agree_stop(c->par, c->cfg, c->t_start, &newly, 1);
    c->since += (int64_t)newly;
    if (stop || (c->cfg->checkpoint_every > 0 && c->since >= c->cfg->checkpoint_every)) {
        const int rc = write_flow_checkpoint(c, round, done, res);
        if (rc)
            return rc;
        c->since = 0;
    }
    if (stop) {
        c->stopped_round = round;
        /* every group's count includes the targets restored from a checkpoint */
        double f = gf_par_unit_rank(c->par) == 0 ? (double)(finished - c->skipped) : 0.0;
        gf_par_world_sum_vec(c->par, &f, 1);
        c->finished_at_stop = c->skipped + (int64_t)f;
        return GF_STOPPED;
    }
    return GF_OK;
}

/* A trial's seed: a function of --seed and the trial index alone. */
static uint64_t trial_seed(uint64_t seed, int64_t trial)
{
    return trial == 0 ? seed : (uint64_t)(gf_rng_uniform(seed, 200u, (uint64_t)trial) * 0x1p53);
}

/* Collective on world: `gradflow train`, one run or a sweep over lags. */
static int run_train(GfPar *par, GfConfig *cfg, const char *ini, int argc, char **argv, double t_start)
{
    const int root = gf_par_rank(par) == 0;
    GfTrainSpec spec;
    int rc = gf_train_spec_from_config(cfg, &spec);
    rc = rc ? rc : gf_par_set_grid(par, cfg->grid_t, cfg->grid_u, cfg->units);
    if ((rc = gf_par_agree(par, rc)))
        return fail(par, rc);
    char *cmdline = join_args(argc, argv);
    GfH5Out *h = NULL;
    GfModel mo;
    memset(&mo, 0, sizeof mo);
    StopHandlers old_handlers;
    stop_handlers_install(&old_handlers);
    if (!cfg->sweep_lag[0]) { /* one run, the batch split over the time groups */
        GfTrainLog log;
        memset(&log, 0, sizeof log);
        Checkpointer ck = {.par = par, .cfg = cfg, .ini = ini, .cmdline = cmdline ? cmdline : "",
                           .t_start = t_start, .spec = &spec, .stopped_at = -1};
        snprintf(ck.ckpt, sizeof ck.ckpt, "%s.ckpt", cfg->output);
        GfTrainHook hook = {&ck, after_epoch};
        rc = gf_model_alloc(&mo, cfg->units, cfg->inputs, 1, cfg->steps, gf_par_units(par), cfg->activation);
        rc = rc ? rc : gf_train_log_alloc(&log, spec.epochs > 0 ? spec.epochs : spec.max_epochs, cfg->steps);
        rc = gf_par_agree(par, rc);
        rc = rc ? rc : load_model(par, cfg, &mo); /* the initial weights, also on resume */
        rc = rc ? rc : gf_h5_create(par, cfg->output, cmdline ? cmdline : "", &mo, &h);
        rc = rc ? rc : gf_h5_write_config(h, cfg, ini);
        rc = rc ? rc : gf_h5_write_params(h, &mo);
        if (!rc && cfg->resume) {
            char *old = NULL, what[512];
            rc = gf_h5_read_checkpoint(par, ck.ckpt, &old, &mo, &log);
            if (!rc && ini_differs(old, ini, what, sizeof what))
                rc = gf_error(GF_EUSAGE, "--resume: the checkpoint '%s' was written for other options: "
                                         "'%s' is not what it recorded; resume with the options of the "
                                         "stopped run", ck.ckpt, what);
            free(old);
            rc = gf_par_agree(par, rc);
        }
        const double t0 = gf_time_now();
        rc = rc ? rc : gf_par_agree(par, gf_train_run(&spec, &mo, par, &log, &hook));
        const double t_train = gf_time_now() - t0;
        if (rc == GF_TRAIN_STOPPED)
            gf_error(GF_TRAIN_STOPPED, "stopped after epoch %" PRId64 " (%s); the state is in '%s': "
                     "run the same command with --resume to continue", ck.stopped_at,
                     gf_stop_reason, ck.ckpt);
        rc = rc ? rc : gf_h5_write_train(h, &mo, &spec, &log);
        rc = gf_h5_close(h, rc);
        if (rc == GF_TRAIN_STOPPED && root) { /* the state is all in the checkpoint */
            char partial[GF_PATH_MAX + 16];
            snprintf(partial, sizeof partial, "%s.partial", cfg->output);
            unlink(partial);
        }
        if (!rc && root)
            unlink(ck.ckpt); /* the finished file supersedes it */
        if (!rc && root) {
            printf("gradflow train: wrote %s in %.3f s on %d ranks (grid %dx%d)\n", cfg->output,
                   gf_time_now() - t_start, gf_par_size(par), cfg->grid_t, cfg->grid_u);
            printf("  task %s, lag %" PRId64 " (T = %" PRId64 "), n = %" PRId64 ", method %s\n",
                   cfg->task, cfg->lag, cfg->steps, cfg->units, cfg->method);
            if (spec.method == GF_METHOD_GUESS)
                printf("  %s after %" PRId64 " guesses; test error %.4g (threshold %.3g)\n",
                       log.success ? "solved" : "not solved", log.guesses, log.final_test_error,
                       spec.task.threshold);
            else
                printf("  %s%s after %" PRId64 " epochs (%.3f s); loss %.4g, test error %.4g "
                       "(threshold %.3g)\n", log.success ? "solved" : "not solved",
                       log.success && log.success_at != log.epochs ? " (first solved earlier)" : "",
                       log.epochs, t_train, log.epochs ? log.loss[log.epochs - 1] : 0.0,
                       log.final_test_error, spec.task.threshold);
        }
        gf_train_log_free(&log);
        gf_model_free(&mo);
    } else { /* a sweep: each (lag, trial) runs whole on one time group */
        int64_t *lags = NULL, nlag = 0;
        rc = gf_train_parse_lags(cfg->sweep_lag, &lags, &nlag);
        const int64_t K = cfg->trials, cells = nlag * K;
        /* res: this rank's results (success, success_at, error, done); each cell is
         * filled by one rank (restored cells by rank 0), so a world sum completes it */
        double *res = rc ? NULL : gf_calloc((size_t)(8 * cells), sizeof(double), "sweep results");
        rc = rc ? rc : res ? GF_OK : GF_ENOMEM;
        if ((rc = gf_par_agree(par, rc))) {
            free(lags);
            free(cmdline);
            return fail(par, rc);
        }
        double *succ = res, *at = res + cells, *err = res + 2 * cells, *done = res + 3 * cells;
        double *all = res + 4 * cells; /* (4 cells) a completed copy, for checkpoints */
        const double *skip = all + 3 * cells;
        char ckpt[GF_PATH_MAX + 8];
        snprintf(ckpt, sizeof ckpt, "%s.ckpt", cfg->output);
        if (cfg->resume) {
            char *old = NULL, what[512];
            rc = gf_h5_read_sweep_checkpoint(par, ckpt, &old, nlag, K, all);
            if (!rc && ini_differs(old, ini, what, sizeof what))
                rc = gf_error(GF_EUSAGE, "--resume: the checkpoint '%s' was written for other options: "
                                         "'%s' is not what it recorded; resume with the options of the "
                                         "stopped run", ckpt, what);
            free(old);
            if ((rc = gf_par_agree(par, rc))) {
                free(res), free(lags), free(cmdline);
                return fail(par, rc);
            }
            if (root)
                memcpy(res, all, (size_t)(4 * cells) * sizeof(double));
        }
        /* the cells still to run, dealt round-robin to the groups; a round is
         * one cell a group, as many rounds as the busiest group has cells */
        const int groups = gf_par_time_size(par), me = gf_par_time_rank(par);
        int64_t pending = 0, *mine = gf_calloc((size_t)cells, sizeof(int64_t), "sweep cells"), nmine = 0;
        for (int64_t c = 0; mine && c < cells; ++c)
            if (!(skip[c] > 0)) {
                if (pending % groups == me)
                    mine[nmine++] = c;
                ++pending;
            }
        const int64_t rounds = (pending + groups - 1) / groups;
        int64_t stopped_round = -1;
        if (!mine)
            rc = GF_ENOMEM;
        for (int64_t round = 0; round < rounds && !rc; ++round) {
            const int64_t c = round < nmine ? mine[round] : -1; /* this group's cell of the round */
            if (c >= 0) {
                GfConfig tc = *cfg;
                GfTrainSpec ts = spec;
                tc.seed = ts.seed = trial_seed(cfg->seed, c % K);
                gf_task_init(&ts.task, spec.task.kind, lags[c / K], cfg->noise);
                tc.steps = ts.task.T;
                ts.split_batch = 0;
                GfTrainLog log;
                memset(&log, 0, sizeof log);
                rc = gf_model_alloc(&mo, tc.units, tc.inputs, 1, tc.steps, gf_par_units(par), tc.activation);
                rc = rc ? rc : gf_train_log_alloc(&log, ts.epochs > 0 ? ts.epochs : ts.max_epochs, tc.steps);
                rc = (int)gf_par_unit_max(par, (double)rc); /* the group trains together or not at all */
                if (!rc) {
                    gf_model_generate(&mo, &tc, 0, 1, 1);
                    rc = gf_train_run(&ts, &mo, par, &log, NULL);
                    if (!rc && gf_par_unit_rank(par) == 0) {
                        succ[c] = (double)log.success;
                        at[c] = (double)log.success_at;
                        err[c] = log.final_test_error;
                        done[c] = 1.0;
                    }
                }
                gf_train_log_free(&log);
                gf_model_free(&mo);
            }
            /* a fixed point every round: errors, then the stop decision */
            if ((rc = gf_par_agree(par, rc)))
                break;
            fault_point(par, round + 1);
            const int stop = agree_stop(par, cfg, t_start, NULL, 0);
            if ((stop && round + 1 < rounds) ||
                (cfg->checkpoint_every > 0 && (round + 1) % cfg->checkpoint_every == 0 && round + 1 < rounds)) {
                memcpy(all, res, (size_t)(4 * cells) * sizeof(double));
                gf_par_world_sum_vec(par, all, 4 * cells);
                GfH5Out *hc = NULL;
                rc = gf_h5_create(par, ckpt, cmdline ? cmdline : "", &mo, &hc);
                rc = rc ? rc : gf_h5_write_config(hc, cfg, ini);
                rc = rc ? rc : gf_h5_write_sweep(hc, &spec, lags, nlag, K, all, all + cells, all + 2 * cells);
                rc = rc ? rc : gf_h5_write_sweep_done(hc, all + 3 * cells);
                rc = gf_h5_close(hc, rc);
            }
            if (!rc && stop && round + 1 < rounds) {
                stopped_round = round + 1;
                rc = gf_error(GF_TRAIN_STOPPED, "stopped after %" PRId64 " of %" PRId64 " rounds of the "
                              "sweep (%s); the state is in '%s': run the same command with --resume "
                              "to continue", stopped_round, rounds,
                              gf_stop_reason, ckpt);
            }
        }
        free(mine);
        rc = gf_par_agree(par, rc);
        if (!rc)
            gf_par_world_sum_vec(par, res, 4 * cells); /* each cell from one rank, zeros elsewhere */
        rc = rc ? rc : gf_h5_create(par, cfg->output, cmdline ? cmdline : "", &mo, &h);
        rc = rc ? rc : gf_h5_write_config(h, cfg, ini);
        rc = rc ? rc : gf_h5_write_sweep(h, &spec, lags, nlag, K, succ, at, err);
        rc = gf_h5_close(h, rc);
        if (!rc && root)
            unlink(ckpt);
        if (!rc && root) {
            printf("gradflow train: wrote %s in %.3f s on %d ranks (grid %dx%d)\n", cfg->output,
                   gf_time_now() - t_start, gf_par_size(par), cfg->grid_t, cfg->grid_u);
            printf("  task %s, method %s, %" PRId64 " trials a lag, n = %" PRId64 "\n", cfg->task,
                   cfg->method, K, cfg->units);
            printf("  %8s %12s %18s\n", "lag", "success", spec.method == GF_METHOD_GUESS ? "mean guesses" : "mean epochs");
            for (int64_t l = 0; l < nlag; ++l) {
                double s = 0, e = 0;
                for (int64_t k = 0; k < K; ++k)
                    if (succ[l * K + k] > 0)
                        s += 1, e += at[l * K + k];
                printf("  %8" PRId64 " %11.0f%% %18.1f\n", lags[l], 100.0 * s / (double)K, s ? e / s : NAN);
            }
        }
        free(res);
        free(lags);
    }
    stop_handlers_restore(&old_handlers);
    free(cmdline);
    return rc ? fail(par, rc) : 0;
}

int gf_main(MPI_Comm world, int argc, char **argv)
{
    const double t_start = gf_time_now();
    GfPar *par = NULL;
    int rc = gf_par_create(world, &par);
    if (rc)
        return rc; /* only fails for lack of a few bytes; same on all ranks is not guaranteed */
    const int root = gf_par_rank(par) == 0, nranks = gf_par_size(par);
    GfConfig cfg;
    GfAction action;
    gf_config_defaults(&cfg);
    gf_error_clear();

    /* ---- prolog: options, files, checks; every error agreed before anyone leaves ---- */
    rc = gf_par_agree(par, gf_config_parse_args(&cfg, argc, argv, &action));
    if (!rc && action != GF_ACTION_RUN) {
        if (root && action == GF_ACTION_HELP)
            gf_config_print_help(stdout);
        if (root && action == GF_ACTION_VERSION) {
            char blas[512];
            gf_blas_describe(blas, sizeof blas);
            printf("gradflow %s (git %s)\nBLAS: %s\n", GF_VERSION, GF_GIT_REVISION, blas);
        }
        gf_par_destroy(par);
        return 0;
    }
    if (!rc && cfg.config[0])
        rc = read_config_file(par, &cfg);
    if (!rc)
        rc = gf_par_agree(par, parse_fault());
    if (!rc)
        rc = gf_par_agree(par, gf_h5_check_tensor_io());
    if (!rc) {
        const char *slurm = getenv("SLURM_NTASKS");
        if (slurm && atoi(slurm) != nranks)
            rc = gf_error(GF_EUSAGE, "SLURM_NTASKS=%s but MPI started %d ranks: the ranks do not "
                                     "belong to one job (e.g. srun without a PMI plugin, or mpirun "
                                     "-np inside srun); launch with `srun gradflow ...` so that each "
                                     "task is one rank", slurm, nranks);
        rc = gf_par_agree(par, rc);
    }
    if (!rc)
        rc = gf_par_agree(par, gf_train_configure(&cfg));
    if (!rc)
        rc = probe_inputs(par, &cfg);
    if (!rc)
        rc = gf_par_agree(par, gf_config_validate(&cfg, nranks));
    const int64_t n = cfg.units, m = cfg.inputs, n_out = cfg.outputs, T = cfg.steps;
    /* the model's arrays alone first: sizes that cannot fit are refused before
     * the flow's O(n + T) lists below are built */
    if (!rc && !cfg.train)
        rc = gf_par_agree(par, check_memory(par, &cfg, 30.0 * 1024 * 1024 +
                                                (double)gf_estimate_rank_bytes(n, m, n_out, T,
                                                                               gf_dist_block(n, cfg.grid_u, 0).count)));
    /* the flow as far as the options fix it (with a targets file: every step a target) */
    GfFlowSpec fs_est;
    memset(&fs_est, 0, sizeof fs_est);
    if (!rc && !cfg.train) {
        unsigned char *mask = gf_calloc((size_t)T, 1, "target mask");
        rc = mask ? GF_OK : GF_ENOMEM;
        if (!rc && cfg.targets_file[0])
            memset(mask, 1, (size_t)T);
        else if (!rc)
            gf_timeset_parse(cfg.target_times, T, "--target-times", mask);
        rc = rc ? rc : flow_spec(&cfg, mask, &fs_est);
        free(mask);
        rc = gf_par_agree(par, rc);
    }
    /* (sizes are only meaningful once validated) */
    const int64_t file_bytes = rc ? 0 : saturate((double)gf_estimate_file_bytes(n, m, n_out, T) +
                                                 (double)(fs_est.n_t ? flow_file_bytes(&fs_est) : 0));
    if (!rc)
        rc = gf_par_agree(par, root ? check_output(&cfg, file_bytes) : GF_OK);
    if (!rc && !cfg.train) {
        const GfBlock big = gf_dist_block(n, cfg.grid_u, 0);
        int64_t cv = 1;
        for (int r = 0; r < cfg.grid_u && fs_est.n_t; ++r) {
            const GfBlock b = gf_dist_block(n, cfg.grid_u, r);
            int64_t c = 0;
            for (int64_t a = 0; a < fs_est.n_v; ++a)
                c += fs_est.units_v[a] >= b.lo && fs_est.units_v[a] < b.lo + b.count;
            cv = c > cv ? c : cv;
        }
        const double est = 30.0 * 1024 * 1024 + (double)gf_estimate_rank_bytes(n, m, n_out, T, big.count) +
                           (fs_est.n_t ? (double)gf_flow_estimate_rank_bytes(&fs_est, n, big.count, cfg.grid_u, cv)
                                       : 0.0);
        rc = gf_par_agree(par, check_memory(par, &cfg, est));
    }
    if (rc) {
        flow_spec_free(&fs_est);
        fail(par, rc);
        gf_par_destroy(par);
        return rc;
    }
    char ini[16384];
    gf_config_to_ini(&cfg, ini, sizeof ini);
    char blas[512] = "", coretype[32];
    if (root)
        gf_blas_describe(blas, sizeof blas);
    if (root && gf_blas_kernels_behind(coretype, sizeof coretype))
        fprintf(stderr, "gradflow: warning: OpenBLAS runs its '%s' kernels, without the AVX2/FMA "
                "instructions this CPU has, so every product is several times slower than it could "
                "be; set OPENBLAS_CORETYPE=%s in the environment of every rank (see README, "
                "Performance)\n", gf_blas_kernels(), coretype);
    if (root && !cfg.quiet)
        printf("# gradflow %s (git %s), %d ranks, grid %dx%d\n# BLAS: %s\n"
               "# resolved configuration:\n%s",
               GF_VERSION, GF_GIT_REVISION, nranks, cfg.grid_t, cfg.grid_u, blas, ini);
    if (cfg.dry_run) {
        GfFlowSpec fs = fs_est; /* with a targets file: every step assumed a target */
        if (root) {
            const GfBlock big = gf_dist_block(n, cfg.grid_u, 0), small = gf_dist_block(n, cfg.grid_u, cfg.grid_u - 1);
            int64_t cv = 1;
            for (int r = 0; r < cfg.grid_u && fs.n_t; ++r) { /* V rows of the fullest block */
                const GfBlock b = gf_dist_block(n, cfg.grid_u, r);
                int64_t c = 0;
                for (int64_t a = 0; a < fs.n_v; ++a)
                    c += fs.units_v[a] >= b.lo && fs.units_v[a] < b.lo + b.count;
                cv = c > cv ? c : cv;
            }
            const int64_t flow_big = fs.n_t ? gf_flow_estimate_rank_bytes(&fs, n, big.count, cfg.grid_u, cv) : 0;
            const int64_t flow_small = fs.n_t ? gf_flow_estimate_rank_bytes(&fs, n, small.count, cfg.grid_u, cv) : 0;
            printf("dry run: n = %" PRId64 ", m = %" PRId64 ", n_out = %" PRId64 ", T = %" PRId64
                   ", %d ranks (grid %dx%d)\n", n, m, n_out, T, nranks, cfg.grid_t, cfg.grid_u);
            /* measured here: MPI, HDF5 and BLAS take about 30 MiB of a tiny run's RSS */
            const double runtime = 30.0 * 1024 * 1024;
            print_bytes(stdout, "  memory per rank: ",
                        runtime + (double)gf_estimate_rank_bytes(n, m, n_out, T, big.count) + (double)flow_big);
            printf(" (largest block, %" PRId64 " units)", big.count);
            print_bytes(stdout, ", ", runtime + (double)gf_estimate_rank_bytes(n, m, n_out, T, small.count) + (double)flow_small);
            printf(" (smallest block, %" PRId64 " units): gradflow's arrays and about 30 MiB for "
                   "MPI, HDF5 and BLAS; aggregator ranks of collective writes add the MPI-IO "
                   "buffer (tens of MiB)\n", small.count);
            print_bytes(stdout, "  output file: ", (double)file_bytes);
            printf(" (%s; directory writable, space available)\n", cfg.output);
            if (fs.n_t)
                printf("  flow: %" PRId64 " targets%s, lags 0..%" PRId64 ", |V| = %" PRId64 ", |K| = %"
                       PRId64 "%s\n", fs.n_t, cfg.targets_file[0] ? " at most" : "", fs.max_lag,
                       fs.n_v, fs.n_k, fs.tensor ? "" : " (no tensor)");
            printf("  nothing was written.\n");
        }
        flow_spec_free(&fs);
        gf_par_destroy(par);
        return 0;
    }

    flow_spec_free(&fs_est);
    if (cfg.train) {
        rc = run_train(par, &cfg, ini, argc, argv, t_start);
        gf_par_destroy(par);
        return rc;
    }

    /* ---- the simulation ---- */
    GfModel mo;
    GfForward fw;
    GfBackward bw;
    memset(&mo, 0, sizeof mo);
    memset(&fw, 0, sizeof fw);
    memset(&bw, 0, sizeof bw);
    rc = gf_par_set_grid(par, cfg.grid_t, cfg.grid_u, n);
    rc = rc ? rc : gf_model_alloc(&mo, n, m, n_out, T, gf_par_units(par), cfg.activation);
    rc = rc ? rc : gf_forward_alloc(&mo, &fw);
    rc = rc ? rc : gf_bptt_alloc(&mo, &bw);
    rc = gf_par_agree(par, rc);
    if (!rc)
        rc = load_model(par, &cfg, &mo);
    double t_fw = 0, t_bw = 0, t_io = 0, t_flow = 0;
    GfFlowSpec fs;
    GfFlowResult fres;
    memset(&fs, 0, sizeof fs);
    memset(&fres, 0, sizeof fres);
    if (!rc) {
        rc = flow_spec(&cfg, mo.mask, &fs);
        rc = rc ? rc : fs.n_t ? gf_flow_result_alloc(&fs, &fres) : GF_OK;
        rc = gf_par_agree(par, rc);
    }
    /* --resume: the checkpoint (its options must be this run's) and the norms
     * of the targets it finished; rank 0 holds their rows for the final sum */
    unsigned char *skip = NULL;
    FlowCheckpointer ck = {.par = par, .cfg = &cfg, .ini = ini, .mo = &mo, .fs = &fs, .t_start = t_start,
                           .stopped_round = -1};
    snprintf(ck.ckpt, sizeof ck.ckpt, "%s.ckpt", cfg.output);
    if (!rc && cfg.resume) {
        const int64_t len = fs.n_t * (fs.max_lag + 1);
        double *norms[GF_FLOW_CHECKPOINT_ARRAYS], *saved[GF_FLOW_CHECKPOINT_ARRAYS];
        const int count = flow_norm_arrays(&fs, &fres, norms);
        double *buf = fs.n_t ? gf_calloc((size_t)(count * len + fs.n_t), sizeof(double), "checkpoint norms") : NULL;
        skip = fs.n_t ? gf_calloc((size_t)fs.n_t, 1, "checkpoint targets") : NULL;
        rc = gf_par_agree(par, !fs.n_t ? gf_error(GF_EUSAGE, "--resume: this run has no flow targets, "
                                                             "so there is nothing to resume (a run "
                                                             "without a flow is not checkpointed)")
                                       : buf && skip ? GF_OK : GF_ENOMEM);
        char *old = NULL, what[512];
        for (int k = 0; buf && k < count; ++k)
            saved[k] = buf + k * len;
        rc = rc ? rc : gf_h5_read_flow_checkpoint(par, ck.ckpt, &old, &fs, buf + count * len, saved, count);
        if (!rc && ini_differs(old, ini, what, sizeof what))
            rc = gf_error(GF_EUSAGE, "--resume: the checkpoint '%s' was written for other options: "
                                     "'%s' is not what it recorded; resume with the options of the "
                                     "stopped run", ck.ckpt, what);
        rc = gf_par_agree(par, rc);
        for (int64_t i = 0; !rc && i < fs.n_t; ++i) {
            skip[i] = buf[count * len + i] > 0;
            ck.skipped += skip[i];
            for (int k = 0; root && skip[i] && k < count; ++k)
                memcpy(norms[k] + i * (fs.max_lag + 1), saved[k] + i * (fs.max_lag + 1),
                       (size_t)(fs.max_lag + 1) * sizeof(double));
        }
        ck.counted = ck.skipped;
        free(old);
        free(buf);
    }
    StopHandlers old_handlers;
    if (fs.n_t)
        stop_handlers_install(&old_handlers);
    if (!rc) {
        GfProgress prog;
        double t0 = gf_time_now();
        fw.stop_nonfinite = !cfg.allow_nonfinite;
        gf_progress_begin(&prog, "forward", T, root && !cfg.quiet);
        gf_forward_run(&mo, &fw, par, &prog);
        t_fw = gf_time_now() - t0;
        if (fw.bad_step && !cfg.allow_nonfinite) /* the same step on every rank */
            rc = gf_error(GF_EDATA, "the forward pass overflowed: a(t) is not finite at step t = %" PRId64
                          ", units %" PRId64 "..%" PRId64 " (activation %s); a smaller --w-max or --gain, "
                          "fewer --steps or a bounded activation keeps it finite, and "
                          "--allow-nonfinite carries on regardless", fw.bad_step, fw.bad_lo, fw.bad_hi,
                          gf_act_name(cfg.activation));
    }
    if (!rc) {
        GfProgress prog;
        double t0 = gf_time_now();
        gf_progress_begin(&prog, "backward", T, root && !cfg.quiet);
        gf_bptt_run(&mo, &fw, &bw, par, &prog);
        t_bw = gf_time_now() - t0;
        if (bw.bad_step && !cfg.allow_nonfinite)
            rc = gf_error(GF_EDATA, "BPTT overflowed: delta(t) is not finite at step t = %" PRId64
                          ", units %" PRId64 "..%" PRId64 " (the error flow exploded); a smaller "
                          "--w-max or --gain or fewer --steps keeps it finite, and --allow-nonfinite "
                          "carries on regardless", bw.bad_step, bw.bad_lo, bw.bad_hi);
    }
    if (!rc) {
        GfProgress prog;
        /* ---- epilog: the file (on --resume: the stopped run's, with all but the flow in it) ---- */
        double t0 = gf_time_now();
        char *cmdline = join_args(argc, argv);
        GfH5Out *h = NULL;
        rc = gf_par_agree(par, cmdline ? GF_OK : gf_error(GF_ENOMEM, "out of memory"));
        ck.cmdline = cmdline ? cmdline : "";
        if (cfg.resume) {
            rc = rc ? rc : gf_h5_reopen(par, cfg.output, ck.cmdline, &mo, &h);
        } else {
            rc = rc ? rc : gf_h5_create(par, cfg.output, ck.cmdline, &mo, &h);
            rc = rc ? rc : gf_h5_write_config(h, &cfg, ini);
            rc = rc ? rc : gf_h5_write_model(h, &mo);
            rc = rc ? rc : gf_h5_write_forward(h, &mo, &fw);
            rc = rc ? rc : gf_h5_write_backward(h, &mo, &bw);
        }
        t_io = gf_time_now() - t0;
        if (!rc && fs.n_t) {
            t0 = gf_time_now();
            GfFlowSink sink;
            rc = cfg.resume ? gf_h5_flow_reopen(h, &fs, &sink)
                            : gf_h5_flow_begin(h, &fs, &sink);
            ck.h = h;
            const GfFlowControl ctl = {.skip = skip, .ctx = &ck, .round = flow_round};
            gf_progress_begin(&prog, "flow", 0, root && !cfg.quiet);
            rc = rc ? rc : gf_flow_run(&mo, &fw, &fs, par, &sink, &ctl, &fres, &prog);
            rc = rc ? rc : gf_h5_flow_end(h, &fs, &fres);
            t_flow = gf_time_now() - t0;
        }
        if (rc == GF_STOPPED)
            gf_error(GF_STOPPED, "stopped at write round %" PRId64 " of the flow (%s) with %" PRId64 " of %"
                     PRId64 " targets finished; the state is in '%s' and '%s.partial': run the same "
                     "command with --resume to continue", ck.stopped_round, gf_stop_reason,
                     ck.finished_at_stop, fs.n_t, ck.ckpt, cfg.output);
        t0 = gf_time_now();
        rc = gf_h5_close(h, rc);
        t_io += gf_time_now() - t0;
        if (!rc && root)
            unlink(ck.ckpt); /* the finished file supersedes it */
        free(cmdline);
    }
    if (fs.n_t)
        stop_handlers_restore(&old_handlers);
    free(skip);
    if (!rc) {
        struct stat st;
        const double size = root && stat(cfg.output, &st) == 0 ? (double)st.st_size : 0.0;
        if (root) {
            printf("gradflow: wrote %s (", cfg.output);
            print_bytes(stdout, "", size);
            printf(") in %.3f s on %d ranks (grid %dx%d)\n", gf_time_now() - t_start, nranks,
                   cfg.grid_t, cfg.grid_u);
            printf("  n = %" PRId64 ", m = %" PRId64 ", n_out = %" PRId64 ", T = %" PRId64
                   ", activation %s\n", n, m, n_out, T, gf_act_name(cfg.activation));
            printf("  loss E = %.10g, ||dE/dW||_F = %.10g\n", bw.loss, bw.norm_dW);
            if (!isfinite(bw.loss) || !isfinite(bw.norm_dW))
                printf("  warning: not finite: the %s overflowed double precision (the error flow "
                       "exploded; smaller --w-max or --gain, or fewer --steps, keep it finite)\n",
                       isfinite(bw.loss) ? "gradient" : "forward pass");
            if (fs.n_t)
                report_flow(&fs, &fres);
            printf("  timers over ranks:\n");
        }
        report_timer(par, "forward", t_fw);
        report_timer(par, "backward", t_bw);
        report_timer(par, "flow", t_flow);
        /* part of "flow": handing the tensor to the writer (a copy, or a wait when it lags) */
        if (fs.n_t && fs.tensor)
            report_timer(par, " G writes", fres.write_s);
        report_timer(par, "write", t_io);
        /* peak resident memory per rank, to set beside the --dry-run estimate */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double mem[3];
        gf_par_min_avg_max(par, (double)ru.ru_maxrss / 1024.0, mem);
        if (root)
            printf("  peak RSS   %9.1f MiB min %7.1f MiB avg %7.1f MiB max (MPI, HDF5 and BLAS "
                   "included)\n", mem[0], mem[1], mem[2]);
    } else {
        fail(par, rc);
    }
    gf_flow_result_free(&fres);
    flow_spec_free(&fs);
    gf_bptt_free(&bw);
    gf_forward_free(&fw);
    gf_model_free(&mo);
    gf_par_destroy(par);
    return rc;
}
