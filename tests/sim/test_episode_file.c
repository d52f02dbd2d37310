/*
 * test_episode_file.c: episode files (common/episode_file.c): names, no overwriting,
 * no temporary files left behind, refusal of non-finite values and bad task names, and the
 * optional uint8 image array.
 */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "episode_file.h"

typedef struct {
    char dir[64];
    float obs[3 * 2], act[2 * 1], rew[2];
    episode_t ep;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_episode_XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    for (int i = 0; i < 6; i++)
        f->obs[i] = (float)i;
    f->act[0] = 0.5f;
    f->act[1] = -0.5f;
    f->rew[0] = 1.0f;
    f->rew[1] = 0.25f;
    f->ep = (episode_t){.task = "unit-test",
                        .steps = 2,
                        .obs_dim = 2,
                        .act_dim = 1,
                        .observation = f->obs,
                        .action = f->act,
                        .reward = f->rew};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0))
            continue;
        snprintf(path, sizeof(path), "%s/%s", f->dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Number of directory entries (hidden temporaries included). */
static int count_files(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void test_name_and_sequence(void **state)
{
    fixture_t *f = *state;
    char path[512], first[512], err[256];
    unsigned seq = 0;
    assert_int_equal(
        episode_write(f->dir, &f->ep, &seq, first, sizeof(first), err, sizeof(err)), 0);
    assert_int_equal(seq, 1);
    /* DIR/unit-test-YYYYmmddTHHMMSS-000.npz */
    const char *base = first + strlen(f->dir) + 1;
    assert_int_equal(strncmp(base, "unit-test-", 10), 0);
    assert_int_equal(strlen(base), strlen("unit-test-20260101T000000-000.npz"));
    assert_int_equal(base[18], 'T');
    assert_string_equal(base + strlen(base) - 8, "-000.npz");
    FILE *fp = fopen(first, "rb");
    unsigned char sig[4];
    assert_int_equal(fread(sig, 1, 4, fp), 4);
    fclose(fp);
    assert_memory_equal(sig, "PK\x03\x04", 4);

    /* Asking for the same number again must not replace the first file. */
    seq = 0;
    assert_int_equal(episode_write(f->dir, &f->ep, &seq, path, sizeof(path), err, sizeof(err)),
                     0);
    assert_string_not_equal(path, first);
    assert_true(seq >= 1);
    assert_int_equal(access(first, R_OK), 0);
    assert_int_equal(count_files(f->dir), 2); /* no temporary file left */
}

static void test_refused(void **state)
{
    fixture_t *f = *state;
    char err[256];
    unsigned seq = 0;
    episode_t ep = f->ep;
    f->rew[1] = NAN;
    assert_true(episode_write(f->dir, &ep, &seq, NULL, 0, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "reward[1]"));
    f->rew[1] = 0;
    f->obs[5] = INFINITY;
    assert_true(episode_write(f->dir, &ep, &seq, NULL, 0, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "observation[5]"));
    f->obs[5] = 0;
    ep.task = "../escape";
    assert_true(episode_write(f->dir, &ep, &seq, NULL, 0, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "../escape"));
    ep = f->ep;
    ep.steps = 0;
    assert_true(episode_write(f->dir, &ep, &seq, NULL, 0, err, sizeof(err)) < 0);
    assert_true(episode_write("/nonexistent/dir", &f->ep, &seq, NULL, 0, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "/nonexistent/dir"));
    assert_int_equal(count_files(f->dir), 0);
    assert_int_equal(seq, 0);
}

/* Writes ep and reads the file back into buf (it must fit); returns its length. */
static size_t write_and_read(const char *dir, const episode_t *ep, unsigned *seq, char *buf,
                             size_t cap)
{
    char path[512], err[256];
    assert_int_equal(episode_write(dir, ep, seq, path, sizeof(path), err, sizeof(err)), 0);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t len = fread(buf, 1, cap, fp);
    fclose(fp);
    assert_true(len > 0 && len < cap);
    return len;
}

/* With images: a fourth member "image.npy", uint8 [T+1, H, W, 3], holding the bytes given
 * (numpy's reading of it is tested by tests/sim/test_sim_cli.py). */
static void test_images(void **state)
{
    fixture_t *f = *state;
    unsigned char img[3 * 2 * 4 * 3];
    for (size_t i = 0; i < sizeof(img); i++)
        img[i] = (unsigned char)(i * 7);
    episode_t ep = f->ep;
    ep.image = img;
    ep.image_height = 2;
    ep.image_width = 4;
    ep.image_channels = 3;
    char err[256];
    unsigned seq = 0;
    static char z[4096];
    size_t len = write_and_read(f->dir, &ep, &seq, z, sizeof(z));
    const char *want = "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 4, 3), }";
    const char *hdr = memmem(z, len, want, strlen(want));
    assert_non_null(hdr);
    assert_memory_equal(hdr - 10 - 9, "image.npy", 9); /* the member's name, then magic */
    const char *data = memchr(hdr, '\n', len - (size_t)(hdr - z));
    assert_non_null(data);
    assert_memory_equal(data + 1, img, sizeof(img));
    /* Images without a size, or of 2 channels, are refused. */
    ep.image_width = 0;
    assert_true(episode_write(f->dir, &ep, &seq, NULL, 0, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "images"));
    ep.image_width = 4;
    ep.image_channels = 2;
    assert_true(episode_write(f->dir, &ep, &seq, NULL, 0, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "images"));
}

/* A camera robot's episode: grey images and no observation vector ([T+1, 0]). */
static void test_images_only(void **state)
{
    fixture_t *f = *state;
    unsigned char img[3 * 2 * 4];
    memset(img, 9, sizeof(img));
    episode_t ep = f->ep;
    ep.obs_dim = 0;
    ep.observation = NULL;
    ep.image = img;
    ep.image_height = 2;
    ep.image_width = 4;
    ep.image_channels = 1;
    char err[256];
    unsigned seq = 0;
    static char z[4096];
    size_t len = write_and_read(f->dir, &ep, &seq, z, sizeof(z));
    const char *obs = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0), }";
    const char *grey = "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 4, 1), }";
    assert_non_null(memmem(z, len, obs, strlen(obs)));
    assert_non_null(memmem(z, len, grey, strlen(grey)));
    ep.image = NULL; /* no observation and no image: nothing to learn from */
    assert_true(episode_write(f->dir, &ep, &seq, NULL, 0, err, sizeof(err)) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_name_and_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_images, setup, teardown),
        cmocka_unit_test_setup_teardown(test_images_only, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
