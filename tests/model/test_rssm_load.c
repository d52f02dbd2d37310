/*
 * test_rssm_load.c: the model loader refuses every broken file with the right error.
 *
 * Usage: test_rssm_load CORPUS_DIR
 * CORPUS_DIR comes from make_bad_files.py: good.safetensors plus one broken file per
 * failure mode and manifest.json listing {file, code, message}. Each corpus entry must give
 * exactly that rssm_err_t from both rssm_load and rssm_load_buffer, a NULL model, and a
 * message containing the expected text (which names the tensor or field). The good files
 * (vector and image) are also checked field by field, cut at every length, and corrupted
 * byte by byte: none of that may crash or leak (run under ASan in CI).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rssm.h"

static const char *corpus_dir;

typedef struct bad_case {
    char *file;
    int code;
    char *message;
} bad_case_t;

static int code_from_name(const char *name)
{
    if (strcmp(name, "OK") == 0)
        return 0;
#define XX(n, val, msg)                                                                        \
    if (strcmp(name, #n) == 0)                                                                 \
        return val;
    RSSM_ERRNO_MAP(XX)
#undef XX
    return 1; /* never a loader result: makes the case fail loudly */
}

static char *path_in_corpus(const char *file)
{
    size_t n = strlen(corpus_dir) + strlen(file) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", corpus_dir, file);
    return p;
}

static void *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = 0;
    *size = (size_t)n;
    return buf;
}

static void check_case(void **state)
{
    const bad_case_t *c = *state;
    char *path = path_in_corpus(c->file);
    char err[512] = "";
    rssm_model_t *m = (rssm_model_t *)&err; /* must be reset to NULL on failure */
    int rc = rssm_load(path, &m, err, sizeof err);
    if (rc != c->code)
        fail_msg("%s: rssm_load returned %d (%s), expected %d; message: %s", c->file, rc,
                 rssm_strerror(rc), c->code, err);
    if (rc != 0) {
        assert_null(m);
        if (!strstr(err, c->message))
            fail_msg("%s: message \"%s\" does not mention \"%s\"", c->file, err, c->message);
    }
    rssm_destroy(m);

    size_t size;
    void *buf = read_all(path, &size);
    m = NULL;
    err[0] = 0;
    rc = rssm_load_buffer(buf, size, &m, err, sizeof err);
    assert_int_equal(rc, c->code);
    if (rc != 0)
        assert_non_null(strstr(err, c->message));
    rssm_destroy(m);
    free(buf);
    free(path);
}

static void test_good_model_fields(void **state)
{
    (void)state;
    char *path = path_in_corpus("good.safetensors");
    char err[512] = "";
    rssm_model_t *m = NULL;
    assert_int_equal(rssm_load(path, &m, err, sizeof err), 0);
    const rssm_info_t *info = rssm_info(m);
    /* make_bad_files.py: DIMS, elu, value head and decoder, task "corpus", name "good" */
    assert_int_equal(info->dims.obs, 4);
    assert_int_equal(info->dims.action, 2);
    assert_int_equal(info->dims.deter, 12);
    assert_int_equal(info->dims.stoch, 3);
    assert_int_equal(info->dims.hidden, 10);
    assert_int_equal(info->dims.embed, 6);
    assert_int_equal(info->activation, RSSM_ACT_ELU);
    assert_true(info->has_value && info->has_decoder);
    assert_string_equal(info->task, "corpus");
    assert_string_equal(info->name, "good");
    assert_int_equal(info->format_major, 1);
    assert_true(info->action_low[0] == -1.0f && info->action_high[1] == 1.0f);
    assert_true(info->discount > 0.98 && info->discount < 1.0);
    assert_string_equal(rssm_metadata(m, "format"), "mpc-rssm");
    assert_null(rssm_metadata(m, "no-such-key"));
    assert_int_equal(rssm_tensor_count(m), 38);
    /* tensors in file order; params = sum of shapes */
    int64_t params = 0;
    for (int i = 0; i < rssm_tensor_count(m); i++) {
        const char *name;
        int rank, shape[4];
        rssm_tensor_at(m, i, &name, &rank, shape);
        int64_t c = 1;
        for (int k = 0; k < rank; k++)
            c *= shape[k];
        params += c;
        if (i == 0)
            assert_string_equal(name, "obs_mean");
    }
    assert_int_equal(rssm_param_count(m), params);
    /* D=12 S=3 H=10 A=2: transition 2*10*5 + 2*36*10 + 2*36*12, prior 2*10*12 + 2*6*10,
     * reward and value 2*(2*10*15 + 2*10*10 + 2*10) each. */
    int64_t want = 100 + 720 + 864 + 240 + 120 + 2 * (300 + 200 + 20);
    assert_int_equal(rssm_flops_per_imagine_step(m), want);
    for (int i = 0; i < rssm_metadata_count(m); i++) {
        const char *k, *v;
        rssm_metadata_at(m, i, &k, &v);
        assert_non_null(k);
        assert_string_equal(rssm_metadata(m, k), v);
    }
    rssm_destroy(m);
    free(path);
}

static void test_good_image_model_fields(void **state)
{
    (void)state;
    char *path = path_in_corpus("image-good.safetensors");
    char err[512] = "";
    rssm_model_t *m = NULL;
    if (rssm_load(path, &m, err, sizeof err) != 0)
        fail_msg("%s", err);
    const rssm_info_t *info = rssm_info(m);
    /* make_bad_files.py: IMAGE (62x78x3, d 2), relu, value head, no decoder */
    assert_int_equal(info->image_height, 62);
    assert_int_equal(info->image_width, 78);
    assert_int_equal(info->image_channels, 3);
    assert_int_equal(info->conv_depth, 2);
    assert_int_equal(info->dims.obs, 62 * 78 * 3);
    assert_int_equal(info->dims.embed, 6);
    assert_true(info->has_value && !info->has_decoder);
    assert_int_equal(info->format_major, 1);
    assert_true(info->format_minor >= 1);
    assert_string_equal(rssm_metadata(m, "obs_type"), "image");
    /* x / 255 - 0.5 in the vector models' form: (x - 127.5) / 255 */
    for (int i = 0; i < info->dims.obs; i += 997)
        assert_true(info->obs_mean[i] == 127.5f && info->obs_std[i] == 255.0f);
    /* 26 core tensors less the vector encoder's 6, the conv encoder's 10, the value head's 6 */
    assert_int_equal(rssm_tensor_count(m), 36);
    const char *name;
    int rank, shape[4];
    rssm_tensor_at(m, 0, &name, &rank, shape);
    assert_string_equal(name, "conv_encoder.0.weight");
    assert_int_equal(rank, 4);
    assert_true(shape[0] == 2 && shape[1] == 3 && shape[2] == 4 && shape[3] == 4);
    size_t ws = rssm_observe_workspace(m);
    assert_true(ws >= (size_t)info->dims.obs); /* the normalised image at least */
    rssm_destroy(m);

    /* the vector model's image fields are all 0 */
    char *vpath = path_in_corpus("good.safetensors");
    assert_int_equal(rssm_load(vpath, &m, err, sizeof err), 0);
    info = rssm_info(m);
    assert_true(info->image_height == 0 && info->image_width == 0 &&
                info->image_channels == 0 && info->conv_depth == 0);
    assert_null(rssm_metadata(m, "obs_type"));
    rssm_destroy(m);
    free(vpath);
    free(path);
}

static void test_io_errors(void **state)
{
    (void)state;
    char err[256] = "";
    rssm_model_t *m = NULL;
    assert_int_equal(rssm_load("/nonexistent/model.safetensors", &m, err, sizeof err),
                     RSSM_EIO);
    assert_non_null(strstr(err, "/nonexistent/model.safetensors"));
    assert_int_equal(rssm_load(corpus_dir, &m, err, sizeof err), RSSM_EIO);
    assert_null(m);
    assert_int_equal(rssm_load_buffer("", 0, NULL, err, sizeof err), RSSM_EINVALID);
    assert_int_equal(rssm_load_buffer(NULL, 0, &m, NULL, 0), RSSM_EFORMAT);
    assert_string_equal(rssm_strerror(RSSM_EVERSION), "unsupported format version");
}

/* librssm's codes have their own range (-5001..-5099): none equals a negative errno or a
 * libuv error, so "a negative errno or an rssm_err_t" is never ambiguous; rssm_strerror
 * reads both. */
static void test_error_codes(void **state)
{
    (void)state;
    static const int codes[] = {
#define XX(n, val, msg) RSSM_E##n,
        RSSM_ERRNO_MAP(XX)
#undef XX
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_true(codes[i] <= -5001 && codes[i] >= -5099);
        assert_string_not_equal(rssm_strerror(codes[i]), "unknown error");
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(codes[i], codes[j]);
    }
    assert_string_equal(rssm_strerror(0), "success");
    assert_string_equal(rssm_strerror(-ENOENT), strerror(ENOENT));
    assert_string_equal(rssm_strerror(-EPERM), strerror(EPERM));
    assert_string_equal(rssm_strerror(-5099), "unknown error");
    assert_string_equal(rssm_strerror(1), "unknown error");
}

/* rssm_load_fd: size cap, non-regular files, and OPAQUE: a file that is not a model is
 * named but none of its bytes reach the message (the header length its first 8 bytes
 * would make included); a broken model keeps its detailed message. */
static void test_load_fd_opaque(void **state)
{
    (void)state;
    char err[512] = "";
    rssm_model_t *m = NULL;
    char path[] = "/tmp/test_rssm_load_secret_XXXXXX";
    int fd = mkstemp(path);
    const char secret[] = "root:*:20000:0:99999:7:::SECRET";
    assert_int_equal(write(fd, secret, sizeof secret - 1), (ssize_t)(sizeof secret - 1));
    assert_false(rssm_looks_like_model(secret, sizeof secret - 1));
    assert_int_equal(rssm_load_fd(fd, "notes", 0, RSSM_LOAD_OPAQUE, &m, err, sizeof err),
                     RSSM_EFORMAT);
    assert_null(m);
    assert_non_null(strstr(err, "not an mpc-rssm model file"));
    assert_null(strstr(err, "root"));
    assert_null(strstr(err, "SECRET"));
    char number[32];
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | (unsigned char)secret[i];
    snprintf(number, sizeof number, "%llu", (unsigned long long)n);
    assert_null(strstr(err, number));
    /* Without OPAQUE the header-length diagnosis stays (the operator's own file). */
    assert_int_equal(rssm_load_fd(fd, "notes", 0, 0, &m, err, sizeof err), RSSM_EFORMAT);
    assert_non_null(strstr(err, "header length"));
    assert_int_equal(rssm_load_fd(fd, "notes", 8, 0, &m, err, sizeof err), RSSM_EIO);
    assert_non_null(strstr(err, "larger than the limit"));
    close(fd);
    unlink(path);

    /* A real model looks like one, and a truncated one keeps its detailed message. */
    char *good = path_in_corpus("good.safetensors");
    size_t size;
    void *data = read_all(good, &size);
    assert_true(rssm_looks_like_model(data, size));
    char trunc[] = "/tmp/test_rssm_load_trunc_XXXXXX";
    fd = mkstemp(trunc);
    assert_int_equal(write(fd, data, size - 4), (ssize_t)(size - 4));
    assert_int_not_equal(rssm_load_fd(fd, "t", 0, RSSM_LOAD_OPAQUE, &m, err, sizeof err), 0);
    assert_null(strstr(err, "not an mpc-rssm model file"));
    close(fd);
    unlink(trunc);
    fd = open(good, O_RDONLY);
    assert_int_equal(rssm_load_fd(fd, good, 0, RSSM_LOAD_OPAQUE, &m, err, sizeof err), 0);
    rssm_destroy(m);
    close(fd);
    fd = open("/tmp", O_RDONLY | O_DIRECTORY);
    assert_int_equal(rssm_load_fd(fd, "/tmp", 0, 0, &m, err, sizeof err), RSSM_EIO);
    assert_non_null(strstr(err, "not a regular file"));
    close(fd);
    free(data);
    free(good);
}

static const char *const good_files[] = {"good.safetensors", "image-good.safetensors"};

/* Every prefix shorter than the whole file must be refused (never a crash). */
static void test_every_truncation_refused(void **state)
{
    const char *file = *state;
    char *path = path_in_corpus(file);
    size_t size;
    unsigned char *buf = read_all(path, &size);
    for (size_t n = 0; n < size; n += (n < 4096 ? 1 : 61)) {
        rssm_model_t *m = NULL;
        char err[256];
        int rc = rssm_load_buffer(buf, n, &m, err, sizeof err);
        if (rc == 0)
            fail_msg("prefix of %zu/%zu bytes was accepted", n, size);
        assert_null(m);
    }
    free(buf);
    free(path);
}

/* Single corrupted bytes: the loader either refuses or loads a model it fully validated. */
static void test_corrupted_bytes_never_crash(void **state)
{
    const char *file = *state;
    char *path = path_in_corpus(file);
    size_t size;
    unsigned char *buf = read_all(path, &size);
    static const unsigned char values[] = {0x00, 0xff, '"', '9', '{', 0x7f};
    for (size_t i = 0; i < size; i += (i < 4096 ? 1 : 97)) {
        unsigned char saved = buf[i];
        buf[i] = values[i % sizeof values];
        rssm_model_t *m = NULL;
        char err[256];
        if (rssm_load_buffer(buf, size, &m, err, sizeof err) == 0)
            assert_non_null(m);
        rssm_destroy(m);
        buf[i] = saved;
    }
    free(buf);
    free(path);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR (written by make_bad_files.py)\n", argv[0]);
        return 2;
    }
    corpus_dir = argv[1];
    char *mpath = path_in_corpus("manifest.json");
    size_t size;
    char *text = read_all(mpath, &size);
    cJSON *manifest = cJSON_Parse(text);
    if (!cJSON_IsArray(manifest)) {
        fprintf(stderr, "%s: not a JSON array\n", mpath);
        return 1;
    }
    int ncases = cJSON_GetArraySize(manifest);
    const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_good_model_fields),
        cmocka_unit_test(test_good_image_model_fields),
        cmocka_unit_test(test_io_errors),
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_load_fd_opaque),
        cmocka_unit_test_prestate(test_every_truncation_refused, (void *)good_files[0]),
        cmocka_unit_test_prestate(test_every_truncation_refused, (void *)good_files[1]),
        cmocka_unit_test_prestate(test_corrupted_bytes_never_crash, (void *)good_files[0]),
        cmocka_unit_test_prestate(test_corrupted_bytes_never_crash, (void *)good_files[1]),
    };
    const int nfixed = (int)(sizeof fixed / sizeof fixed[0]);
    bad_case_t *cases = calloc((size_t)ncases, sizeof *cases);
    struct CMUnitTest *tests = calloc((size_t)(ncases + nfixed), sizeof *tests);
    memcpy(tests, fixed, sizeof fixed);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, manifest)
    {
        cases[i].file = cJSON_GetObjectItem(e, "file")->valuestring;
        cases[i].code = code_from_name(cJSON_GetObjectItem(e, "code")->valuestring);
        cases[i].message = cJSON_GetObjectItem(e, "message")->valuestring;
        tests[nfixed + i] =
            (struct CMUnitTest){cases[i].file, check_case, NULL, NULL, &cases[i]};
        i++;
    }
    int rc = _cmocka_run_group_tests("rssm_load", tests, (size_t)(ncases + nfixed), NULL, NULL);
    free(tests);
    free(cases);
    cJSON_Delete(manifest);
    free(text);
    free(mpath);
    return rc;
}
