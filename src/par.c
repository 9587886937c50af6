/* par.c — the only file that calls MPI (see par.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/error.h"
#include "gradflow/par.h"

struct GfPar {
    MPI_Comm world, unit;      /* unit == MPI_COMM_NULL until the grid is set */
    MPI_Comm time;             /* the ranks with the same unit index, one per time group */
    int rank, size;
    int unit_rank, unit_size;
    int grid_t, grid_u;
    int64_t n;                 /* units partitioned over the unit communicator */
    int *counts, *displs;      /* (unit_size) block sizes and offsets, for v-collectives */
    int *row_counts;           /* (unit_size) counts * row_cols, for the *_rows collectives */
    int *row_displs;           /* (unit_size) displs * row_cols */
    int row_cols;              /* the cols row_counts was made for (0: none yet) */
};

int gf_par_create(MPI_Comm world, GfPar **out)
{
    GfPar *p = calloc(1, sizeof *p);
    if (!p)
        return gf_error(GF_ENOMEM, "out of memory creating the process grid");
    p->world = world;
    p->unit = p->time = MPI_COMM_NULL;
    MPI_Comm_rank(world, &p->rank);
    MPI_Comm_size(world, &p->size);
    *out = p;
    return GF_OK;
}

int gf_par_set_grid(GfPar *par, int grid_t, int grid_u, int64_t n)
{
    if ((int64_t)grid_t * grid_u != par->size)
        return gf_error(GF_EINTERNAL, "grid %dx%d does not match %d ranks", grid_t, grid_u, par->size);
    par->grid_t = grid_t;
    par->grid_u = grid_u;
    par->n = n;
    MPI_Comm_split(par->world, par->rank / grid_u, par->rank % grid_u, &par->unit);
    MPI_Comm_split(par->world, par->rank % grid_u, par->rank / grid_u, &par->time);
    MPI_Comm_rank(par->unit, &par->unit_rank);
    MPI_Comm_size(par->unit, &par->unit_size);
    par->counts = calloc((size_t)par->unit_size, sizeof(int));
    par->displs = calloc((size_t)par->unit_size, sizeof(int));
    par->row_counts = calloc((size_t)par->unit_size, sizeof(int));
    par->row_displs = calloc((size_t)par->unit_size, sizeof(int));
    int ok = par->counts && par->displs && par->row_counts && par->row_displs;
    for (int r = 0; ok && r < par->unit_size; ++r) {
        GfBlock b = gf_dist_block(n, par->unit_size, r);
        par->counts[r] = (int)b.count; /* n <= INT32_MAX, checked by config */
        par->displs[r] = (int)b.lo;
    }
    return ok ? GF_OK : gf_error(GF_ENOMEM, "out of memory creating the process grid");
}

void gf_par_destroy(GfPar *par)
{
    if (!par)
        return;
    if (par->unit != MPI_COMM_NULL)
        MPI_Comm_free(&par->unit);
    if (par->time != MPI_COMM_NULL)
        MPI_Comm_free(&par->time);
    free(par->counts);
    free(par->displs);
    free(par->row_counts);
    free(par->row_displs);
    free(par);
}

int gf_par_rank(const GfPar *par) { return par->rank; }
int gf_par_size(const GfPar *par) { return par->size; }
MPI_Comm gf_par_world(const GfPar *par) { return par->world; }
MPI_Comm gf_par_unit_comm(const GfPar *par) { return par->unit; }
int gf_par_unit_rank(const GfPar *par) { return par->unit_rank; }
int gf_par_unit_size(const GfPar *par) { return par->unit_size; }
GfBlock gf_par_units(const GfPar *par) { return gf_dist_block(par->n, par->unit_size, par->unit_rank); }
GfBlock gf_par_units_of(const GfPar *par, int r) { return gf_dist_block(par->n, par->unit_size, r); }

int gf_par_agree(const GfPar *par, int status)
{
    int mine = status ? par->rank : par->size, first;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, par->world);
    if (first == par->size)
        return GF_OK;
    char msg[GF_ERRMSG_MAX];
    int code = status;
    if (par->rank == first)
        snprintf(msg, sizeof msg, "%s", gf_error_message());
    MPI_Bcast(&code, 1, MPI_INT, first, par->world);
    MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, par->world);
    msg[sizeof msg - 1] = '\0';
    if (!msg[0] && first != 0)
        snprintf(msg, sizeof msg, "rank %d failed with status %d", first, code);
    gf_error_set_message(msg);
    return code;
}

int gf_par_node_size(const GfPar *par)
{
    MPI_Comm node;
    int size = 1;
    MPI_Comm_split_type(par->world, MPI_COMM_TYPE_SHARED, par->rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &size);
    MPI_Comm_free(&node);
    return size;
}

int gf_par_any(const GfPar *par, int flag)
{
    int any = 0;
    MPI_Allreduce(&flag, &any, 1, MPI_INT, MPI_LOR, par->world);
    return any;
}

int gf_par_bcast_string(const GfPar *par, char **text)
{
    long long len = (par->rank == 0 && *text) ? (long long)strlen(*text) : -1;
    MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, par->world);
    if (len < 0) {
        if (par->rank != 0)
            *text = NULL;
        return GF_OK;
    }
    char *buf = par->rank == 0 ? *text : malloc((size_t)len + 1);
    int ok = buf != NULL, all_ok;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, par->world);
    if (!all_ok) {
        if (par->rank != 0)
            free(buf);
        return gf_error(GF_ENOMEM, "out of memory receiving %lld bytes of configuration", len);
    }
    for (long long off = 0; off < len; off += 1 << 30) { /* int counts */
        long long chunk = len - off < (1 << 30) ? len - off : (1 << 30);
        MPI_Bcast(buf + off, (int)chunk, MPI_CHAR, 0, par->world);
    }
    buf[len] = '\0';
    *text = buf;
    return GF_OK;
}

void gf_par_bcast_doubles(const GfPar *par, double *buf, int64_t count)
{
    for (int64_t off = 0; off < count; off += 1 << 27) {
        int64_t chunk = count - off < (1 << 27) ? count - off : (1 << 27);
        MPI_Bcast(buf + off, (int)chunk, MPI_DOUBLE, 0, par->world);
    }
}

void gf_par_bcast_int64(const GfPar *par, int64_t *buf, int count)
{
    MPI_Bcast(buf, count, MPI_INT64_T, 0, par->world);
}

void gf_par_allgather_units(const GfPar *par, double *full)
{
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, full, par->counts, par->displs, MPI_DOUBLE,
                   par->unit);
}

void gf_par_reduce_scatter_units(const GfPar *par, const double *partial, double *local)
{
    MPI_Reduce_scatter(partial, local, par->counts, MPI_DOUBLE, MPI_SUM, par->unit);
}

/* The counts and offsets of (n, cols) row blocks, cached for the last cols
 * (not observable state, hence the cast). */
static void row_layout(const GfPar *par, int cols)
{
    GfPar *p = (GfPar *)par;
    if (p->row_cols != cols) {
        for (int r = 0; r < p->unit_size; ++r) {
            p->row_counts[r] = p->counts[r] * cols;
            p->row_displs[r] = p->displs[r] * cols;
        }
        p->row_cols = cols;
    }
}

void gf_par_reduce_scatter_rows(const GfPar *par, const double *partial, double *local, int cols)
{
    GfPar *p = (GfPar *)par;
    row_layout(par, cols);
    MPI_Reduce_scatter(partial, local, p->row_counts, MPI_DOUBLE, MPI_SUM, p->unit);
}

void gf_par_allgather_rows(const GfPar *par, double *full, int cols)
{
    row_layout(par, cols);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, full, par->row_counts, par->row_displs,
                   MPI_DOUBLE, par->unit);
}

int gf_par_transpose_rows(const GfPar *par, const double *W, double *Wt)
{
    const int P = par->unit_size;
    const int64_t n = par->n, nl = par->counts[par->unit_rank], lo = par->displs[par->unit_rank];
    /* MPI counts are int: refuse (on every rank alike) blocks of W beyond them */
    if ((int64_t)par->counts[0] * n > INT_MAX)
        return gf_error(GF_EUSAGE, "a rank's block of W (%d x %lld) exceeds MPI's int counts; use "
                                   "more ranks per time group (--grid)", par->counts[0], (long long)n);
    /* send to rank q the block W[my rows][q's columns], transposed: (nl_q, nl) */
    double *send = malloc((size_t)(nl * n > 0 ? nl * n : 1) * sizeof(double));
    double *recv = malloc((size_t)(nl * n > 0 ? nl * n : 1) * sizeof(double));
    int *sc = malloc(4 * (size_t)P * sizeof(int)), *sd = sc + P, *rc = sc + 2 * P, *rd = sc + 3 * P;
    int ok = send && recv && sc, all;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, par->unit);
    if (!all) {
        free(send), free(recv), free(sc);
        return GF_ENOMEM;
    }
    int64_t off = 0;
    for (int q = 0; q < P; ++q) {
        const int64_t ql = par->counts[q], qlo = par->displs[q];
        sd[q] = (int)off;
        sc[q] = (int)(ql * nl);
        for (int64_t j = 0; j < ql; ++j)      /* column qlo + j of W ... */
            for (int64_t i = 0; i < nl; ++i)  /* ... over my rows: a row of W^T */
                send[off + j * nl + i] = W[i * n + qlo + j];
        off += ql * nl;
        rd[q] = (int)(nl * par->displs[q]);
        rc[q] = (int)(nl * ql);
    }
    MPI_Alltoallv(send, sc, sd, MPI_DOUBLE, recv, rc, rd, MPI_DOUBLE, par->unit);
    /* from rank q: (nl, ql) = my W^T rows over q's row range of W */
    for (int q = 0; q < P; ++q) {
        const int64_t ql = par->counts[q], qlo = par->displs[q];
        for (int64_t j = 0; j < nl; ++j)
            for (int64_t i = 0; i < ql; ++i)
                Wt[j * n + qlo + i] = recv[rd[q] + j * ql + i];
    }
    (void)lo;
    free(send), free(recv), free(sc);
    return GF_OK;
}

void gf_par_time_sum_vec(const GfPar *par, double *buf, int64_t count)
{
    for (int64_t off = 0; off < count; off += 1 << 27) {
        const int64_t chunk = count - off < (1 << 27) ? count - off : (1 << 27);
        MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)chunk, MPI_DOUBLE, MPI_SUM, par->time);
    }
}

void gf_par_time_max_vec(const GfPar *par, double *buf, int count)
{
    MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_DOUBLE, MPI_MAX, par->time);
}

void gf_par_unit_sum_vec(const GfPar *par, double *buf, int count)
{
    MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_DOUBLE, MPI_SUM, par->unit);
}

void gf_par_unit_max_vec(const GfPar *par, double *buf, int count)
{
    MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_DOUBLE, MPI_MAX, par->unit);
}

void gf_par_world_sum_vec(const GfPar *par, double *buf, int64_t count)
{
    for (int64_t off = 0; off < count; off += 1 << 27) {
        const int64_t chunk = count - off < (1 << 27) ? count - off : (1 << 27);
        MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)chunk, MPI_DOUBLE, MPI_SUM, par->world);
    }
}

int gf_par_time_rank(const GfPar *par) { return par->rank / par->grid_u; }
int gf_par_time_size(const GfPar *par) { return par->grid_t; }

double gf_par_unit_sum(const GfPar *par, double v)
{
    double s;
    MPI_Allreduce(&v, &s, 1, MPI_DOUBLE, MPI_SUM, par->unit);
    return s;
}

double gf_par_unit_max(const GfPar *par, double v)
{
    double s;
    MPI_Allreduce(&v, &s, 1, MPI_DOUBLE, MPI_MAX, par->unit);
    return s;
}

void gf_par_min_avg_max(const GfPar *par, double v, double out[3])
{
    MPI_Allreduce(&v, &out[0], 1, MPI_DOUBLE, MPI_MIN, par->world);
    MPI_Allreduce(&v, &out[1], 1, MPI_DOUBLE, MPI_SUM, par->world);
    MPI_Allreduce(&v, &out[2], 1, MPI_DOUBLE, MPI_MAX, par->world);
    out[1] /= par->size;
}
