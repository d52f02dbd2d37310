/*
 * test_rssm_math.c: librssm's forward pass against PyTorch and against the naive kernel.
 *
 * Usage: test_rssm_math MODEL.safetensors REF.safetensors
 * REF holds inputs (in_h [N,D], in_z [N,S], in_a [N,A], in_obs [N,O]) and the PyTorch
 * outputs written by tests/model/rssm_testlib.py: observe_* (row 0), imagine_*, reward,
 * value, decode, and for image models embed [N,E] (in_obs then holds N images' pixel
 * values, HWC). Every C output must match to 1e-4 max-abs (an image model's embedding and
 * belief update: 1e-4 relative to the output's largest magnitude where that exceeds 1,
 * and each such comparison prints its errors); the BLAS path must also match the naive
 * loops in rssm_naive.c on fresh random batches of several sizes.
 * Driven by test_parity.py, which writes the files for several architectures.
 *
 * The binary is linked with the counting allocator (tests/common/alloc_count.h): the
 * control path must allocate nothing.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc_count.h"
#include "rssm_approx.h"
#include "rssm_gemm.h"
#include "rssm_naive.h"

#define TOL 1e-4f

static const char *model_path, *ref_path;
static rssm_model_t *model;
static st_file_t ref;
static void *ref_bytes;
static int N; /* rows in the reference batch */

static void *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

/* Copy of reference tensor `name` (NULL when absent); *count gets its element count. */
static float *ref_get(const char *name, size_t *count)
{
    for (int i = 0; i < ref.ntensors; i++) {
        const st_tensor_t *t = &ref.tensors[i];
        if (strcmp(t->name, name) == 0) {
            size_t n = (t->end - t->begin) / 4;
            float *out = malloc((n ? n : 1) * sizeof(float));
            assert_non_null(out);
            memcpy(out, ref.data + t->begin, n * sizeof(float));
            if (count)
                *count = n;
            return out;
        }
    }
    return NULL;
}

static float *ref_need(const char *name, size_t expect)
{
    size_t n = 0;
    float *p = ref_get(name, &n);
    if (!p)
        fail_msg("reference tensor '%s' missing", name);
    if (n != expect)
        fail_msg("reference tensor '%s' has %zu values, expected %zu", name, n, expect);
    return p;
}

static void assert_close(const char *what, const float *got, const float *want, size_t n)
{
    float worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(got[i] - want[i]);
        if (!(d <= worst)) { /* also catches NaN */
            worst = isnan(d) ? INFINITY : d;
            at = i;
        }
    }
    if (!(worst <= TOL))
        fail_msg("%s: max abs error %g at index %zu (got %g, want %g)", what, worst, at,
                 got[at], want[at]);
}

/* The image models' tolerance: TOL relative to the output's largest magnitude (absolute
 * below 1). Prints the errors (test_parity.py's log and the parity report read them). */
static void assert_close_rel(const char *what, const float *got, const float *want, size_t n)
{
    double worst = 0, scale = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= worst)) {
            worst = isnan(d) ? INFINITY : d;
            at = i;
        }
        scale = fmax(scale, fabs((double)want[i]));
    }
    printf("parity %-24s max abs error %.3g, relative to max |want| %.3g: %.3g\n", what, worst,
           scale, scale > 0 ? worst / scale : worst);
    if (!(worst <= TOL * fmax(1.0, scale)))
        fail_msg("%s: max abs error %g at index %zu (got %g, want %g; largest |want| %g)", what,
                 worst, at, got[at], want[at], scale);
}

static bool is_image(void)
{
    return rssm_info(model)->image_channels > 0;
}

/* Pixel values stored as floats in REF -> the uint8 image(s) librssm reads. */
static uint8_t *to_pixels(const float *v, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        assert_true(v[i] >= 0 && v[i] <= 255 && v[i] == (float)(int)v[i]);
        p[i] = (uint8_t)v[i];
    }
    return p;
}

static float *alloc_floats(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}

static int setup(void **state)
{
    (void)state;
    char err[512];
    size_t size;
    if (rssm_load(model_path, &model, err, sizeof err) != 0) {
        fprintf(stderr, "cannot load %s: %s\n", model_path, err);
        return -1;
    }
    ref_bytes = read_file(ref_path, &size);
    if (!ref_bytes || st_parse(ref_bytes, size, &ref, err, sizeof err) != 0) {
        fprintf(stderr, "cannot read %s: %s\n", ref_path, ref_bytes ? err : "I/O error");
        return -1;
    }
    for (int i = 0; i < ref.ntensors; i++)
        if (strcmp(ref.tensors[i].name, "reward") == 0)
            N = (int)ref.tensors[i].shape[0];
    return N > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rssm_destroy(model);
    st_free(&ref);
    free(ref_bytes);
    return 0;
}

static void test_observe_matches_pytorch(void **state)
{
    (void)state;
    const rssm_dims_t *d = &rssm_info(model)->dims;
    const size_t D = (size_t)d->deter, S = (size_t)d->stoch;
    float *h = ref_need("in_h", N * D), *z = ref_need("in_z", N * S);
    float *a = ref_need("in_a", (size_t)N * d->action),
          *o = ref_need("in_obs", (size_t)N * d->obs);
    float *ws = alloc_floats(rssm_observe_workspace(model));
    float *out[5], *want[5], *naive[5];
    const char *names[5] = {"observe_h", "observe_prior_mean", "observe_prior_std",
                            "observe_post_mean", "observe_post_std"};
    for (int k = 0; k < 5; k++) {
        size_t n = k == 0 ? D : S;
        out[k] = alloc_floats(n);
        naive[k] = alloc_floats(n);
        want[k] = ref_need(names[k], n);
    }
    rssm_observe_out_t res = {out[0], out[1], out[2], out[3], out[4]};
    uint8_t *image = is_image() ? to_pixels(o, (size_t)d->obs) : NULL;
    if (image) {
        assert_int_equal(rssm_observe_image(model, h, z, a, image, &res, ws), 0);
        naive_observe_image(model, h, z, a, image, naive[0], naive[1], naive[2], naive[3],
                            naive[4]);
    } else {
        assert_int_equal(rssm_observe(model, h, z, a, o, &res, ws), 0);
        naive_observe(model, h, z, a, o, naive[0], naive[1], naive[2], naive[3], naive[4]);
    }
    free(image);
    for (int k = 0; k < 5; k++) {
        if (is_image()) {
            char label[64];
            snprintf(label, sizeof label, "%s (naive)", names[k]);
            assert_close_rel(names[k], out[k], want[k], k == 0 ? D : S);
            assert_close_rel(label, naive[k], want[k], k == 0 ? D : S);
        } else {
            assert_close(names[k], out[k], want[k], k == 0 ? D : S);
            assert_close(names[k], naive[k], want[k], k == 0 ? D : S);
        }
        free(out[k]);
        free(naive[k]);
        free(want[k]);
    }
    free(ws);
    free(h);
    free(z);
    free(a);
    free(o);
}

/* Image models: rssm_encode_image on every reference image against PyTorch's embedding,
 * and the naive direct convolution against both. */
static void test_encode_matches_pytorch(void **state)
{
    (void)state;
    if (!is_image()) {
        assert_null(ref_get("embed", NULL));
        skip();
    }
    const rssm_dims_t *d = &rssm_info(model)->dims;
    const size_t O = (size_t)d->obs, E = (size_t)d->embed;
    float *o = ref_need("in_obs", N * O), *want = ref_need("embed", N * E);
    uint8_t *images = to_pixels(o, N * O);
    float *ws = alloc_floats(rssm_observe_workspace(model));
    float *got = alloc_floats(N * E), *naive = alloc_floats(N * E);
    for (int i = 0; i < N; i++) {
        assert_int_equal(rssm_encode_image(model, images + i * O, got + i * E, ws), 0);
        naive_encode_image(model, images + i * O, naive + i * E);
    }
    assert_close_rel("embed", got, want, N * E);
    assert_close_rel("embed (naive)", naive, want, N * E);
    assert_close_rel("embed vs naive", got, naive, N * E);
    free(o), free(want), free(images), free(ws), free(got), free(naive);
}

static void test_batch_matches_pytorch(void **state)
{
    (void)state;
    const rssm_info_t *info = rssm_info(model);
    const size_t D = (size_t)info->dims.deter, S = (size_t)info->dims.stoch;
    float *h = ref_need("in_h", N * D), *z = ref_need("in_z", N * S);
    float *a = ref_need("in_a", (size_t)N * info->dims.action);
    float *ws = alloc_floats(rssm_batch_workspace(model, N));
    float *hn = alloc_floats(N * D), *pm = alloc_floats(N * S), *ps = alloc_floats(N * S);
    float *r = alloc_floats(N);

    rssm_imagine_batch(model, N, h, z, a, hn, pm, ps, ws);
    float *want = ref_need("imagine_h", N * D);
    assert_close("imagine h'", hn, want, N * D);
    free(want);
    want = ref_need("imagine_prior_mean", N * S);
    assert_close("imagine prior mean", pm, want, N * S);
    free(want);
    want = ref_need("imagine_prior_std", N * S);
    assert_close("imagine prior std", ps, want, N * S);
    free(want);

    rssm_reward_batch(model, N, h, z, r, ws);
    want = ref_need("reward", N);
    assert_close("reward", r, want, N);
    free(want);

    if (info->has_value) {
        rssm_value_batch(model, N, h, z, r, ws);
        want = ref_need("value", N);
        assert_close("value", r, want, N);
        free(want);
    } else {
        assert_null(ref_get("value", NULL));
    }
    if (info->has_decoder) {
        size_t O = (size_t)info->dims.obs;
        float *obs = alloc_floats(N * O);
        rssm_decode_batch(model, N, h, z, obs, ws);
        want = ref_need("decode", N * O);
        assert_close("decode (raw observation)", obs, want, N * O);
        free(want);
        free(obs);
    }
    free(h), free(z), free(a), free(ws), free(hn), free(pm), free(ps), free(r);
}

static float uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

/* The batched path (kernel or BLAS) against the naive loops on random batches: sizes that
 * cut into tiles of every height and into more than one kernel chunk (96 rows). */
static void test_batch_matches_naive(void **state)
{
    (void)state;
    const rssm_info_t *info = rssm_info(model);
    const rssm_dims_t *d = &info->dims;
    const size_t D = (size_t)d->deter, S = (size_t)d->stoch, A = (size_t)d->action;
    const size_t O = (size_t)d->obs;
    const int sizes[] = {1, 5, 50, 64, 97};
    uint64_t seed = 42;
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        int n = sizes[t];
        float *h = alloc_floats(n * D), *z = alloc_floats(n * S), *a = alloc_floats(n * A);
        for (size_t i = 0; i < n * D; i++)
            h[i] = uniform(&seed);
        for (size_t i = 0; i < n * S; i++)
            z[i] = 2.0f * uniform(&seed);
        for (size_t i = 0; i < n * A; i++)
            a[i] = uniform(&seed);
        float *ws = alloc_floats(rssm_batch_workspace(model, n));
        float *hn = alloc_floats(n * D), *pm = alloc_floats(n * S), *ps = alloc_floats(n * S);
        float *r = alloc_floats(n), *v = alloc_floats(n), *obs = alloc_floats(n * O);
        float *nh = alloc_floats(D), *npm = alloc_floats(S), *nps = alloc_floats(S);
        float *nobs = alloc_floats(O);
        rssm_imagine_batch(model, n, h, z, a, hn, pm, ps, ws);
        rssm_reward_batch(model, n, h, z, r, ws);
        if (info->has_value)
            rssm_value_batch(model, n, h, z, v, ws);
        if (info->has_decoder)
            rssm_decode_batch(model, n, h, z, obs, ws);
        for (int i = 0; i < n; i++) {
            naive_imagine(model, h + i * D, z + i * S, a + i * A, nh, npm, nps);
            assert_close("imagine h' vs naive", hn + i * D, nh, D);
            assert_close("prior mean vs naive", pm + i * S, npm, S);
            assert_close("prior std vs naive", ps + i * S, nps, S);
            float nr = naive_reward(model, h + i * D, z + i * S);
            assert_close("reward vs naive", r + i, &nr, 1);
            if (info->has_value) {
                float nv = naive_value(model, h + i * D, z + i * S);
                assert_close("value vs naive", v + i, &nv, 1);
            }
            if (info->has_decoder) {
                naive_decode(model, h + i * D, z + i * S, nobs);
                assert_close("decode vs naive", obs + i * O, nobs, O);
            }
        }
        free(h), free(z), free(a), free(ws), free(hn), free(pm), free(ps), free(r), free(v);
        free(obs), free(nh), free(npm), free(nps), free(nobs);
    }
}

/* rssm_imagine_batch_shared from one (h0, z0) equals rssm_imagine_batch on n copies. */
static void test_shared_start_matches_rows(void **state)
{
    (void)state;
    const rssm_dims_t *d = &rssm_info(model)->dims;
    const size_t D = (size_t)d->deter, S = (size_t)d->stoch, A = (size_t)d->action;
    const int sizes[] = {1, 7, 50, 100};
    uint64_t seed = 7;
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        size_t n = (size_t)sizes[t];
        float *h = alloc_floats(n * D), *z = alloc_floats(n * S), *a = alloc_floats(n * A);
        for (size_t i = 0; i < D; i++)
            h[i] = uniform(&seed);
        for (size_t i = 0; i < S; i++)
            z[i] = 2.0f * uniform(&seed);
        for (size_t i = 1; i < n; i++) {
            memcpy(h + i * D, h, sizeof(float) * D);
            memcpy(z + i * S, z, sizeof(float) * S);
        }
        for (size_t i = 0; i < n * A; i++)
            a[i] = uniform(&seed);
        float *ws = alloc_floats(rssm_batch_workspace(model, (int)n));
        float *out[2][3];
        for (int k = 0; k < 2; k++) {
            out[k][0] = alloc_floats(n * D);
            out[k][1] = alloc_floats(n * S);
            out[k][2] = alloc_floats(n * S);
        }
        rssm_imagine_batch(model, (int)n, h, z, a, out[0][0], out[0][1], out[0][2], ws);
        rssm_imagine_batch_shared(model, (int)n, h, z, a, out[1][0], out[1][1], out[1][2], ws);
        assert_close("shared start h'", out[1][0], out[0][0], n * D);
        assert_close("shared start prior mean", out[1][1], out[0][1], n * S);
        assert_close("shared start prior std", out[1][2], out[0][2], n * S);
        for (int k = 0; k < 2; k++)
            free(out[k][0]), free(out[k][1]), free(out[k][2]);
        free(h), free(z), free(a), free(ws);
    }
}

/* The path the environment asked for is the one the model runs on (MPC_RSSM_GEMM=blas
 * forces OpenBLAS; otherwise the kernel wherever the CPU has AVX2 and FMA). */
static void test_gemm_path(void **state)
{
    (void)state;
    const char *env = getenv("MPC_RSSM_GEMM");
    bool blas = env && strcmp(env, "blas") == 0;
    printf("librssm path: %s\n", rssm_uses_kernel(model) ? "packed kernel" : "OpenBLAS");
    if (blas)
        assert_false(rssm_uses_kernel(model));
    else
        assert_int_equal(rssm_uses_kernel(model), rssm_gemm_enabled());
}

/* Every control-path call on caller-provided buffers: zero allocations. */
static void test_control_path_allocates_nothing(void **state)
{
    (void)state;
    const rssm_info_t *info = rssm_info(model);
    const rssm_dims_t *d = &info->dims;
    const int n = 33;
    size_t D = (size_t)d->deter, S = (size_t)d->stoch, A = (size_t)d->action,
           O = (size_t)d->obs;
    float *h = calloc(n * D, 4), *z = calloc(n * S, 4), *a = calloc(n * A, 4);
    float *obs = calloc(n * O, 4), *hn = calloc(n * D, 4), *pm = calloc(n * S, 4);
    uint8_t *image = calloc(O, 1);
    float *embed = calloc((size_t)d->embed, 4);
    float *ps = calloc(n * S, 4), *qm = calloc(S, 4), *qs = calloc(S, 4), *r = calloc(n, 4);
    float *wb = calloc(rssm_batch_workspace(model, n), 4);
    float *wo = calloc(rssm_observe_workspace(model), 4);
    rssm_observe_out_t out = {hn, pm, ps, qm, qs};
    alloc_count_start();
    int rc = is_image() ? rssm_observe_image(model, h, z, a, image, &out, wo)
                        : rssm_observe(model, h, z, a, obs, &out, wo);
    if (is_image())
        rc |= rssm_encode_image(model, image, embed, wo);
    rssm_imagine_batch(model, n, h, z, a, hn, pm, ps, wb);
    rssm_reward_batch(model, n, h, z, r, wb);
    if (info->has_value)
        rssm_value_batch(model, n, h, z, r, wb);
    if (info->has_decoder)
        rssm_decode_batch(model, n, h, z, obs, wb);
    long allocations = alloc_count_stop();
    assert_int_equal(rc, 0);
    assert_int_equal(allocations, 0);
    /* and the counter works: loading does allocate */
    rssm_model_t *m2 = NULL;
    alloc_count_start();
    assert_int_equal(rssm_load(model_path, &m2, NULL, 0), 0);
    assert_true(alloc_count_stop() > 0);
    rssm_destroy(m2);
    free(h), free(z), free(a), free(obs), free(hn), free(pm), free(ps), free(qm), free(qs);
    free(r), free(wb), free(wo), free(image), free(embed);
}

/* One model shared by several threads, each with its own workspace and outputs. */
typedef struct thread_job {
    int n;
    const float *h, *z, *a;
    float *h_next; /* [n, D] result of the last of `rounds` runs */
    int rounds;
} thread_job_t;

static void *thread_run(void *arg)
{
    thread_job_t *j = arg;
    const rssm_dims_t *d = &rssm_info(model)->dims;
    float *ws = malloc(sizeof(float) * rssm_batch_workspace(model, j->n));
    float *pm = malloc(sizeof(float) * j->n * d->stoch),
          *ps = malloc(sizeof(float) * j->n * d->stoch);
    for (int r = 0; ws && pm && ps && r < j->rounds; r++)
        rssm_imagine_batch(model, j->n, j->h, j->z, j->a, j->h_next, pm, ps, ws);
    free(ws), free(pm), free(ps);
    return NULL;
}

static void test_shared_model_threads(void **state)
{
    (void)state;
    const rssm_dims_t *d = &rssm_info(model)->dims;
    const size_t D = (size_t)d->deter;
    float *h = ref_need("in_h", N * D), *z = ref_need("in_z", (size_t)N * d->stoch);
    float *a = ref_need("in_a", (size_t)N * d->action), *want = ref_need("imagine_h", N * D);
    enum { THREADS = 4 };
    pthread_t tid[THREADS];
    thread_job_t jobs[THREADS];
    for (int t = 0; t < THREADS; t++) {
        jobs[t] = (thread_job_t){N, h, z, a, alloc_floats(N * D), 200};
        assert_int_equal(pthread_create(&tid[t], NULL, thread_run, &jobs[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(tid[t], NULL);
        assert_close("imagine h' from a thread", jobs[t].h_next, want, N * D);
        free(jobs[t].h_next);
    }
    free(h), free(z), free(a), free(want);
}

static void test_observe_rejects_null(void **state)
{
    (void)state;
    float x[1] = {0};
    rssm_observe_out_t out = {x, x, x, x, NULL};
    assert_int_equal(rssm_observe(model, x, x, x, x, &out, x), RSSM_EINVALID);
    assert_int_equal(rssm_observe(NULL, x, x, x, x, &out, x), RSSM_EINVALID);
    uint8_t px[1] = {0};
    assert_int_equal(rssm_observe_image(model, x, x, x, px, &out, x), RSSM_EINVALID);
    assert_int_equal(rssm_encode_image(NULL, px, x, x), RSSM_EINVALID);
    assert_int_equal(rssm_encode_image(model, NULL, x, x), RSSM_EINVALID);
}

/* Each observation type has its own entry point; the other one refuses the model. */
static void test_observe_checks_obs_type(void **state)
{
    (void)state;
    const rssm_dims_t *d = &rssm_info(model)->dims;
    float *h = calloc((size_t)d->deter, 4), *z = calloc((size_t)d->stoch, 4);
    float *a = calloc((size_t)d->action, 4), *obs = calloc((size_t)d->obs, 4);
    float *hn = calloc((size_t)d->deter, 4), *s[4], *e = calloc((size_t)d->embed, 4);
    uint8_t *image = calloc((size_t)d->obs, 1);
    float *ws = calloc(rssm_observe_workspace(model), 4);
    for (int k = 0; k < 4; k++)
        s[k] = calloc((size_t)d->stoch, 4);
    rssm_observe_out_t out = {hn, s[0], s[1], s[2], s[3]};
    int vec = rssm_observe(model, h, z, a, obs, &out, ws);
    int img = rssm_observe_image(model, h, z, a, image, &out, ws);
    int enc = rssm_encode_image(model, image, e, ws);
    assert_int_equal(vec, is_image() ? RSSM_EINVALID : 0);
    assert_int_equal(img, is_image() ? 0 : RSSM_EINVALID);
    assert_int_equal(enc, is_image() ? 0 : RSSM_EINVALID);
    free(h), free(z), free(a), free(obs), free(hn), free(e), free(image), free(ws);
    for (int k = 0; k < 4; k++)
        free(s[k]);
}

/* worst = max(worst, err), where a NaN error (fmax would drop it) counts as infinite. */
static void note_error(double *worst, double err)
{
    if (!(err <= *worst))
        *worst = isnan(err) ? INFINITY : err;
}

/* The vectorisable elementwise functions against double-precision libm, densely. */
static void test_approximations(void **state)
{
    (void)state;
    double worst[6] = {0};
    for (double xd = -100.0; xd <= 100.0; xd += 1.0 / 1024 + 1e-7) {
        float x = (float)xd;
        double e = exp((double)x);
        if (fabs(x) < 80) /* relative: e^x spans 70 orders of magnitude */
            note_error(&worst[0], fabs(exp_approx(x) - e) / e);
        note_error(&worst[1], fabs(sigmoid_approx(x) - 1.0 / (1.0 + exp(-(double)x))));
        note_error(&worst[2], fabs(tanh_approx(x) - tanh((double)x)));
        double sp = x > 0 ? x + log1p(exp(-(double)x)) : log1p(e);
        note_error(&worst[3], fabs(softplus_approx(x) - sp) / fmax(1.0, fabs(x)));
        if (x < 0) /* ELU's negative side */
            note_error(&worst[4], fabs((exp_approx(x) - 1.0f) - expm1((double)x)));
        float v = (float)exp(xd / 8); /* log over e^-12.5 .. e^12.5 */
        note_error(&worst[5],
                   fabs(log_approx(v) - log((double)v)) / fmax(1.0, fabs(log((double)v))));
    }
    const char *names[6] = {"exp (rel)", "sigmoid", "tanh", "softplus", "elu", "log"};
    for (int i = 0; i < 6; i++)
        if (!(worst[i] < 1e-6))
            fail_msg("%s approximation error %g", names[i], worst[i]);
    /* the clamp keeps extreme inputs finite */
    assert_true(isfinite(exp_approx(1e30f)) && exp_approx(-1e30f) >= 0.0f);
    assert_true(softplus_approx(1e30f) == 1e30f && softplus_approx(-1e30f) == 0.0f);
}

static void test_kl_diag(void **state)
{
    (void)state;
    float m0[2] = {0, 1}, s0[2] = {1, 2}, m1[2] = {0.5f, -1}, s1[2] = {2, 0.5f};
    assert_true(fabsf(rssm_kl_diag(m0, s0, m0, s0, 2)) < 1e-7f);
    /* KL(N(0,1) || N(0.5, 2^2)) + KL(N(1, 2^2) || N(-1, 0.5^2)), computed by hand. */
    double want = (log(2.0) + (1 + 0.25) / 8 - 0.5) + (log(0.25) + (4 + 4) / 0.5 - 0.5);
    assert_true(fabs(rssm_kl_diag(m0, s0, m1, s1, 2) - want) < 1e-5);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.safetensors REF.safetensors\n", argv[0]);
        return 2;
    }
    model_path = argv[1];
    ref_path = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_observe_matches_pytorch),
        cmocka_unit_test(test_encode_matches_pytorch),
        cmocka_unit_test(test_batch_matches_pytorch),
        cmocka_unit_test(test_batch_matches_naive),
        cmocka_unit_test(test_shared_start_matches_rows),
        cmocka_unit_test(test_gemm_path),
        cmocka_unit_test(test_control_path_allocates_nothing),
        cmocka_unit_test(test_shared_model_threads),
        cmocka_unit_test(test_observe_rejects_null),
        cmocka_unit_test(test_observe_checks_obs_type),
        cmocka_unit_test(test_kl_diag),
        cmocka_unit_test(test_approximations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
