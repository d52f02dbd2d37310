/*
 * test_npz.c: the .npz writer (common/npz.c): npy headers, CRC-32, and an archive parsed
 * back here field by field (local headers, central directory, end record, CRCs), plus
 * refused names, shapes and too many arrays. numpy's own reading of the files is checked
 * by test_sim_cli.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "npz.h"

static uint32_t get16(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t get32(const unsigned char *p)
{
    return get16(p) | get16(p + 2) << 16;
}

static void test_crc32_check_value(void **state)
{
    (void)state;
    /* The CRC-32 check value of the ASCII digits 1..9. */
    assert_int_equal(npz_crc32(0, "123456789", 9), 0xCBF43926u);
    /* Continuing a CRC over a split buffer gives the same result. */
    assert_int_equal(npz_crc32(npz_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
    assert_int_equal(npz_crc32(0, "", 0), 0);
}

static void test_npy_header(void **state)
{
    (void)state;
    char buf[256];
    size_t shape2[2] = {126, 5}, shape1[1] = {125};
    int n = npz_npy_header(buf, sizeof(buf), NPZ_F32, shape2, 2);
    assert_true(n > 10);
    assert_int_equal(n % 64, 0);
    assert_memory_equal(buf, "\x93NUMPY\x01\x00", 8);
    assert_int_equal(get16((unsigned char *)buf + 8), n - 10);
    assert_int_equal(buf[n - 1], '\n');
    buf[n - 1] = '\0';
    assert_non_null(
        strstr(buf + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (126, 5), }"));
    n = npz_npy_header(buf, sizeof(buf), NPZ_F32, shape1, 1);
    buf[n - 1] = '\0';
    assert_non_null(strstr(buf + 10, "'shape': (125,), }"));
    n = npz_npy_header(buf, sizeof(buf), NPZ_F32, NULL, 0);
    buf[n - 1] = '\0';
    assert_non_null(strstr(buf + 10, "'shape': (), }"));
    size_t shape4[4] = {126, 64, 64, 3};
    n = npz_npy_header(buf, sizeof(buf), NPZ_U8, shape4, 4);
    assert_int_equal(n % 64, 0);
    buf[n - 1] = '\0';
    assert_non_null(strstr(
        buf + 10, "{'descr': '|u1', 'fortran_order': False, 'shape': (126, 64, 64, 3), }"));
    assert_true(npz_npy_header(buf, sizeof(buf), (npz_dtype_t)7, shape2, 2) < 0);
    assert_true(npz_npy_header(buf, 20, NPZ_F32, shape2, 2) < 0);
    assert_true(npz_npy_header(buf, sizeof(buf), NPZ_F32, shape2, NPZ_MAX_NDIM + 1) < 0);
}

/* Reads the whole stream back into memory. */
static unsigned char *slurp(FILE *f, long *len)
{
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    rewind(f);
    unsigned char *buf = malloc((size_t)*len);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)*len, f), (size_t)*len);
    return buf;
}

/* Walks the archive from its end record and checks every member against what was
 * written: names, sizes, offsets, CRCs and the float32 and uint8 data after the npy header. */
static void test_archive_layout(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    npz_writer_t *w;
    char err[256];
    float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {-1.5f, 0.0f, 1e30f};
    unsigned char c[2 * 2 * 3] = {0, 1, 2, 127, 128, 255, 9, 8, 7, 6, 5, 4};
    size_t sa[2] = {2, 3}, sb[1] = {3}, sc[3] = {2, 2, 3};
    assert_int_equal(npz_open(f, &w, err, sizeof(err)), 0);
    assert_int_equal(npz_add_f32(w, "observation", a, sa, 2, err, sizeof(err)), 0);
    assert_int_equal(npz_add_f32(w, "reward", b, sb, 1, err, sizeof(err)), 0);
    assert_int_equal(npz_add_u8(w, "image", c, sc, 3, err, sizeof(err)), 0);
    assert_int_equal(npz_close(w, err, sizeof(err)), 0);

    long len;
    unsigned char *z = slurp(f, &len);
    fclose(f);
    const unsigned char *end = z + len - 22;
    assert_int_equal(get32(end), 0x06054b50u);
    assert_int_equal(get16(end + 8), 3);
    assert_int_equal(get16(end + 10), 3);
    uint32_t dir_size = get32(end + 12), dir_off = get32(end + 16);
    assert_int_equal(dir_off + dir_size, len - 22);

    const char *names[3] = {"observation.npy", "reward.npy", "image.npy"};
    const void *data[3] = {a, b, c};
    size_t bytes[3] = {sizeof(a), sizeof(b), sizeof(c)};
    const unsigned char *ch = z + dir_off;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(get32(ch), 0x02014b50u);
        assert_int_equal(get16(ch + 10), 0); /* stored */
        uint32_t crc = get32(ch + 16), csize = get32(ch + 20), usize = get32(ch + 24);
        uint32_t name_len = get16(ch + 28), off = get32(ch + 42);
        assert_int_equal(csize, usize);
        assert_int_equal(name_len, strlen(names[i]));
        assert_memory_equal(ch + 46, names[i], name_len);
        const unsigned char *lh = z + off;
        assert_int_equal(get32(lh), 0x04034b50u);
        assert_int_equal(get32(lh + 14), crc);
        assert_int_equal(get32(lh + 18), csize);
        assert_int_equal(get16(lh + 26), name_len);
        assert_memory_equal(lh + 30, names[i], name_len);
        const unsigned char *member = lh + 30 + name_len;
        assert_int_equal(npz_crc32(0, member, usize), crc);
        uint32_t hlen = 10 + get16(member + 8);
        assert_int_equal(usize, hlen + bytes[i]);
        assert_memory_equal(member + hlen, data[i], bytes[i]);
        ch += 46 + name_len;
    }
    free(z);
}

static void test_refusals(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    npz_writer_t *w;
    char err[256];
    float x = 1;
    size_t s1[1] = {1};
    assert_int_equal(npz_open(f, &w, err, sizeof(err)), 0);
    assert_true(npz_add_f32(w, "", &x, s1, 1, err, sizeof(err)) < 0);
    assert_true(npz_add_f32(w, "a/b", &x, s1, 1, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "a/b"));
    assert_true(npz_add_f32(w, "x", NULL, s1, 1, err, sizeof(err)) < 0);
    assert_true(npz_add_f32(w, "x", &x, s1, -1, err, sizeof(err)) < 0);
    /* A shape whose byte count cannot fit in a classic zip. */
    size_t huge[2] = {1u << 20, 1u << 20};
    assert_true(npz_add_f32(w, "huge", &x, huge, 2, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "4 GiB"));
    /* 1.5 G floats are past 4 GiB; as many bytes are not. */
    size_t big[2] = {3u << 19, 1u << 10};
    assert_true(npz_add_f32(w, "big", &x, big, 2, err, sizeof(err)) < 0);
    assert_true(npz_add(w, "x", (npz_dtype_t)7, &x, s1, 1, err, sizeof(err)) < 0);
    assert_int_equal(npz_add_f32(w, "x", &x, s1, 1, err, sizeof(err)), 0);
    assert_true(npz_add_f32(w, "x", &x, s1, 1, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "already"));
    char name[8];
    for (int i = 1; i < NPZ_MAX_ARRAYS; i++) {
        snprintf(name, sizeof(name), "a%d", i);
        assert_int_equal(npz_add_f32(w, name, &x, s1, 1, err, sizeof(err)), 0);
    }
    assert_true(npz_add_f32(w, "one_more", &x, s1, 1, err, sizeof(err)) < 0);
    assert_int_equal(npz_close(w, err, sizeof(err)), 0);
    npz_close(NULL, err, sizeof(err));
    npz_abort(NULL);
    assert_true(npz_open(NULL, &w, err, sizeof(err)) < 0);
    fclose(f);
}

/* A full stream: the error names the failure and nothing crashes. */
static void test_write_error(void **state)
{
    (void)state;
    FILE *f = fopen("/dev/full", "wb");
    if (f == NULL)
        skip();
    setvbuf(f, NULL, _IONBF, 0);
    npz_writer_t *w;
    char err[256] = "";
    float x[4] = {0};
    size_t s[1] = {4};
    assert_int_equal(npz_open(f, &w, err, sizeof(err)), 0);
    assert_true(npz_add_f32(w, "x", x, s, 1, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "write failed"));
    npz_abort(w);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32_check_value), cmocka_unit_test(test_npy_header),
        cmocka_unit_test(test_archive_layout),    cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_write_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
