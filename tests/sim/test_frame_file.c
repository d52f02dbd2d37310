/*
 * test_frame_file.c: frames as PPM pictures (clients/sim/frame_file.c): the P6 header,
 * the bytes top row first as given, and refusals naming the file.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame_file.h"

static void test_ppm(void **state)
{
    (void)state;
    unsigned char rgb[3 * 2 * 3];
    for (size_t i = 0; i < sizeof(rgb); i++)
        rgb[i] = (unsigned char)(i * 13);
    char path[] = "/tmp/test_frame_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char err[256];
    assert_int_equal(sim_frame_write_ppm(path, rgb, 3, 2, err, sizeof(err)), 0);
    FILE *f = fopen(path, "rb");
    char buf[128];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    unlink(path);
    const char *header = "P6\n3 2\n255\n";
    assert_int_equal(n, strlen(header) + sizeof(rgb));
    assert_memory_equal(buf, header, strlen(header));
    assert_memory_equal(buf + strlen(header), rgb, sizeof(rgb));
}

static void test_refusals(void **state)
{
    (void)state;
    unsigned char rgb[3] = {0};
    char err[256];
    assert_int_equal(sim_frame_write_ppm("/nonexistent/dir/f.ppm", rgb, 1, 1, err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/dir/f.ppm"));
    assert_int_equal(sim_frame_write_ppm("/tmp/x.ppm", rgb, 0, 1, err, sizeof(err)), -EINVAL);
    if (access("/dev/full", W_OK) == 0) {
        static unsigned char big[64 * 64 * 3];
        assert_true(sim_frame_write_ppm("/dev/full", big, 64, 64, err, sizeof(err)) < 0);
        assert_non_null(strstr(err, "cannot write /dev/full"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ppm),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
