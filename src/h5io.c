/* h5io.c — parallel HDF5 output and input (see h5io.h). */
#define _GNU_SOURCE /* sync_file_range */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <hdf5.h>
#include <hdf5_hl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gf_gitrev.h"
#include "gradflow/blas.h"
#include "gradflow/error.h"
#include "gradflow/flow.h"
#include "gradflow/h5io.h"

#define FORMAT_NAME "gradflow/1"

/* Axes of the file.  Each group that uses an axis holds its own dimension
 * scale of that name, so netCDF/xarray readers opening one group see every
 * axis that group's datasets use. */
typedef enum { AX_TIME, AX_UNIT, AX_INPUT, AX_OUTPUT, AX_TARGET, AX_LAG, AX_UNITS_V, AX_UNITS_K,
               AX_EPOCH, AX_TRAIN_LAG, AX_SWEEP_LAG, AX_TRIAL, AX_COUNT } Axis;
/* dataset name of each scale (SPEC §6 fixes /flow/targets etc.) and its NAME */
static const char *const axis_dsets[AX_COUNT] = {"time", "unit", "input", "output",
                                                 "targets", "lags", "units_v", "units_k",
                                                 "epoch", "lag", "lags", "trial"};
static const char *const axis_names[AX_COUNT] = {"time", "unit", "input", "output",
                                                 "target", "lag", "unit_v", "unit_k",
                                                 "epoch", "lag", "sweep_lag", "trial"};
static const char *const axis_desc[AX_COUNT] = {
    "time step tau = 1..T (row tau-1 of time-major datasets)",
    "unit index i = 0..n-1 (0-based)",
    "external input index j = 0..m-1",
    "global unit index of each output unit (the last n_out units)",
    "target times t_i of the flow tensor",
    "lags L = 0..max_lag: source time s = t_i - L",
    "source units v (0-based): rows of G, d delta_v(t_i - L)",
    "target units k (0-based): columns of G, d delta_k(t_i)",
    "training epoch (1-based)",
    "lag L = 0..T-1 before the target time T",
    "the task's lag of each sweep point",
    "trial index; its seed derives from --seed and the index"};

/* The tensor writer.  /flow/G and /flow/J are contiguous datasets, allocated
 * when they are created (parallel HDF5 always allocates early) and never
 * filled, so entry [i][L][a][b] lies at a fixed file offset.  Each rank
 * writes its own rows of each round with pwrite at those offsets, from a
 * thread of its own: the round's slab is copied into a staging buffer (one
 * per dataset) and the flow goes on computing while the thread writes it.
 * The thread makes no MPI or HDF5 call (MPI is initialised FUNNELED).  Every
 * 32 MiB it also asks the kernel to start writing back (sync_file_range,
 * Linux), so that the sync before `complete` does not wait for the whole
 * tensor.  A write error is kept and reported, agreed by all ranks, at the
 * next round or sync.
 *
 * Through MPI-IO instead (H5Dwrite, each rank's rows as independent writes
 * under a collective call) when GRADFLOW_TENSOR_IO=mpiio, for file systems
 * that MPI-IO reaches but POSIX calls do not; and when the file cannot be
 * opened with open(2) by every rank, or its datasets are not contiguous (a
 * file written by an older gradflow, resumed).  The thread then only starts
 * the write-back. */
typedef struct {
    double *data;      /* (nlags, nva, nk) staged slab, cap doubles */
    int64_t cap;
    int64_t offset;    /* file offset of its first row */
    int64_t nlags;     /* lags in the slab */
    int64_t lag_bytes; /* bytes of one lag: nva * nk * 8, contiguous in the file */
    int64_t stride;    /* bytes from one lag to the next in the file: N_v * N_k * 8 */
    int busy;          /* queued or being written */
} Stage;

typedef struct {
    int fd;            /* the .partial, write-only; -1 none */
    int direct;        /* 1: pwrite by this thread; 0: H5Dwrite, the thread starts write-back only */
    int threaded, quit, sync_wanted, err;
    int64_t unsynced;  /* bytes since the last start of write-back */
    int64_t base[2];   /* file offsets of /flow/G and /flow/J */
    Stage stage[2];    /* G, J */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake, idle;
} Writer;

static void writer_stop(Writer *w);

struct GfH5Out {
    const GfPar *par;
    hid_t file, dxpl, dxpl_tensor;
    Writer wr;        /* writes the tensor while the flow computes (see above) */
    char path[GF_PATH_MAX], partial[GF_PATH_MAX + 16];
    int64_t n, m, n_out, T;
    const GfFlowSpec *flow;   /* set by gf_h5_flow_begin: values of the flow axes */
    hid_t G, J;               /* /flow/G and /flow/J while the tensor streams, else -1 */
    int64_t epochs, n_sweep, trials; /* training axes */
    const int64_t *sweep_lags;
};

static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static int gf_h5_abandoned_files; /* see gf_h5_abandoned() */

int gf_h5_abandoned(void) { return gf_h5_abandoned_files; }

/* The norms a flow checkpoint keeps, in the order of its arrays. */
static const char *const flow_checkpoint_names[GF_FLOW_CHECKPOINT_ARRAYS] = {
    "log10_norm_fro", "log10_norm_max", "contribution", "log10_contribution", "J_log10_norm_fro",
    "J_log10_norm_max"};
static int read_attr_i64(hid_t obj, const char *name, int64_t *v);

/* ---- attributes (collective: every rank passes identical values) ---- */

static int attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *val)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT)
                                           : H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = attr < 0 ? -1 : H5Awrite(attr, mtype, val);
    if (attr >= 0)
        H5Aclose(attr);
    H5Sclose(space);
    return rc < 0 ? gf_error(GF_EIO, "cannot write attribute '%s'", name) : GF_OK;
}

static int attr_str(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = attr_write(obj, name, t, t, &value);
    H5Tclose(t);
    return rc;
}

static int attr_i64(hid_t obj, const char *name, int64_t v)
{
    return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

static int attr_u64(hid_t obj, const char *name, uint64_t v)
{
    return attr_write(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}

static int attr_f64(hid_t obj, const char *name, double v)
{
    return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

/* ---- datasets ---- */

/* Writes this rank's block of dset: file rows [r0, r0+nr) x cols [c0, c0+nc)
 * (rank-1 datasets: rows only) from buf, whose rows are ld elements apart.
 * A rank with nothing to write (nr*nc == 0 or !mine) still takes part with an
 * empty selection, as collective I/O requires. */
static int write_block(GfH5Out *h, hid_t dset, hid_t mtype, int64_t r0, int64_t nr, int64_t c0,
                       int64_t nc, int64_t ld, const void *buf, int mine)
{
    hid_t fspace = H5Dget_space(dset);
    const int rank = H5Sget_simple_extent_ndims(fspace);
    hsize_t fdims[2] = {1, 1};
    H5Sget_simple_extent_dims(fspace, fdims, NULL);
    hsize_t total = fdims[0] * (rank == 2 ? fdims[1] : 1);
    int rc = GF_OK;
    if (total == 0) { /* zero-sized dataset (m = 0): nothing to transfer */
        H5Sclose(fspace);
        return GF_OK;
    }
    if (rank == 1)
        nc = 1, c0 = 0, ld = 1;
    hid_t mspace;
    if (!mine || nr == 0 || nc == 0) {
        hsize_t one = 1;
        mspace = H5Screate_simple(1, &one, NULL);
        H5Sselect_none(mspace);
        H5Sselect_none(fspace);
    } else {
        hsize_t fstart[2] = {(hsize_t)r0, (hsize_t)c0}, count[2] = {(hsize_t)nr, (hsize_t)nc};
        hsize_t mdims[2] = {(hsize_t)nr, (hsize_t)ld}, mstart[2] = {0, 0};
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, fstart, NULL, count, NULL);
        mspace = H5Screate_simple(rank, mdims, NULL);
        H5Sselect_hyperslab(mspace, H5S_SELECT_SET, mstart, NULL, count, NULL);
    }
    if (H5Dwrite(dset, mtype, mspace, fspace, h->dxpl, buf) < 0)
        rc = gf_error(GF_EIO, "%s: writing a dataset failed (disk full or file system error?)",
                      h->partial);
    H5Sclose(mspace);
    H5Sclose(fspace);
    /* agreed, so that a write failing on one rank does not make it skip the
     * collective calls that the others go on to make */
    return gf_par_agree(h->par, rc);
}

static int64_t axis_len(const GfH5Out *h, Axis ax)
{
    switch (ax) {
    case AX_TIME: return h->T;
    case AX_UNIT: return h->n;
    case AX_INPUT: return h->m;
    case AX_OUTPUT: return h->n_out;
    case AX_TARGET: return h->flow->n_t;
    case AX_LAG: return h->flow->max_lag + 1;
    case AX_UNITS_V: return h->flow->n_v;
    case AX_UNITS_K: return h->flow->n_k;
    case AX_EPOCH: return h->epochs;
    case AX_TRAIN_LAG: return h->T;
    case AX_SWEEP_LAG: return h->n_sweep;
    default: return h->trials;
    }
}

static int64_t axis_value(const GfH5Out *h, Axis ax, int64_t k)
{
    switch (ax) {
    case AX_TIME: return k + 1;
    case AX_OUTPUT: return h->n - h->n_out + k;
    case AX_TARGET: return h->flow->targets[k];
    case AX_UNITS_V: return h->flow->units_v[k];
    case AX_UNITS_K: return h->flow->units_k[k];
    case AX_EPOCH: return k + 1;
    case AX_SWEEP_LAG: return h->sweep_lags[k];
    default: return k; /* unit, input, lag, trial */
    }
}

/* Opens (creating on first use) the dimension scale `ax` of group g. */
static hid_t scale_of(GfH5Out *h, hid_t g, Axis ax)
{
    const char *name = axis_dsets[ax];
    if (H5Lexists(g, name, H5P_DEFAULT) > 0)
        return H5Dopen2(g, name, H5P_DEFAULT);
    const hsize_t len = (hsize_t)axis_len(h, ax);
    hid_t space = H5Screate_simple(1, &len, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    H5Pset_obj_track_times(dcpl, 0);
    hid_t ds = H5Dcreate2(g, name, H5T_STD_I64LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (ds < 0)
        return ds;
    const int mine = gf_par_rank(h->par) == 0;
    int64_t *v = mine ? malloc((len ? len : 1) * sizeof *v) : NULL;
    if (gf_par_agree(h->par, mine && !v ? gf_error(GF_ENOMEM, "out of memory") : GF_OK)) {
        free(v);
        H5Dclose(ds);
        return -1;
    }
    for (hsize_t k = 0; mine && k < len; ++k)
        v[k] = axis_value(h, ax, (int64_t)k);
    int rc = write_block(h, ds, H5T_NATIVE_INT64, 0, (int64_t)len, 0, 1, 1, v, mine);
    free(v);
    if (rc || H5DSset_scale(ds, axis_names[ax]) < 0 || attr_str(ds, "description", axis_desc[ax])) {
        H5Dclose(ds);
        return -1;
    }
    return ds;
}

/* Creates dataset g/name of file type ftype on the given axes (1 to 4),
 * contiguous, attaches their scales and writes its description.  Returns the
 * dataset, or -1 on every rank when it fails on any. */
static hid_t create_ds(GfH5Out *h, hid_t g, const char *name, hid_t ftype, int rank, const Axis *axes,
                       const char *desc)
{
    hsize_t dims[4];
    for (int k = 0; k < rank; ++k)
        dims[k] = (hsize_t)axis_len(h, axes[k]);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    /* every element is written, so never spend a pass writing fill values */
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    H5Pset_obj_track_times(dcpl, 0);
    hid_t ds = H5Dcreate2(g, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    int bad = ds < 0 ? gf_error(GF_EIO, "%s: cannot create dataset '%s'", h->partial, name) : GF_OK;
    if (!gf_par_agree(h->par, bad)) {
        bad = attr_str(ds, "description", desc);
        for (int k = 0; k < rank && !bad; ++k) {
            hid_t sc = scale_of(h, g, axes[k]);
            bad = sc < 0 || H5DSattach_scale(ds, sc, (unsigned)k) < 0;
            if (sc >= 0)
                H5Dclose(sc);
        }
        if (bad)
            gf_error(GF_EIO, "%s: cannot describe dataset '%s'", h->partial, name);
    }
    /* every rank returns a dataset, or none does */
    if (gf_par_agree(h->par, bad ? GF_EIO : GF_OK)) {
        if (ds >= 0)
            H5Dclose(ds);
        return -1;
    }
    return ds;
}

/* Creates and writes one float64 dataset: this rank's block as write_block. */
static int put_f64(GfH5Out *h, hid_t g, const char *name, int rank, Axis ax0, Axis ax1,
                   const char *desc, int64_t r0, int64_t nr, int64_t c0, int64_t nc, int64_t ld,
                   const double *buf, int mine)
{
    const Axis axes[2] = {ax0, ax1};
    hid_t ds = create_ds(h, g, name, H5T_IEEE_F64LE, rank, axes, desc);
    int rc = gf_par_agree(h->par, ds < 0 ? GF_EIO : GF_OK);
    if (rc) {
        if (ds >= 0)
            H5Dclose(ds);
        return rc;
    }
    rc = write_block(h, ds, H5T_NATIVE_DOUBLE, r0, nr, c0, nc, ld, buf, mine);
    H5Dclose(ds);
    return rc;
}

static hid_t group(GfH5Out *h, const char *name, const char *desc)
{
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_obj_track_times(gcpl, 0);
    hid_t g = H5Gcreate2(h->file, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    H5Pclose(gcpl);
    const int bad = g < 0 || attr_str(g, "description", desc);
    /* every rank returns the group, or none does */
    if (gf_par_agree(h->par, bad ? gf_error(GF_EIO, "%s: cannot create group %s", h->partial, name) : GF_OK)) {
        if (g >= 0)
            H5Gclose(g);
        return -1;
    }
    return g;
}

/* ---- the output file ---- */

/* Collective.  Creates (or, with reopen, opens read-write) PATH.partial and
 * the transfer properties; *out is NULL on failure. */
static int open_partial(const GfPar *par, const char *path, const GfModel *sizes, int reopen, GfH5Out **out)
{
    quiet_hdf5();
    *out = NULL;
    GfH5Out *h = calloc(1, sizeof *h);
    int rc = h ? GF_OK : gf_error(GF_ENOMEM, "out of memory");
    if ((rc = gf_par_agree(par, rc))) {
        free(h); /* another rank's failed */
        return rc;
    }
    h->par = par;
    h->file = h->dxpl = h->dxpl_tensor = h->G = h->J = -1;
    h->wr.fd = -1;
    snprintf(h->path, sizeof h->path, "%s", path);
    snprintf(h->partial, sizeof h->partial, "%s.partial", path);
    h->n = sizes->n;
    h->m = sizes->m;
    h->n_out = sizes->n_out;
    h->T = sizes->T;

    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, gf_par_world(par), MPI_INFO_NULL);
    H5Pset_all_coll_metadata_ops(fapl, 1);
    H5Pset_coll_metadata_write(fapl, 1);
    /* no object timestamps, so that the same run writes the same bytes */
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    h->file = reopen ? H5Fopen(h->partial, H5F_ACC_RDWR, fapl) : H5Fcreate(h->partial, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (h->file < 0 && reopen)
        rc = gf_error(GF_EIO, "--resume: cannot open '%s', the output of the stopped run (it must "
                              "be where the stopped run left it)", h->partial);
    else if (h->file < 0)
        rc = gf_error(GF_EIO, "-o: cannot create '%s' (check that the directory exists and is "
                              "writable)", h->partial);
    if ((rc = gf_par_agree(par, rc))) {
        if (h->file >= 0)
            H5Fclose(h->file);
        free(h);
        return rc;
    }
    h->dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(h->dxpl, H5FD_MPIO_COLLECTIVE);
    /* The tensor's writes when they go through MPI-IO (see the tensor
     * writer): collective for HDF5 (every rank takes part in every round),
     * but each rank's rows go to MPI-IO as independent writes.  Collective
     * buffering would copy every byte once more into the aggregators'
     * buffers, for nothing: the pieces are already large and disjoint. */
    h->dxpl_tensor = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(h->dxpl_tensor, H5FD_MPIO_COLLECTIVE);
    H5Pset_dxpl_mpio_collective_opt(h->dxpl_tensor, H5FD_MPIO_INDIVIDUAL_IO);
    *out = h;
    return GF_OK;
}

int gf_h5_reopen(const GfPar *par, const char *path, const char *command_line, const GfModel *sizes,
                 GfH5Out **out)
{
    int rc = open_partial(par, path, sizes, 1, out);
    if (rc)
        return rc;
    GfH5Out *h = *out;
    int64_t complete = -1;
    if (read_attr_i64(h->file, "complete", &complete) || complete != 0)
        rc = gf_error(GF_EDATA, "--resume: '%s' is not the partial output of a stopped gradflow run",
                      h->partial);
    rc = rc ? rc : attr_str(h->file, "resumed_command_line", command_line);
    return gf_par_agree(par, rc);
}

static int tensor_drain(GfH5Out *h, int sync);

int gf_h5_flush(GfH5Out *h)
{
    if (tensor_drain(h, 1))
        return GF_EIO;
    const int rc = H5Fflush(h->file, H5F_SCOPE_GLOBAL) < 0
                       ? gf_error(GF_EIO, "%s: flushing failed (disk full?)", h->partial) : GF_OK;
    return gf_par_agree(h->par, rc);
}

int gf_h5_create(const GfPar *par, const char *path, const char *command_line, const GfModel *sizes,
                 GfH5Out **out)
{
    int rc = open_partial(par, path, sizes, 0, out);
    if (rc)
        return rc;
    GfH5Out *h = *out;

    /* the creation time must be identical on all ranks: rank 0's, broadcast;
     * SOURCE_DATE_EPOCH (reproducible-builds convention) pins it */
    char stamp[32] = "", *sp = stamp;
    if (gf_par_rank(par) == 0) {
        const char *epoch = getenv("SOURCE_DATE_EPOCH");
        time_t now = epoch && *epoch ? (time_t)strtoll(epoch, NULL, 10) : time(NULL);
        struct tm tmv;
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
    }
    rc = gf_par_bcast_string(par, &sp);
    /* rank 0's BLAS kernels, so that a slow run can be explained afterwards */
    char blas[512] = "", *bp = blas;
    if (gf_par_rank(par) == 0)
        gf_blas_describe(blas, sizeof blas);
    rc = rc ? rc : gf_par_bcast_string(par, &bp);
    if (!rc) {
        char grid[64];
        snprintf(grid, sizeof grid, "1x%d", gf_par_unit_size(par));
        if (gf_par_size(par) != gf_par_unit_size(par))
            snprintf(grid, sizeof grid, "%dx%d", gf_par_size(par) / gf_par_unit_size(par),
                     gf_par_unit_size(par));
        rc = attr_str(h->file, "format", FORMAT_NAME);
        rc = rc ? rc : attr_str(h->file, "program_version", GF_VERSION);
        rc = rc ? rc : attr_str(h->file, "git_revision", GF_GIT_REVISION);
        rc = rc ? rc : attr_str(h->file, "command_line", command_line);
        rc = rc ? rc : attr_i64(h->file, "mpi_ranks", gf_par_size(par));
        rc = rc ? rc : attr_str(h->file, "grid", grid);
        rc = rc ? rc : attr_str(h->file, "created_utc", sp);
        rc = rc ? rc : attr_str(h->file, "blas", bp);
        rc = rc ? rc : attr_i64(h->file, "complete", 0);
        rc = rc ? rc : attr_str(h->file, "description",
                                "gradflow output (Hochreiter et al. 2001): forward pass, BPTT, "
                                "gradients and the gradient-flow tensor of a fully recurrent net "
                                "(/forward, /backward, /gradient, /flow, /lag), or a training run "
                                "(/train); layout in README.md. The file is whole only when "
                                "complete = 1.");
    }
    if (sp != stamp)
        free(sp);
    if (bp != blas)
        free(bp);
    return gf_par_agree(par, rc);
}

int gf_h5_write_config(GfH5Out *h, const GfConfig *cfg, const char *ini)
{
    hid_t g = group(h, "config", "every resolved option, one attribute each (names as the long "
                                 "options); the resolved INI text in /config/ini");
    int rc = g < 0 ? GF_EIO : GF_OK;
    for (int k = 0; !rc && k < gf_config_option_count(); ++k) {
        GfOptValue v;
        gf_config_option(cfg, k, &v);
        switch (v.kind) {
        case GF_OPT_INT: case GF_OPT_FLAG: rc = attr_i64(g, v.name, v.i); break;
        case GF_OPT_UINT: rc = attr_u64(g, v.name, v.u); break;
        case GF_OPT_REAL: rc = attr_f64(g, v.name, v.d); break;
        case GF_OPT_STRING: rc = attr_str(g, v.name, v.s); break;
        }
    }
    if (!rc) {
        /* a fixed-length string: parallel HDF5 cannot write variable-length data */
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, strlen(ini) + 1);
        H5Tset_cset(t, H5T_CSET_UTF8);
        hid_t space = H5Screate(H5S_SCALAR);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_obj_track_times(dcpl, 0);
        hid_t ds = H5Dcreate2(g, "ini", t, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        H5Pclose(dcpl);
        if (ds < 0 || attr_str(ds, "description", "the resolved configuration as INI text; "
                                                  "gradflow --config accepts it to repeat the run")) {
            rc = gf_error(GF_EIO, "%s: cannot create /config/ini", h->partial);
        } else {
            if (gf_par_rank(h->par) != 0)
                H5Sselect_none(space);
            if (H5Dwrite(ds, t, space, space, h->dxpl, ini) < 0)
                rc = gf_error(GF_EIO, "%s: cannot write /config/ini", h->partial);
        }
        if (ds >= 0)
            H5Dclose(ds);
        H5Sclose(space);
        H5Tclose(t);
    }
    if (g >= 0)
        H5Gclose(g);
    return gf_par_agree(h->par, rc);
}

int gf_h5_write_params(GfH5Out *h, const GfModel *mo)
{
    const int64_t n = mo->n, m = mo->m, nl = mo->n_local, lo = mo->lo;
    const int g0 = gf_par_time_rank(h->par) == 0;
    hid_t g = group(h, "model", "parameters: net(t) = W a(t-1) + U x(t) + b, a(t) = f(net(t))");
    if (g < 0)
        return gf_par_agree(h->par, GF_EIO);
    int rc = put_f64(h, g, "W", 2, AX_UNIT, AX_UNIT, "recurrent weights, W[i][j] = w_ij from unit j to unit i",
                     lo, nl, 0, n, n, mo->W, g0);
    rc = rc ? rc : put_f64(h, g, "U", 2, AX_UNIT, AX_INPUT, "input weights, U[i][j] from input j to unit i",
                           lo, nl, 0, m, m, mo->U, g0);
    rc = rc ? rc : put_f64(h, g, "b", 1, AX_UNIT, AX_UNIT, "biases b[i]", lo, nl, 0, 1, 1, mo->b, g0);
    rc = rc ? rc : put_f64(h, g, "a0", 1, AX_UNIT, AX_UNIT, "initial state a(0)", lo, nl, 0, 1, 1,
                           mo->a0 + lo, g0);
    H5Gclose(g);
    return gf_par_agree(h->par, rc);
}

int gf_h5_write_model(GfH5Out *h, const GfModel *mo)
{
    const int64_t m = mo->m, T = mo->T;
    const int root = gf_par_rank(h->par) == 0;
    int rc = gf_h5_write_params(h, mo);
    if (rc)
        return rc;
    hid_t g;
    g = group(h, "input", "external inputs and targets");
    if (g < 0)
        return gf_par_agree(h->par, GF_EIO);
    rc = put_f64(h, g, "x", 2, AX_TIME, AX_INPUT, "inputs x(tau), row tau-1", 0, T, 0, m, m, mo->x, root);
    rc = rc ? rc : put_f64(h, g, "d", 2, AX_TIME, AX_OUTPUT,
                           "targets d(tau) for the output units, row tau-1 (0 where target_mask = 0)",
                           0, T, 0, mo->n_out, mo->n_out, mo->d, root);
    if (!rc) {
        const Axis ax[1] = {AX_TIME};
        hid_t ds = create_ds(h, g, "target_mask", H5T_STD_U8LE, 1, ax, "1 where E(tau) counts, row tau-1");
        rc = ds < 0 ? GF_EIO : write_block(h, ds, H5T_NATIVE_UINT8, 0, T, 0, 1, 1, mo->mask, root); /* ds: agreed */
        if (ds >= 0)
            H5Dclose(ds);
    }
    H5Gclose(g);
    return gf_par_agree(h->par, rc);
}

int gf_h5_write_forward(GfH5Out *h, const GfModel *mo, const GfForward *fw)
{
    const int64_t n = mo->n, nl = mo->n_local, lo = mo->lo, T = mo->T;
    /* the Pt time groups hold identical copies: group 0 writes them */
    const int g0 = gf_par_time_rank(h->par) == 0;
    hid_t g = group(h, "forward", "forward pass, row tau-1 for time tau");
    if (g < 0)
        return gf_par_agree(h->par, GF_EIO);
    int rc = put_f64(h, g, "net", 2, AX_TIME, AX_UNIT, "net input net(tau) = W a(tau-1) + U x(tau) + b",
                     0, T, lo, nl, nl, fw->net, g0);
    rc = rc ? rc : put_f64(h, g, "a", 2, AX_TIME, AX_UNIT, "activation a(tau) = f(net(tau))", 0, T,
                           lo, nl, n, fw->a + n + lo, g0);
    rc = rc ? rc : put_f64(h, g, "fprime", 2, AX_TIME, AX_UNIT, "f'(net(tau)), the diagonal of F'(tau)",
                           0, T, lo, nl, nl, fw->fprime, g0);
    H5Gclose(g);
    return gf_par_agree(h->par, rc);
}

int gf_h5_write_backward(GfH5Out *h, const GfModel *mo, const GfBackward *bw)
{
    const int64_t n = mo->n, m = mo->m, nl = mo->n_local, lo = mo->lo, T = mo->T;
    /* the Pt time groups hold identical copies: group 0 writes them */
    const int g0 = gf_par_time_rank(h->par) == 0;
    const int root = gf_par_rank(h->par) == 0;
    hid_t g = group(h, "backward", "backpropagation through time, delta(tau) = dE/dnet(tau)");
    if (g < 0)
        return gf_par_agree(h->par, GF_EIO);
    int rc = put_f64(h, g, "delta", 2, AX_TIME, AX_UNIT,
                     "delta(tau) = dE/dnet(tau) = F'(tau) [e(tau) + W^T delta(tau+1)] (gradient sign)",
                     0, T, lo, nl, nl, bw->delta, g0);
    if (!rc) {
        const Axis ax[1] = {AX_TIME};
        hid_t ds = create_ds(h, g, "E", H5T_IEEE_F64LE, 1, ax,
                             "E(tau) = 1/2 sum over outputs (a_k - d_k)^2 at target times, else 0");
        rc = ds < 0 ? GF_EIO : write_block(h, ds, H5T_NATIVE_DOUBLE, 0, T, 0, 1, 1, bw->E, root); /* ds: agreed */
        rc = rc ? rc : attr_f64(ds, "loss", bw->loss);
        if (ds >= 0)
            H5Dclose(ds);
    }
    H5Gclose(g);
    if ((rc = gf_par_agree(h->par, rc)))
        return rc;

    g = group(h, "gradient", "gradients of E; the update is Delta w = -eta dE/dw");
    if (g < 0)
        return gf_par_agree(h->par, GF_EIO);
    rc = put_f64(h, g, "dE_dW", 2, AX_UNIT, AX_UNIT, "dE/dW = sum_tau delta(tau) a(tau-1)^T", lo, nl, 0,
                 n, n, bw->dW, g0);
    if (!rc) {
        hid_t ds = H5Dopen2(g, "dE_dW", H5P_DEFAULT);
        rc = ds < 0 ? GF_EIO : attr_f64(ds, "norm_fro", bw->norm_dW);
        if (ds >= 0)
            H5Dclose(ds);
    }
    rc = rc ? rc : put_f64(h, g, "dE_dU", 2, AX_UNIT, AX_INPUT, "dE/dU = sum_tau delta(tau) x(tau)^T",
                           lo, nl, 0, m, m, bw->dU, g0);
    rc = rc ? rc : put_f64(h, g, "dE_db", 1, AX_UNIT, AX_UNIT, "dE/db = sum_tau delta(tau)", lo, nl,
                           0, 1, 1, bw->db, g0);
    H5Gclose(g);
    return gf_par_agree(h->par, rc);
}

int gf_h5_close(GfH5Out *h, int status)
{
    if (!h)
        return status;
    const GfPar *par = h->par;
    if (h->G >= 0)
        H5Dclose(h->G);
    if (h->J >= 0)
        H5Dclose(h->J);
    int rc = status;
    if (!rc)
        rc = tensor_drain(h, 1);
    if (!rc) {
        /* everything else is on disk before the file claims to be whole */
        rc = H5Fflush(h->file, H5F_SCOPE_GLOBAL) < 0
                 ? gf_error(GF_EIO, "%s: flushing failed (disk full?)", h->partial)
                 : attr_i64(h->file, "complete", 1);
        rc = gf_par_agree(par, rc);
    }
    if (h->dxpl >= 0)
        H5Pclose(h->dxpl);
    if (h->dxpl_tensor >= 0)
        H5Pclose(h->dxpl_tensor);
    writer_stop(&h->wr);
    /* After a failed write the ranks' HDF5 states may differ (one holds dirty
     * metadata another flushed), and closing would run collective flushes
     * that no longer match: a hang.  The file is abandoned as it is; it never
     * claimed complete = 1. */
    if (status == GF_EIO && h->file >= 0) {
        h->file = -1;
        gf_h5_abandoned_files = 1;
    }
    if (h->file >= 0 && H5Fclose(h->file) < 0 && !rc)
        rc = gf_error(GF_EIO, "%s: closing failed (disk full?)", h->partial);
    rc = gf_par_agree(par, rc);
    /* on failure the .partial stays: it never claims complete = 1, a stopped
     * run resumes from it, and a failed one can be looked into */
    if (gf_par_rank(par) == 0 && !rc && rename(h->partial, h->path) != 0)
        rc = gf_error(GF_EIO, "cannot rename '%s' to '%s': %s", h->partial, h->path, strerror(errno));
    rc = gf_par_agree(par, rc);
    free(h);
    return rc;
}

/* ---- input datasets ---- */

/* Splits "FILE:/dset" at the last ":/" into file and dataset path. */
static int split_spec(const char *spec, const char *option, char *file, size_t fsz, const char **dset)
{
    const char *sep = NULL;
    for (const char *p = spec; (p = strstr(p, ":/")) != NULL; ++p)
        sep = p;
    if (!sep || sep == spec || (size_t)(sep - spec) >= fsz)
        return gf_error(GF_EUSAGE, "%s: '%s' must be FILE.h5:/path/to/dataset", option, spec);
    memcpy(file, spec, (size_t)(sep - spec));
    file[sep - spec] = '\0';
    *dset = sep + 1;
    return GF_OK;
}

/* Local.  libhdf5 itself can crash on a corrupt file (fuzzing found a NULL
 * read in 1.10's metadata accumulator), which would end the whole job with
 * no word of the cause.  So a child process walks the file the way the real
 * reads will first: the superblock, the path to the dataset, its header, the
 * index of its chunks (up to 4096) and one element.  A child killed by a
 * signal means a corrupt file, reported as such; any other outcome leaves
 * the verdict to the ordinary checks, which then run in this process. */
static int parse_in_child(const char *file, const char *dpath, const char *option)
{
    fflush(NULL);
    const pid_t pid = fork();
    if (pid < 0)
        return GF_OK; /* no child: the ordinary checks still run */
    if (pid == 0) {
        /* a crash here is the answer: die of it, without MPI's or a sanitizer's handlers */
        const int deadly[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
        for (size_t k = 0; k < sizeof deadly / sizeof deadly[0]; ++k)
            signal(deadly[k], SIG_DFL);
        quiet_hdf5();
        hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t ds = f >= 0 && H5Lexists(f, dpath, H5P_DEFAULT) > 0 ? H5Dopen2(f, dpath, H5P_DEFAULT) : -1;
        hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1, dcpl = ds >= 0 ? H5Dget_create_plist(ds) : -1;
        hsize_t nchunks = 0, off[H5S_MAX_RANK], size = 0;
        unsigned mask = 0;
        haddr_t addr = 0;
        if (dcpl >= 0 && sp >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Dget_num_chunks(ds, sp, &nchunks) >= 0)
            for (hsize_t k = 0; k < nchunks && k < 4096; ++k)
                (void)H5Dget_chunk_info(ds, sp, k, off, &mask, &addr, &size);
        const int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
        if (nd > 0 && nd <= H5S_MAX_RANK && H5Sget_simple_extent_npoints(sp) > 0) {
            hsize_t start[H5S_MAX_RANK] = {0}, one[H5S_MAX_RANK];
            for (int k = 0; k < nd; ++k)
                one[k] = 1;
            double x;
            const hsize_t n1 = 1;
            hid_t ms = H5Screate_simple(1, &n1, NULL);
            if (H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, one, NULL) >= 0)
                (void)H5Dread(ds, H5T_NATIVE_DOUBLE, ms, sp, H5P_DEFAULT, &x);
            H5Sclose(ms);
        }
        _exit(0); /* no clean-up: the parent owns MPI and the files */
    }
    int st = 0;
    pid_t got;
    while ((got = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
        ;
    /* the child ends with _exit(0) unless something killed or aborted it */
    if (got == pid && (WIFSIGNALED(st) || WEXITSTATUS(st) != 0))
        return gf_error(GF_EDATA, "%s: '%s' is corrupt: the HDF5 library crashed reading its "
                                  "structure (%s %d); check it with h5dump, or write it again",
                        option, file, WIFSIGNALED(st) ? "signal" : "exit status",
                        WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    return GF_OK;
}

int gf_h5_probe(const GfPar *par, const char *spec, const char *option, int64_t dims[2])
{
    quiet_hdf5();
    int rc = GF_OK;
    int64_t d[2] = {0, 0};
    if (gf_par_rank(par) == 0) {
        char file[GF_PATH_MAX];
        const char *dpath = NULL;
        rc = split_spec(spec, option, file, sizeof file, &dpath);
        if (!rc && access(file, R_OK) != 0)
            rc = gf_error(GF_EIO, "%s: cannot read '%s': %s", option, file, strerror(errno));
        if (!rc)
            rc = parse_in_child(file, dpath, option);
        hid_t f = -1, ds = -1, sp = -1, ty = -1;
        if (!rc && (f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
            rc = gf_error(GF_EIO, "%s: '%s' is not a readable HDF5 file (corrupt or another format)",
                          option, file);
        if (!rc && (H5Lexists(f, dpath, H5P_DEFAULT) <= 0 || (ds = H5Dopen2(f, dpath, H5P_DEFAULT)) < 0))
            rc = gf_error(GF_EDATA, "%s: '%s' has no dataset '%s'", option, file, dpath);
        if (!rc) {
            sp = H5Dget_space(ds);
            ty = H5Dget_type(ds);
            const int nd = H5Sget_simple_extent_ndims(sp);
            hsize_t hd[2];
            if (H5Tget_class(ty) != H5T_FLOAT)
                rc = gf_error(GF_EDATA, "%s: dataset '%s' in '%s' is not floating point; a float32 "
                                        "or float64 dataset is required", option, dpath, file);
            else if (nd != 2)
                rc = gf_error(GF_EDATA, "%s: dataset '%s' in '%s' has %d dimensions; a 2-D dataset "
                                        "is required", option, dpath, file, nd);
            else if (H5Sget_simple_extent_dims(sp, hd, NULL) < 0 || hd[0] > INT32_MAX ||
                     hd[1] > INT32_MAX)
                rc = gf_error(GF_EDATA, "%s: dataset '%s' in '%s' is too large (each dimension at "
                                        "most %d)", option, dpath, file, INT32_MAX);
            else
                d[0] = (int64_t)hd[0], d[1] = (int64_t)hd[1];
        }
        if (ty >= 0) H5Tclose(ty);
        if (sp >= 0) H5Sclose(sp);
        if (ds >= 0) H5Dclose(ds);
        if (f >= 0) H5Fclose(f);
    }
    if ((rc = gf_par_agree(par, rc)))
        return rc;
    gf_par_bcast_int64(par, d, 2);
    dims[0] = d[0];
    dims[1] = d[1];
    return GF_OK;
}

int gf_h5_read_rows(const GfPar *par, const char *spec, const char *option, int64_t row0,
                    int64_t nrows, int64_t cols, double *buf, int allow_nan)
{
    quiet_hdf5();
    char file[GF_PATH_MAX];
    const char *dpath = NULL;
    int rc = split_spec(spec, option, file, sizeof file, &dpath); /* same on all ranks */
    if (rc)
        return gf_par_agree(par, rc);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, gf_par_world(par), MPI_INFO_NULL);
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    hid_t ds = f < 0 ? -1 : H5Dopen2(f, dpath, H5P_DEFAULT);
    if (ds < 0)
        rc = gf_error(GF_EIO, "%s: cannot open '%s' in '%s' for reading", option, dpath, file);
    if (!(rc = gf_par_agree(par, rc))) {
        hid_t fs = H5Dget_space(ds), ms;
        if (nrows > 0 && cols > 0) {
            hsize_t start[2] = {(hsize_t)row0, 0}, count[2] = {(hsize_t)nrows, (hsize_t)cols};
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
            ms = H5Screate_simple(2, count, NULL);
        } else {
            hsize_t one = 1;
            ms = H5Screate_simple(1, &one, NULL);
            H5Sselect_none(ms);
            H5Sselect_none(fs);
        }
        hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
        H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
        if (H5Dread(ds, H5T_NATIVE_DOUBLE, ms, fs, dxpl, buf) < 0)
            rc = gf_error(GF_EIO, "%s: reading '%s' from '%s' failed", option, dpath, file);
        H5Pclose(dxpl);
        H5Sclose(ms);
        H5Sclose(fs);
        for (int64_t k = 0; !rc && k < nrows * cols; ++k)
            if (!isfinite(buf[k]) && !(allow_nan && isnan(buf[k])))
                rc = gf_error(GF_EDATA, "%s: entry [%lld][%lld] of '%s' is %g; entries must be finite%s",
                              option, (long long)(row0 + k / cols), (long long)(k % cols), dpath,
                              buf[k], allow_nan ? " or NaN" : "");
    }
    if (ds >= 0)
        H5Dclose(ds);
    if (f >= 0)
        H5Fclose(f);
    return gf_par_agree(par, rc);
}

/* ---- the flow tensor (SPEC §3-4, /flow and /lag) ---- */

/* Writes len bytes at off; 0 or an errno. */
static int pwrite_all(int fd, const char *p, int64_t len, int64_t off)
{
    while (len > 0) {
        const size_t piece = len > ((int64_t)1 << 30) ? (size_t)1 << 30 : (size_t)len;
        const ssize_t k = pwrite(fd, p, piece, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? errno : EIO;
        p += k;
        len -= k;
        off += k;
    }
    return 0;
}

/* One staged slab to the file: a lag's rows are contiguous there, and the
 * whole slab is when this rank holds every row. */
static int write_stage(int fd, const Stage *st)
{
    const char *p = (const char *)st->data;
    if (st->lag_bytes == st->stride)
        return pwrite_all(fd, p, st->nlags * st->lag_bytes, st->offset);
    int e = 0;
    for (int64_t l = 0; l < st->nlags && !e; ++l)
        e = pwrite_all(fd, p + l * st->lag_bytes, st->lag_bytes, st->offset + l * st->stride);
    return e;
}

static void start_writeback(const Writer *w)
{
#ifdef SYNC_FILE_RANGE_WRITE
    (void)sync_file_range(w->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#else
    (void)w;
#endif
}

/* Counts written bytes (lock held, or no thread); every 32 MiB a write-back is due. */
static int writeback_due(Writer *w, int64_t bytes)
{
    w->unsynced += bytes;
    if (w->unsynced < ((int64_t)32 << 20))
        return 0;
    w->unsynced = 0;
    return 1;
}

/* The writer's lock, a no-op without the thread (nothing else then runs). */
static void writer_lock(Writer *w)
{
    if (w->threaded)
        pthread_mutex_lock(&w->lock);
}

static void writer_unlock(Writer *w)
{
    if (w->threaded)
        pthread_mutex_unlock(&w->lock);
}

static void *writer_main(void *arg)
{
    Writer *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        const int k = w->stage[0].busy ? 0 : w->stage[1].busy ? 1 : -1;
        if (k < 0 && !w->sync_wanted) {
            if (w->quit)
                break;
            pthread_cond_wait(&w->wake, &w->lock);
            continue;
        }
        const int sync = k < 0, failed = w->err != 0; /* after a failure nothing more is written */
        if (sync)
            w->sync_wanted = 0;
        pthread_mutex_unlock(&w->lock);
        const int e = k >= 0 && !failed ? write_stage(w->fd, &w->stage[k]) : 0;
        if (sync)
            start_writeback(w);
        pthread_mutex_lock(&w->lock);
        if (k >= 0) {
            w->stage[k].busy = 0;
            if (e && !w->err)
                w->err = e;
            if (writeback_due(w, w->stage[k].nlags * w->stage[k].lag_bytes))
                w->sync_wanted = 1;
            pthread_cond_broadcast(&w->idle);
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Local.  Opens the .partial for this rank's writes and starts the thread
 * (in line without one when MPI or pthreads will not have it).  fd stays -1
 * when open(2) fails: no direct writes, no write-back. */
static void writer_open(GfH5Out *h)
{
    Writer *w = &h->wr;
    w->fd = open(h->partial, O_WRONLY | O_CLOEXEC);
    if (w->fd < 0)
        return;
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    w->threaded = level >= MPI_THREAD_FUNNELED && !pthread_mutex_init(&w->lock, NULL);
    if (w->threaded && pthread_cond_init(&w->wake, NULL)) {
        pthread_mutex_destroy(&w->lock);
        w->threaded = 0;
    }
    if (w->threaded && pthread_cond_init(&w->idle, NULL)) {
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        w->threaded = 0;
    }
    if (w->threaded && pthread_create(&w->thread, NULL, writer_main, w)) {
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->idle);
        pthread_mutex_destroy(&w->lock);
        w->threaded = 0;
    }
}

/* Local.  Waits until the staged slabs are written; with sync, also until
 * they are on disk.  Returns the first write error (an errno) or 0. */
static int writer_drain(Writer *w, int sync)
{
    writer_lock(w);
    while (w->stage[0].busy || w->stage[1].busy) /* never busy without the thread */
        pthread_cond_wait(&w->idle, &w->lock);
    int e = w->err;
    writer_unlock(w);
    if (!e && sync && w->direct && fdatasync(w->fd) != 0) {
        e = errno;
        writer_lock(w);
        w->err = e;
        writer_unlock(w);
    }
    return e;
}

/* Local.  The first write error so far (an errno) or 0, without waiting. */
static int writer_error(Writer *w)
{
    writer_lock(w);
    const int e = w->err;
    writer_unlock(w);
    return e;
}

/* Local.  Stages nlags lags of this rank's rows for dataset k (0 G, 1 J);
 * waits while its previous slab is still being written.  0 or an errno. */
static int writer_submit(Writer *w, int k, const double *buf, int64_t offset, int64_t nlags,
                         int64_t lag_bytes, int64_t stride)
{
    Stage *st = &w->stage[k];
    writer_lock(w);
    while (st->busy) /* never busy without the thread */
        pthread_cond_wait(&w->idle, &w->lock);
    int e = w->err;
    writer_unlock(w);
    const int64_t count = nlags * lag_bytes / (int64_t)sizeof(double);
    if (!e && count > st->cap) {
        free(st->data); /* the thread is not using it: not busy */
        st->data = malloc((size_t)count * sizeof(double));
        st->cap = st->data ? count : 0;
        e = st->data ? 0 : ENOMEM;
    }
    if (e)
        return e;
    memcpy(st->data, buf, (size_t)count * sizeof(double));
    st->offset = offset;
    st->nlags = nlags;
    st->lag_bytes = lag_bytes;
    st->stride = stride;
    if (!w->threaded) {
        e = w->err = write_stage(w->fd, st);
        if (!e && writeback_due(w, nlags * lag_bytes))
            start_writeback(w);
        return e;
    }
    pthread_mutex_lock(&w->lock);
    st->busy = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

/* Local.  After an H5Dwrite of bytes (the MPI-IO path): asks for write-back every 32 MiB. */
static void writer_wrote(Writer *w, int64_t bytes)
{
    if (w->fd < 0)
        return;
    writer_lock(w);
    if (writeback_due(w, bytes)) {
        if (w->threaded) {
            w->sync_wanted = 1;
            pthread_cond_signal(&w->wake);
        } else {
            start_writeback(w);
        }
    }
    writer_unlock(w);
}

/* Local.  Ends the thread (after its current slab), frees the stages, closes the descriptor. */
static void writer_stop(Writer *w)
{
    if (w->threaded) {
        pthread_mutex_lock(&w->lock);
        w->quit = 1;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->idle);
        pthread_mutex_destroy(&w->lock);
        w->threaded = 0;
    }
    for (int k = 0; k < 2; ++k) {
        free(w->stage[k].data);
        w->stage[k].data = NULL;
        w->stage[k].cap = 0;
    }
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    w->direct = 0;
}

int gf_h5_check_tensor_io(void)
{
    const char *io = getenv("GRADFLOW_TENSOR_IO");
    if (io && *io && strcmp(io, "posix") && strcmp(io, "mpiio"))
        return gf_error(GF_EUSAGE, "GRADFLOW_TENSOR_IO='%s': must be 'posix' (the default: each rank "
                                   "writes its rows with pwrite) or 'mpiio' (through HDF5's MPI-IO "
                                   "driver)", io);
    return GF_OK;
}

/* Collective.  Chooses how the tensor is written (see Writer) and starts the
 * writer; every rank makes the same choice. */
static void tensor_writer_start(GfH5Out *h)
{
    Writer *w = &h->wr;
    const char *io = getenv("GRADFLOW_TENSOR_IO");
    /* the thread writes native doubles where the file says IEEE little-endian */
    int usable = !(io && !strcmp(io, "mpiio")) && H5Tequal(H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE) > 0;
    hsize_t userblock = 1;
    hid_t fcpl = H5Fget_create_plist(h->file);
    usable = usable && fcpl >= 0 && H5Pget_userblock(fcpl, &userblock) >= 0 && userblock == 0;
    if (fcpl >= 0)
        H5Pclose(fcpl);
    const hid_t dsets[2] = {h->G, h->J};
    for (int k = 0; k < 2; ++k) {
        if (dsets[k] < 0)
            continue;
        hid_t dcpl = H5Dget_create_plist(dsets[k]);
        H5D_space_status_t status = H5D_SPACE_STATUS_ERROR;
        usable = usable && dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CONTIGUOUS &&
                 H5Pget_nfilters(dcpl) == 0 && H5Dget_space_status(dsets[k], &status) >= 0 &&
                 status == H5D_SPACE_STATUS_ALLOCATED;
        const haddr_t addr = usable ? H5Dget_offset(dsets[k]) : HADDR_UNDEF;
        usable = usable && addr != HADDR_UNDEF && addr < (haddr_t)INT64_MAX;
        w->base[k] = usable ? (int64_t)addr : -1;
        if (dcpl >= 0)
            H5Pclose(dcpl);
    }
    writer_open(h);
    w->direct = !gf_par_any(h->par, !usable || w->fd < 0);
}

/* The sink: this rank's slab of lags x V rows x K of one target, collective. */
static int put_flow(void *ctx, int64_t target, int64_t lag0, int64_t nlags, int64_t va0, int64_t nva,
                    const double *G, const double *J)
{
    GfH5Out *h = ctx;
    Writer *w = &h->wr;
    int rc = GF_OK;
    const hid_t dsets[2] = {h->G, h->J};
    const double *bufs[2] = {G, J};
    const int64_t nk = h->flow->n_k, nv = h->flow->n_v, L1 = h->flow->max_lag + 1;
    const int64_t row = nk * (int64_t)sizeof(double);
    for (int k = 0; k < 2 && !rc; ++k) {
        if (dsets[k] < 0)
            continue;
        const int some = target >= 0 && nlags > 0 && nva > 0;
        if (w->direct) { /* entry [i][L][a][b] at base + (((i (L+1) + L) N_v + a) N_k + b) 8 */
            const int e = some ? writer_submit(w, k, bufs[k], w->base[k] + ((target * L1 + lag0) * nv + va0) * row,
                                               nlags, nva * row, nv * row)
                               : writer_error(w);
            if (e)
                rc = gf_error(e == ENOMEM ? GF_ENOMEM : GF_EIO, "%s: writing /flow/%s failed: %s%s", h->partial,
                              k ? "J" : "G", strerror(e), e == ENOMEM ? "" : " (disk full or file system error?)");
            continue;
        }
        hid_t fs = H5Dget_space(dsets[k]), ms;
        if (some) {
            const hsize_t start[4] = {(hsize_t)target, (hsize_t)lag0, (hsize_t)va0, 0};
            const hsize_t count[4] = {1, (hsize_t)nlags, (hsize_t)nva, (hsize_t)nk};
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
            ms = H5Screate_simple(4, count, NULL);
        } else {
            const hsize_t one = 1;
            ms = H5Screate_simple(1, &one, NULL);
            H5Sselect_none(ms);
            H5Sselect_none(fs);
        }
        if (H5Dwrite(dsets[k], H5T_NATIVE_DOUBLE, ms, fs, h->dxpl_tensor, bufs[k]) < 0)
            rc = gf_error(GF_EIO, "%s: writing /flow/%s failed (disk full or file system error?)",
                          h->partial, k ? "J" : "G");
        if (some)
            writer_wrote(w, nlags * nva * row);
        H5Sclose(ms);
        H5Sclose(fs);
    }
    return gf_par_agree(h->par, rc);
}

int gf_h5_flow_begin(GfH5Out *h, const GfFlowSpec *spec, GfFlowSink *sink)
{
    h->flow = spec;
    int rc = GF_OK;
    hid_t g = group(h, "flow", "gradient flow G(s,t) = d delta(s) / d delta(t) (SPEC §3-4); "
                                "G[i][L][a][b] = d delta_{units_v[a]}(t_i - L) / d delta_{units_k[b]}(t_i)");
    if (g < 0)
        return gf_par_agree(h->par, GF_EIO);
    const Axis ax[4] = {AX_TARGET, AX_LAG, AX_UNITS_V, AX_UNITS_K};
    for (int k = 0; k < 4 && !rc; ++k) { /* the axes themselves are datasets of SPEC §6 */
        hid_t sc = scale_of(h, g, ax[k]);
        rc = sc < 0 ? gf_error(GF_EIO, "%s: cannot write /flow/%s", h->partial, axis_dsets[ax[k]]) : GF_OK;
        if (sc >= 0)
            H5Dclose(sc);
    }
    if (!rc && spec->tensor) { /* contiguous: see the tensor writer above */
        h->G = create_ds(h, g, "G", H5T_IEEE_F64LE, 4, ax,
                         "G[i][L][a][b] = d delta_{v_a}(t_i - L) / d delta_{k_b}(t_i); NaN where "
                         "t_i - L < 1; entries may under/overflow (see log10_norm_*)");
        rc = h->G < 0 ? GF_EIO : GF_OK;
        if (!rc && spec->jacobian) {
            h->J = create_ds(h, g, "J", H5T_IEEE_F64LE, 4, ax,
                             "state Jacobian J[i][L][a][b] = d a_{k_b}(t_i) / d a_{v_a}(t_i - L) "
                             "(J(t,s) = F'(t) W ... F'(s+1) W, transposed to G's layout); NaN "
                             "where t_i - L < 1");
            rc = h->J < 0 ? GF_EIO : GF_OK;
        }
    }
    H5Gclose(g);
    sink->ctx = h;
    sink->put = put_flow;
    rc = gf_par_agree(h->par, rc);
    if (!rc && spec->tensor)
        tensor_writer_start(h);
    return rc;
}

int gf_h5_flow_reopen(GfH5Out *h, const GfFlowSpec *spec, GfFlowSink *sink)
{
    h->flow = spec;
    int rc = GF_OK;
    if (spec->tensor) {
        h->G = H5Dopen2(h->file, "/flow/G", H5P_DEFAULT);
        h->J = spec->jacobian ? H5Dopen2(h->file, "/flow/J", H5P_DEFAULT) : -1;
        hid_t sp = h->G < 0 ? -1 : H5Dget_space(h->G);
        hsize_t d[4] = {0, 0, 0, 0};
        if (h->G < 0 || (spec->jacobian && h->J < 0) || sp < 0 || H5Sget_simple_extent_ndims(sp) != 4 ||
            H5Sget_simple_extent_dims(sp, d, NULL) < 0 || d[0] != (hsize_t)spec->n_t ||
            d[1] != (hsize_t)(spec->max_lag + 1) || d[2] != (hsize_t)spec->n_v || d[3] != (hsize_t)spec->n_k)
            rc = gf_error(GF_EDATA, "--resume: '%s' has no /flow/G of this run's shape", h->partial);
        if (sp >= 0)
            H5Sclose(sp);
    }
    sink->ctx = h;
    sink->put = put_flow;
    rc = gf_par_agree(h->par, rc);
    if (!rc && spec->tensor)
        tensor_writer_start(h);
    return rc;
}

/* Collective.  Waits for this rank's tensor writes (and, with sync, for
 * the disk); agreed status. */
static int tensor_drain(GfH5Out *h, int sync)
{
    const int e = writer_drain(&h->wr, sync);
    const int rc = e ? gf_error(GF_EIO, "%s: writing the flow tensor failed: %s (disk full or file "
                                        "system error?)", h->partial, strerror(e)) : GF_OK;
    return gf_par_agree(h->par, rc);
}

int gf_h5_flow_end(GfH5Out *h, const GfFlowSpec *spec, const GfFlowResult *res)
{
    /* synced, not only written: the HDF5 writes that follow may read-modify-write
     * blocks next to the tensor through MPI-IO, which must find it on the file
     * server (file systems without coherent caches across nodes, e.g. NFS) */
    if (spec->tensor && tensor_drain(h, 1))
        return GF_EIO;
    if (h->G >= 0)
        H5Dclose(h->G);
    if (h->J >= 0)
        H5Dclose(h->J);
    h->G = h->J = -1;
    const int root = gf_par_rank(h->par) == 0;
    const int64_t nt = spec->n_t, nl = spec->max_lag + 1;
    hid_t g = H5Gopen2(h->file, "flow", H5P_DEFAULT);
    int rc = g < 0 ? gf_error(GF_EIO, "%s: cannot reopen /flow", h->partial) : GF_OK;
    struct { const char *name; const double *data; const char *desc; } norms[] = {
        {"log10_norm_fro", res->log10_fro, "exact log10 ||G(t_i-L, t_i)[V,K]||_F (NaN where t_i-L < 1, "
                                           "-inf where G is exactly 0)"},
        {"log10_norm_max", res->log10_max, "exact log10 of the largest |G(t_i-L, t_i)[v,k]| over V, K"},
        {"log10_bound", res->log10_bound, "log10 of n (f'max ||W||_A)^L, f'max the activation's "
                                          "theoretical maximum, ||W||_A = max_i sum_j |w_ij|"},
        {"log10_bound_measured", res->log10_bound_measured,
         "log10 of n (f'max ||W||_A)^L with f'max measured over the run, max f'_i(net_i(tau))"},
        {"J_log10_norm_fro", res->J_log10_fro, "exact log10 ||J(t_i, t_i-L)^T[V,K]||_F"},
        {"J_log10_norm_max", res->J_log10_max, "exact log10 of the largest |J(t_i, t_i-L)[k,v]|"},
    };
    const Axis ax2[2] = {AX_TARGET, AX_LAG};
    const int count = spec->jacobian ? 6 : 4;
    for (int k = 0; k < count && !rc; ++k)
        rc = put_f64(h, g, norms[k].name, 2, ax2[0], ax2[1], norms[k].desc, 0, nt, 0, nl, nl,
                     norms[k].data, root);
    struct { const char *name; double v; } attrs[] = {
        {"norm_A", res->norm_A}, {"norm_A_columns", res->norm_A_columns}, {"w_max", res->w_max},
        {"lambda", res->lambda}, {"fprime_max_theory", res->fprime_max_theory},
        {"fprime_max_measured", res->fprime_max_measured}};
    for (size_t k = 0; k < sizeof attrs / sizeof attrs[0] && !rc; ++k)
        rc = attr_f64(g, attrs[k].name, attrs[k].v);
    rc = rc ? rc : attr_i64(g, "state_jacobian", spec->jacobian);
    rc = rc ? rc : attr_i64(g, "tensor_written", spec->tensor);
    if (g >= 0)
        H5Gclose(g);
    if ((rc = gf_par_agree(h->par, rc)))
        return rc;

    g = group(h, "lag", "per-lag share of the gradient: the lag-L term of dE(t_i)/dW is "
                        "delta^(t_i)(t_i-L) a(t_i-L-1)^T with delta^(t) = G(., t) F'(t) e(t)");
    if (g < 0)
        return gf_par_agree(h->par, GF_EIO);
    rc = put_f64(h, g, "contribution", 2, AX_TARGET, AX_LAG,
                 "||delta^(t_i)(t_i-L)||_2 ||a(t_i-L-1)||_2, the Frobenius norm of the lag-L term "
                 "of dE(t_i)/dW (NaN where t_i-L < 1; may underflow to 0, see log10_contribution)",
                 0, nt, 0, nl, nl, res->contribution, root);
    rc = rc ? rc : put_f64(h, g, "log10_contribution", 2, AX_TARGET, AX_LAG,
                           "exact log10 of contribution, kept in log space", 0, nt, 0, nl, nl,
                           res->log10_contribution, root);
    H5Gclose(g);
    return gf_par_agree(h->par, rc);
}

/* ---- training (/train) ---- */

int gf_h5_write_train(GfH5Out *h, const GfModel *mo, const GfTrainSpec *spec, const GfTrainLog *log)
{
    const int root = gf_par_rank(h->par) == 0, g0 = gf_par_time_rank(h->par) == 0;
    const int64_t n = mo->n, m = mo->m, nl = mo->n_local, lo = mo->lo, T = mo->T;
    h->epochs = log->epochs;
    hid_t g = group(h, "train", "training on a long-time-lag task: per-epoch curves, the final "
                                "weights, success (README, section Training)");
    if (g < 0)
        return gf_par_agree(h->par, GF_EIO);
    int rc = attr_str(g, "task", gf_task_name(spec->task.kind));
    rc = rc ? rc : attr_str(g, "method", spec->method == GF_METHOD_GUESS ? "guess" : "bptt");
    rc = rc ? rc : attr_i64(g, "lag", spec->task.lag);
    rc = rc ? rc : attr_i64(g, "T", T);
    rc = rc ? rc : attr_f64(g, "threshold", spec->task.threshold);
    rc = rc ? rc : attr_i64(g, "success", log->success);
    rc = rc ? rc : attr_i64(g, "success_at", log->success_at);
    rc = rc ? rc : attr_i64(g, "epochs", log->epochs);
    rc = rc ? rc : attr_i64(g, "guesses", log->guesses);
    rc = rc ? rc : attr_f64(g, "final_test_error", log->final_test_error);
    if (!rc && log->epochs > 0) {
        const int64_t E = log->epochs;
        rc = put_f64(h, g, "loss", 1, AX_EPOCH, AX_EPOCH, "mean E per training sequence over the epoch",
                     0, E, 0, 1, 1, log->loss, root);
        rc = rc ? rc : put_f64(h, g, "grad_norm", 1, AX_EPOCH, AX_EPOCH,
                               "mean over the epoch's batches of ||dE/dW||_F of the batch-mean gradient",
                               0, E, 0, 1, 1, log->grad_norm, root);
        rc = rc ? rc : put_f64(h, g, "test_error", 1, AX_EPOCH, AX_EPOCH,
                               "max |a(T) - d(T)| over the test set after the epoch", 0, E, 0, 1, 1,
                               log->test_error, root);
        rc = rc ? rc : put_f64(h, g, "log10_lag_share", 2, AX_EPOCH, AX_TRAIN_LAG,
                               "log10 of the mean over the epoch's sequences of ||delta(T-L)||_2 "
                               "||a(T-L-1)||_2, the lag-L share of dE/dW (SPEC §4)",
                               0, E, 0, T, T, log->lag_share, root);
        rc = rc ? rc : put_f64(h, g, "log10_flow", 2, AX_EPOCH, AX_TRAIN_LAG,
                               "exact log10 ||G(T-L, T)[:, out]||_2 from the output unit, on test "
                               "sequence 0 after the epoch", 0, E, 0, T, T, log->flow, root);
    }
    rc = rc ? rc : put_f64(h, g, "W", 2, AX_UNIT, AX_UNIT, "the final recurrent weights", lo, nl, 0, n, n,
                           mo->W, g0);
    rc = rc ? rc : put_f64(h, g, "U", 2, AX_UNIT, AX_INPUT, "the final input weights", lo, nl, 0, m, m,
                           mo->U, g0);
    rc = rc ? rc : put_f64(h, g, "b", 1, AX_UNIT, AX_UNIT, "the final biases", lo, nl, 0, 1, 1, mo->b, g0);
    H5Gclose(g);
    return gf_par_agree(h->par, rc);
}

int gf_h5_write_sweep(GfH5Out *h, const GfTrainSpec *spec, const int64_t *lags, int64_t n_lags,
                      int64_t trials, const double *success, const double *at, const double *error)
{
    const int root = gf_par_rank(h->par) == 0;
    h->sweep_lags = lags;
    h->n_sweep = n_lags;
    h->trials = trials;
    hid_t t = group(h, "train", "a sweep of training runs over the task's lag (README, section Training)");
    int rc0 = t < 0 ? GF_EIO : attr_str(t, "task", gf_task_name(spec->task.kind));
    rc0 = rc0 ? rc0 : attr_str(t, "method", spec->method == GF_METHOD_GUESS ? "guess" : "bptt");
    rc0 = rc0 ? rc0 : attr_f64(t, "threshold", spec->task.threshold);
    if (t >= 0)
        H5Gclose(t);
    if ((rc0 = gf_par_agree(h->par, rc0)))
        return rc0;
    hid_t g = group(h, "train/sweep", "success against lag: every (lag, trial) is one training run");
    if (g < 0)
        return gf_par_agree(h->par, GF_EIO);
    double *rate = calloc((size_t)n_lags, sizeof(double));
    int rc = rate ? GF_OK : gf_error(GF_ENOMEM, "out of memory");
    for (int64_t k = 0; rate && k < n_lags * trials; ++k)
        rate[k / trials] += success[k] / (double)trials;
    rc = rc ? rc : put_f64(h, g, "success", 2, AX_SWEEP_LAG, AX_TRIAL, "1 where the trial solved the task",
                           0, n_lags, 0, trials, trials, success, root);
    rc = rc ? rc : put_f64(h, g, "success_at", 2, AX_SWEEP_LAG, AX_TRIAL,
                           "the epoch (bptt) or guess (guess) that solved it, -1 if none", 0, n_lags, 0,
                           trials, trials, at, root);
    rc = rc ? rc : put_f64(h, g, "final_test_error", 2, AX_SWEEP_LAG, AX_TRIAL,
                           "max |a(T) - d(T)| over the test set at the end", 0, n_lags, 0, trials,
                           trials, error, root);
    rc = rc ? rc : put_f64(h, g, "success_rate", 1, AX_SWEEP_LAG, AX_SWEEP_LAG,
                           "fraction of trials that solved the task", 0, n_lags, 0, 1, 1, rate, root);
    free(rate);
    H5Gclose(g);
    return gf_par_agree(h->par, rc);
}

/* ---- training checkpoints ---- */

int gf_h5_write_velocity(GfH5Out *h, const GfModel *mo, const GfTrainLog *log)
{
    const int64_t n = mo->n, m = mo->m, nl = mo->n_local, lo = mo->lo;
    const int g0 = gf_par_time_rank(h->par) == 0;
    hid_t g = group(h, "checkpoint", "state to resume training: momentum of W, U, b (train/ holds the "
                                     "curves so far, model/ the current weights)");
    if (g < 0)
        return gf_par_agree(h->par, GF_EIO);
    const double *v = log->velocity;
    int rc = attr_i64(g, "epochs", log->epochs);
    rc = rc ? rc : put_f64(h, g, "vW", 2, AX_UNIT, AX_UNIT, "momentum of W", lo, nl, 0, n, n, v, g0);
    rc = rc ? rc : put_f64(h, g, "vU", 2, AX_UNIT, AX_INPUT, "momentum of U", lo, nl, 0, m, m, v + nl * n, g0);
    rc = rc ? rc : put_f64(h, g, "vb", 1, AX_UNIT, AX_UNIT, "momentum of b", lo, nl, 0, 1, 1,
                           v + nl * n + nl * m, g0);
    H5Gclose(g);
    return gf_par_agree(h->par, rc);
}

/* Reads rows [r0, r0+nr) x all columns of a 1-D or 2-D float dataset into buf,
 * which holds cols columns: a 2-D dataset of another width is an error. */
static int read_block_cols(hid_t f, const char *path, int64_t r0, int64_t nr, int64_t cols, double *buf);

static int read_block(hid_t f, const char *path, int64_t r0, int64_t nr, double *buf)
{
    return read_block_cols(f, path, r0, nr, -1, buf);
}

static int read_block_cols(hid_t f, const char *path, int64_t r0, int64_t nr, int64_t cols, double *buf)
{
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0)
        return -1;
    hid_t fs = H5Dget_space(ds);
    hsize_t dims[2] = {0, 1};
    const int rank = H5Sget_simple_extent_ndims(fs);
    H5Sget_simple_extent_dims(fs, dims, NULL);
    int rc = 0;
    if (rank < 1 || rank > 2 || (hsize_t)(r0 + nr) > dims[0] ||
        (cols >= 0 && (rank == 2 ? (int64_t)dims[1] : 1) != cols)) {
        rc = -1;
    } else if (nr > 0 && (rank == 1 || dims[1] > 0)) {
        hsize_t start[2] = {(hsize_t)r0, 0}, count[2] = {(hsize_t)nr, rank == 2 ? dims[1] : 1};
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
        hid_t ms = H5Screate_simple(rank, count, NULL);
        rc = H5Dread(ds, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, buf) < 0 ? -1 : 0;
        H5Sclose(ms);
    }
    H5Sclose(fs);
    H5Dclose(ds);
    return rc;
}

static int read_attr_i64(hid_t obj, const char *name, int64_t *v)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    int rc = a < 0 || H5Aread(a, H5T_NATIVE_INT64, v) < 0 ? -1 : 0;
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

/* Local.  Opens a checkpoint read-only (the default driver: no collective
 * step; every rank reads what it needs, a checkpoint is small next to W),
 * checks complete = 1 and reads its resolved INI into *ini (malloc'ed).  On
 * error records a message; *f may still need closing. */
static int open_checkpoint(const char *path, hid_t *f, char **ini)
{
    quiet_hdf5();
    *ini = NULL;
    int rc = GF_OK;
    int64_t complete = 0;
    const int readable = access(path, R_OK) == 0;
    const int corrupt = readable ? parse_in_child(path, "/config/ini", "--resume") : GF_OK;
    *f = readable && !corrupt ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    if (corrupt)
        rc = corrupt;
    else if (*f < 0)
        rc = gf_error(GF_EIO, "--resume: cannot read the checkpoint '%s' (no such file, or not HDF5); "
                              "it is written by --checkpoint-every or when a run is stopped", path);
    else if (read_attr_i64(*f, "complete", &complete) || complete != 1)
        rc = gf_error(GF_EDATA, "--resume: the checkpoint '%s' is incomplete", path);
    if (!rc) {
        hid_t ds = H5Dopen2(*f, "/config/ini", H5P_DEFAULT);
        hid_t t = ds < 0 ? -1 : H5Dget_type(ds);
        size_t len = t < 0 ? 0 : H5Tget_size(t);
        *ini = len ? calloc(len + 1, 1) : NULL;
        if (!*ini || H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, *ini) < 0)
            rc = gf_error(GF_EDATA, "--resume: '%s' has no readable /config/ini", path);
        if (t >= 0)
            H5Tclose(t);
        if (ds >= 0)
            H5Dclose(ds);
    }
    return rc;
}

/* Collective: closes a checkpoint opened by open_checkpoint, agrees on rc,
 * and on failure frees the INI text. */
static int close_checkpoint(const GfPar *par, hid_t f, char **ini, int rc)
{
    if (f >= 0)
        H5Fclose(f);
    rc = gf_par_agree(par, rc);
    if (rc) {
        free(*ini);
        *ini = NULL;
    }
    return rc;
}

int gf_h5_read_checkpoint(const GfPar *par, const char *path, char **ini, GfModel *mo, GfTrainLog *log)
{
    hid_t f = -1;
    int rc = open_checkpoint(path, &f, ini);
    const int64_t n = mo->n, m = mo->m, nl = mo->n_local, lo = mo->lo, T = mo->T;
    if (!rc) {
        hid_t g = H5Gopen2(f, "/train", H5P_DEFAULT), c = H5Gopen2(f, "/checkpoint", H5P_DEFAULT);
        double fte = 0;
        hid_t a = g < 0 ? -1 : H5Aopen(g, "final_test_error", H5P_DEFAULT);
        int bad = g < 0 || c < 0 || read_attr_i64(c, "epochs", &log->epochs) ||
                  read_attr_i64(g, "success", &log->success) ||
                  read_attr_i64(g, "success_at", &log->success_at) || a < 0 ||
                  H5Aread(a, H5T_NATIVE_DOUBLE, &fte) < 0 || log->epochs > log->capacity;
        log->final_test_error = fte;
        if (a >= 0)
            H5Aclose(a);
        const int64_t E = log->epochs;
        log->velocity_len = nl * n + nl * m + nl;
        free(log->velocity);
        log->velocity = calloc((size_t)(log->velocity_len ? log->velocity_len : 1), sizeof(double));
        bad = bad || !log->velocity;
        /* every read checks the width against this run's sizes before it writes */
        if (!bad && E > 0)
            bad = read_block_cols(f, "/train/loss", 0, E, 1, log->loss) ||
                  read_block_cols(f, "/train/grad_norm", 0, E, 1, log->grad_norm) ||
                  read_block_cols(f, "/train/test_error", 0, E, 1, log->test_error) ||
                  read_block_cols(f, "/train/log10_lag_share", 0, E, T, log->lag_share) ||
                  read_block_cols(f, "/train/log10_flow", 0, E, T, log->flow);
        bad = bad || read_block_cols(f, "/model/W", lo, nl, n, mo->W) ||
              read_block_cols(f, "/model/b", lo, nl, 1, mo->b) ||
              (m > 0 && read_block_cols(f, "/model/U", lo, nl, m, mo->U)) ||
              read_block_cols(f, "/checkpoint/vW", lo, nl, n, log->velocity) ||
              (m > 0 && read_block_cols(f, "/checkpoint/vU", lo, nl, m, log->velocity + nl * n)) ||
              read_block_cols(f, "/checkpoint/vb", lo, nl, 1, log->velocity + nl * n + nl * m);
        if (bad)
            rc = gf_error(GF_EDATA, "--resume: '%s' is not a training checkpoint of this run's sizes", path);
        if (g >= 0)
            H5Gclose(g);
        if (c >= 0)
            H5Gclose(c);
    }
    return close_checkpoint(par, f, ini, rc);
}

int gf_h5_write_sweep_done(GfH5Out *h, const double *done)
{
    hid_t g = group(h, "checkpoint", "state to resume a sweep: which (lag, trial) cells are done");
    if (g < 0)
        return gf_par_agree(h->par, GF_EIO);
    const int64_t NL = h->n_sweep, K = h->trials;
    int rc = put_f64(h, g, "done", 2, AX_SWEEP_LAG, AX_TRIAL, "1 where the cell has run", 0, NL, 0, K, K,
                     done, gf_par_rank(h->par) == 0);
    H5Gclose(g);
    return gf_par_agree(h->par, rc);
}

/* 1 unless ds is a 1-D dataset of exactly len entries. */
static int wrong_shape1(hid_t ds, int64_t len)
{
    hid_t sp = H5Dget_space(ds);
    hsize_t d = 0;
    const int bad = sp < 0 || H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_dims(sp, &d, NULL) < 0 ||
                    d != (hsize_t)len;
    if (sp >= 0)
        H5Sclose(sp);
    return bad;
}

/* 1 unless path in f is a 2-D dataset of exactly rows x cols. */
static int wrong_shape(hid_t f, const char *path, int64_t rows, int64_t cols)
{
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0)
        return 1;
    hid_t sp = H5Dget_space(ds);
    hsize_t d[2] = {0, 0};
    const int bad = H5Sget_simple_extent_ndims(sp) != 2 || H5Sget_simple_extent_dims(sp, d, NULL) < 0 ||
                    d[0] != (hsize_t)rows || d[1] != (hsize_t)cols;
    H5Sclose(sp);
    H5Dclose(ds);
    return bad;
}

int gf_h5_read_sweep_checkpoint(const GfPar *par, const char *path, char **ini, int64_t n_lags,
                                int64_t trials, double *out)
{
    hid_t f = -1;
    int rc = open_checkpoint(path, &f, ini);
    const char *const names[4] = {"/train/sweep/success", "/train/sweep/success_at",
                                  "/train/sweep/final_test_error", "/checkpoint/done"};
    const int64_t cells = n_lags * trials;
    for (int k = 0; !rc && k < 4; ++k)
        if (wrong_shape(f, names[k], n_lags, trials) || read_block(f, names[k], 0, n_lags, out + k * cells))
            rc = gf_error(GF_EDATA, "--resume: '%s' is not a checkpoint of this sweep (%s)", path, names[k]);
    return close_checkpoint(par, f, ini, rc);
}

/* ---- checkpoints of a simulation's flow ---- */

int gf_h5_write_flow_checkpoint(GfH5Out *h, const GfFlowSpec *spec, int64_t round, const double *done,
                                const double *const *norms, int count)
{
    h->flow = spec;
    hid_t g = group(h, "checkpoint", "state to resume a simulation: which flow targets are finished "
                                     "(their tensor is in OUTPUT.partial) and their norms");
    if (g < 0)
        return gf_par_agree(h->par, GF_EIO);
    const int root = gf_par_rank(h->par) == 0;
    const int64_t nt = spec->n_t, nl = spec->max_lag + 1;
    int rc = attr_str(g, "kind", "flow");
    rc = rc ? rc : attr_i64(g, "round", round);
    rc = rc ? rc : put_f64(h, g, "done", 1, AX_TARGET, AX_TARGET, "1 where the target is finished", 0, nt,
                           0, 1, 1, done, root);
    for (int k = 0; k < count && !rc; ++k)
        rc = put_f64(h, g, flow_checkpoint_names[k], 2, AX_TARGET, AX_LAG,
                     "the finished targets' rows of the /flow array of this name", 0, nt, 0, nl, nl,
                     norms[k], root);
    H5Gclose(g);
    return gf_par_agree(h->par, rc);
}

int gf_h5_read_flow_checkpoint(const GfPar *par, const char *path, char **ini, const GfFlowSpec *spec,
                               double *done, double *const *norms, int count)
{
    hid_t f = -1;
    int rc = open_checkpoint(path, &f, ini);
    const int64_t nt = spec->n_t, nl = spec->max_lag + 1;
    if (!rc) {
        int64_t *targets = gf_calloc((size_t)(nt ? nt : 1), sizeof(int64_t), "checkpoint targets");
        hid_t ds = H5Dopen2(f, "/checkpoint/targets", H5P_DEFAULT);
        int bad = !targets || ds < 0 || wrong_shape1(ds, nt) ||
                  H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, targets) < 0;
        for (int64_t i = 0; !bad && i < nt; ++i)
            bad = targets[i] != spec->targets[i];
        if (ds >= 0)
            H5Dclose(ds);
        free(targets);
        ds = H5Dopen2(f, "/checkpoint/done", H5P_DEFAULT);
        bad = bad || ds < 0 || wrong_shape1(ds, nt) || read_block_cols(f, "/checkpoint/done", 0, nt, 1, done);
        if (ds >= 0)
            H5Dclose(ds);
        for (int k = 0; k < count && !bad; ++k) {
            char name[64];
            snprintf(name, sizeof name, "/checkpoint/%s", flow_checkpoint_names[k]);
            bad = wrong_shape(f, name, nt, nl) || read_block(f, name, 0, nt, norms[k]);
        }
        if (bad)
            rc = gf_error(GF_EDATA, "--resume: '%s' is not a checkpoint of this run's flow (other "
                                    "target times, lags or state)", path);
    }
    return close_checkpoint(par, f, ini, rc);
}
