/* test_unit.c — serial unit tests: RNG, partition, activations, time sets, options. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/act.h"
#include "gradflow/config.h"
#include "gradflow/dist.h"
#include "gradflow/error.h"
#include "gradflow/rng.h"
#include "gradflow/timeset.h"

/* ---- rng ---- */

START_TEST(philox_known_answers)
{
    /* Known-answer vectors of Random123 (kat_vectors, philox4x32 with 10 rounds). */
    static const uint32_t cases[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
         0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
         0x94fdcceb, 0x5001e420, 0x24126ea1}};
    for (int c = 0; c < 3; ++c) {
        uint32_t out[4];
        gf_rng_philox4x32_10(cases[c], cases[c] + 4, out);
        for (int k = 0; k < 4; ++k)
            ck_assert_msg(out[k] == cases[c][6 + k], "case %d word %d: %08x != %08x", c, k, out[k],
                          cases[c][6 + k]);
    }
}
END_TEST

START_TEST(rng_is_a_function_of_its_arguments)
{
    for (uint64_t i = 0; i < 1000; ++i) {
        ck_assert(gf_rng_uniform(42, GF_STREAM_W, i) == gf_rng_uniform(42, GF_STREAM_W, i));
        ck_assert(gf_rng_uniform(42, GF_STREAM_W, i) != gf_rng_uniform(43, GF_STREAM_W, i));
        ck_assert(gf_rng_uniform(42, GF_STREAM_W, i) != gf_rng_uniform(42, GF_STREAM_U, i));
    }
    /* indices beyond 2^32 use the high counter word */
    ck_assert(gf_rng_uniform(1, GF_STREAM_W, 5) != gf_rng_uniform(1, GF_STREAM_W, 5 + (1ULL << 32)));
}
END_TEST

START_TEST(rng_moments_and_stream_independence)
{
    /* N = 2e5 samples: the standard error of a mean is ~ sd / 447; 6 sigma bounds. */
    const int N = 200000;
    double su = 0, suu = 0, sn = 0, snn = 0, sx = 0, sym = 0;
    double lo = 1, hi = 0;
    for (int i = 0; i < N; ++i) {
        const double u = gf_rng_uniform(7, GF_STREAM_W, (uint64_t)i);
        const double v = gf_rng_uniform(7, GF_STREAM_U, (uint64_t)i);
        const double z = gf_rng_normal(7, GF_STREAM_X, (uint64_t)i);
        const double s = gf_rng_symmetric(7, GF_STREAM_B, (uint64_t)i);
        lo = fmin(lo, u), hi = fmax(hi, u);
        su += u, suu += u * u, sn += z, snn += z * z, sx += (u - 0.5) * (v - 0.5), sym += s;
        ck_assert(s > -1.0 && s < 1.0);
    }
    ck_assert(lo > 0.0 && hi < 1.0);
    const double mean = su / N, var = suu / N - mean * mean;
    ck_assert_msg(fabs(mean - 0.5) < 6 * sqrt(1.0 / 12 / N), "uniform mean %g", mean);
    ck_assert_msg(fabs(var - 1.0 / 12) < 6 * sqrt(1.0 / 180 / N), "uniform variance %g", var);
    ck_assert_msg(fabs(sn / N) < 6 / sqrt(N), "normal mean %g", sn / N);
    ck_assert_msg(fabs(snn / N - 1) < 6 * sqrt(2.0 / N), "normal variance %g", snn / N);
    /* covariance of two streams at the same index: sd of the product is 1/12 */
    ck_assert_msg(fabs(sx / N) < 6 * (1.0 / 12) / sqrt(N), "stream covariance %g", sx / N);
    ck_assert_msg(fabs(sym / N) < 6 * sqrt(1.0 / 3 / N), "symmetric mean %g", sym / N);
}
END_TEST

/* ---- dist ---- */

START_TEST(partition_covers_every_unit_once)
{
    for (int64_t n = 0; n <= 40; ++n)
        for (int P = 1; P <= 8; ++P) {
            int64_t next = 0, mn = n + 1, mx = -1;
            for (int r = 0; r < P; ++r) {
                const GfBlock b = gf_dist_block(n, P, r);
                ck_assert_msg(b.lo == next, "n=%lld P=%d r=%d: block starts at %lld, expected %lld",
                              (long long)n, P, r, (long long)b.lo, (long long)next);
                ck_assert(b.count >= 0);
                for (int64_t i = b.lo; i < b.lo + b.count; ++i)
                    ck_assert_int_eq(gf_dist_owner(n, P, i), r);
                next += b.count;
                mn = b.count < mn ? b.count : mn;
                mx = b.count > mx ? b.count : mx;
            }
            ck_assert_int_eq(next, n);
            ck_assert_msg(mx - mn <= 1, "n=%lld P=%d: sizes %lld..%lld", (long long)n, P,
                          (long long)mn, (long long)mx);
            if (P > n)
                ck_assert_int_eq(mn, 0); /* ranks with no rows exist and are handled */
        }
}
END_TEST

/* ---- act ---- */

START_TEST(activations_and_derivatives)
{
    const double xs[] = {-30.0, -3.0, -0.7, -1e-3, 0.2, 1.5, 4.0, 25.0};
    const size_t N = sizeof xs / sizeof xs[0];
    for (int k = 0; k < GF_ACT_COUNT; ++k) {
        const GfActivation act = (GfActivation)k;
        GfActivation back;
        ck_assert_int_eq(gf_act_parse(gf_act_name(act), &back), 0);
        ck_assert_int_eq(back, act);
        double a[8], fp[8], ap[8], am[8], dummy[8], xp[8], xm[8];
        const double h = 1e-6;
        for (size_t i = 0; i < N; ++i)
            xp[i] = xs[i] + h, xm[i] = xs[i] - h;
        gf_act_apply(act, N, xs, a, fp);
        gf_act_apply(act, N, xp, ap, dummy);
        gf_act_apply(act, N, xm, am, dummy);
        for (size_t i = 0; i < N; ++i) {
            const double fd = (ap[i] - am[i]) / (2 * h);
            ck_assert_msg(fabs(fd - fp[i]) <= 1e-7 + 1e-7 * fabs(fp[i]), "%s at %g: f' %g, fd %g",
                          gf_act_name(act), xs[i], fp[i], fd);
            ck_assert(fp[i] >= 0.0 && fp[i] <= gf_act_fprime_max(act));
        }
    }
    /* values against closed forms */
    double a, fp, x = 0.0;
    gf_act_apply(GF_ACT_LOGISTIC, 1, &x, &a, &fp);
    ck_assert(a == 0.5 && fp == 0.25);
    x = -800.0; /* exp overflow must give the limit, not NaN */
    gf_act_apply(GF_ACT_LOGISTIC, 1, &x, &a, &fp);
    ck_assert(a == 0.0 && fp == 0.0);
    x = 0.0;
    gf_act_apply(GF_ACT_RELU, 1, &x, &a, &fp);
    ck_assert(a == 0.0 && fp == 0.0);
    ck_assert(gf_act_fprime_max(GF_ACT_LOGISTIC) == 0.25 && gf_act_fprime_max(GF_ACT_TANH) == 1.0);
    GfActivation junk;
    ck_assert_int_eq(gf_act_parse("sigmoid", &junk), -1);
}
END_TEST

/* ---- time sets ---- */

static int count(const unsigned char *mask, int T)
{
    int c = 0;
    for (int t = 0; t < T; ++t)
        c += mask[t];
    return c;
}

START_TEST(time_sets)
{
    unsigned char mask[20];
    ck_assert_int_eq(gf_timeset_parse("T", 20, "--x", mask), 0);
    ck_assert(mask[19] == 1 && count(mask, 20) == 1);
    ck_assert_int_eq(gf_timeset_parse("1:10:3,T,2", 20, "--x", mask), 0);
    /* 1, 4, 7, 10, 20, 2 */
    ck_assert(mask[0] && mask[3] && mask[6] && mask[9] && mask[19] && mask[1] && count(mask, 20) == 6);
    ck_assert_int_eq(gf_timeset_parse("15:T", 20, "--x", mask), 0);
    ck_assert_int_eq(count(mask, 20), 6);
    const char *bad[] = {"", "0", "21", "5:3", "1:5:0", "a", "1:2:3:4", "3,", "T:1", "1:5:T", "-1"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; ++k) {
        gf_error_clear();
        ck_assert_msg(gf_timeset_parse(bad[k], 20, "--target-times", mask) == GF_EUSAGE,
                      "'%s' accepted", bad[k]);
        ck_assert_msg(strstr(gf_error_message(), "--target-times") != NULL, "%s", gf_error_message());
    }
    gf_error_clear();
}
END_TEST

/* ---- config ---- */

static int parse(GfConfig *cfg, const char *line)
{
    char buf[1024], *argv[64];
    int argc = 0;
    snprintf(buf, sizeof buf, "gradflow %s", line);
    for (char *tok = strtok(buf, " "); tok && argc < 63; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    GfAction action;
    gf_config_defaults(cfg);
    gf_error_clear();
    return gf_config_parse_args(cfg, argc, argv, &action);
}

START_TEST(config_command_line)
{
    GfConfig cfg;
    ck_assert_int_eq(parse(&cfg, "--units 12 --steps=30 --activation tanh --w-max 0.5 --quiet -o x.h5"), 0);
    ck_assert(cfg.units == 12 && cfg.steps == 30 && cfg.activation == GF_ACT_TANH);
    ck_assert(cfg.w_max == 0.5 && cfg.quiet == 1 && !strcmp(cfg.output, "x.h5"));
    ck_assert(gf_config_given(&cfg, "units") && !gf_config_given(&cfg, "inputs"));
    ck_assert_int_eq(gf_config_validate(&cfg, 3), 0);
    ck_assert(cfg.grid_t == 1 && cfg.grid_u == 3);
    ck_assert_int_eq(parse(&cfg, "--grid 2x3 -o x.h5"), 0);
    ck_assert_int_eq(gf_config_validate(&cfg, 6), 0);
    ck_assert(cfg.grid_t == 2 && cfg.grid_u == 3);

    struct { const char *line; int code; const char *needle; } bad[] = {
        {"--units abc -o x.h5", GF_EUSAGE, "--units"},
        {"--units 1e3 -o x.h5", GF_EUSAGE, "not an integer"},
        {"--w-max nan -o x.h5", GF_EUSAGE, "--w-max"},
        {"--activation sigmoid -o x.h5", GF_EUSAGE, "logistic, tanh, linear, relu"},
        {"--frobnicate 1", GF_EUSAGE, "--frobnicate"},
        {"--units", GF_EUSAGE, "needs a value"},
        {"--seed -3", GF_EUSAGE, "--seed"},
        {"--quiet=maybe", GF_EUSAGE, "boolean"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; ++k) {
        ck_assert_msg(parse(&cfg, bad[k].line) == bad[k].code, "'%s' accepted", bad[k].line);
        ck_assert_msg(strstr(gf_error_message(), bad[k].needle), "'%s': %s", bad[k].line,
                      gf_error_message());
    }
    struct { const char *line; int ranks; const char *needle; } invalid[] = {
        {"--units 0 -o x.h5", 1, "--units"},
        {"--steps -4 -o x.h5", 1, "--steps"},
        {"--units 4 --outputs 5 -o x.h5", 1, "--outputs"},
        {"--inputs -1 -o x.h5", 1, "--inputs"},
        {"--w-max -1 -o x.h5", 1, "--w-max"},
        {"--units 4", 1, "no output file"},
        {"--grid 2x2 -o x.h5", 3, "--grid"},
        {"--grid 0x2 -o x.h5", 2, "PtxPu"},
        {"--grid 2x1 -o x.h5", 3, "the job has 3"},
        {"--grid 3 -o x.h5", 3, "PtxPu"},
        {"--target-times 0 -o x.h5", 1, "--target-times"},
        {"--weights w.h5 -o x.h5", 1, "--weights"},
        {"-o dir/", 1, "directory"},
    };
    for (size_t k = 0; k < sizeof invalid / sizeof invalid[0]; ++k) {
        ck_assert_int_eq(parse(&cfg, invalid[k].line), 0);
        ck_assert_msg(gf_config_validate(&cfg, invalid[k].ranks) == GF_EUSAGE, "'%s' accepted",
                      invalid[k].line);
        ck_assert_msg(strstr(gf_error_message(), invalid[k].needle), "'%s': %s", invalid[k].line,
                      gf_error_message());
    }
    gf_error_clear();
}
END_TEST

START_TEST(config_ini_and_round_trip)
{
    GfConfig cfg;
    ck_assert_int_eq(parse(&cfg, "--units 9"), 0);
    const char *ini = "# comment\nunits = 50\nsteps = 7\n[gradflow]\nactivation = relu\nquiet = yes\n";
    ck_assert_int_eq(gf_config_apply_ini(&cfg, ini, "f.ini"), 0);
    ck_assert(cfg.units == 9 && cfg.steps == 7 && cfg.activation == GF_ACT_RELU && cfg.quiet == 1);

    const struct { const char *text; const char *needle; } bad[] = {
        {"unit = 3\n", "unknown key 'unit'"},
        {"steps = seven\n", "not an integer"},
        {"[other]\nsteps = 3\n", "unknown section"},
        {"config = other.ini\n", "unknown key 'config'"},
        {"this line has no equals sign\n", "cannot parse"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; ++k) {
        ck_assert_int_eq(parse(&cfg, ""), 0);
        ck_assert_msg(gf_config_apply_ini(&cfg, bad[k].text, "f.ini") == GF_ECONFIG, "'%s' accepted",
                      bad[k].text);
        ck_assert_msg(strstr(gf_error_message(), bad[k].needle) && strstr(gf_error_message(), "f.ini"),
                      "%s", gf_error_message());
    }

    /* the resolved INI text reproduces every option exactly */
    ck_assert_int_eq(parse(&cfg, "--units 33 --w-max 0.1 --gain 0.7 --seed 18446744073709551615 "
                                 "--init gaussian --target-times 1:5,T -o out.h5 --force"), 0);
    char text[8192];
    ck_assert(gf_config_to_ini(&cfg, text, sizeof text) < sizeof text);
    GfConfig again;
    gf_config_defaults(&again);
    ck_assert_int_eq(gf_config_apply_ini(&again, text, "resolved"), 0);
    for (int k = 0; k < gf_config_option_count(); ++k) {
        GfOptValue a, b;
        gf_config_option(&cfg, k, &a);
        gf_config_option(&again, k, &b);
        if (!strcmp(a.name, "config"))
            continue;
        ck_assert_msg(a.i == b.i && a.u == b.u && a.d == b.d &&
                          (a.kind != GF_OPT_STRING || !strcmp(a.s, b.s)),
                      "option %s differs after the round trip", a.name);
    }
    gf_error_clear();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("unit");
    TCase *tc = tcase_create("all");
    /* Check's default 4 s per test is too short under ASan on a loaded 2-core machine;
     * CTest's TIMEOUT still ends a hang */
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, philox_known_answers);
    tcase_add_test(tc, rng_is_a_function_of_its_arguments);
    tcase_add_test(tc, rng_moments_and_stream_independence);
    tcase_add_test(tc, partition_covers_every_unit_once);
    tcase_add_test(tc, activations_and_derivatives);
    tcase_add_test(tc, time_sets);
    tcase_add_test(tc, config_command_line);
    tcase_add_test(tc, config_ini_and_round_trip);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
