/*
 * npz.c: streaming writer of uncompressed NumPy .npz archives (see npz.h).
 *
 * Layout per array: zip local header, "<name>.npy" = npy 1.0 header + raw data
 * (float32 or uint8).
 * After the last array: the central directory and the end-of-central-directory record.
 * Timestamps are fixed (1980-01-01) so that the same episode gives the same bytes.
 */
#include "npz.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"

#define ZIP_LIMIT     0xFFFFFFFFull /* classic zip: 32-bit sizes and offsets */
#define DOS_DATE_1980 0x0021        /* 1980-01-01 */

typedef struct {
    char name[NPZ_MAX_NAME + 5]; /* + ".npy" */
    uint32_t crc, size, offset;
} npz_entry_t;

struct npz_writer {
    FILE *f;
    uint64_t offset; /* bytes written so far */
    int n;
    npz_entry_t entry[NPZ_MAX_ARRAYS];
};

unsigned long npz_crc32(unsigned long crc, const void *data, size_t n)
{
    /* Table built on first use; the race is benign (every thread writes the same values). */
    static uint32_t table[256];
    static volatile int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    const unsigned char *p = data;
    uint32_t c = (uint32_t)crc ^ 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* numpy's name and the size of an element. */
static const char *descr(npz_dtype_t dtype)
{
    switch (dtype) {
    case NPZ_F32:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return ">f4";
#else
        return "<f4";
#endif
    case NPZ_U8:
        return "|u1";
    }
    return NULL;
}

static size_t itemsize(npz_dtype_t dtype)
{
    return dtype == NPZ_F32 ? sizeof(float) : 1;
}

int npz_npy_header(char *buf, size_t cap, npz_dtype_t dtype, const size_t *shape, int ndim)
{
    if (ndim < 0 || ndim > NPZ_MAX_NDIM || cap < 16 || descr(dtype) == NULL)
        return -EINVAL;
    char dict[256];
    int len = snprintf(dict, sizeof(dict), "{'descr': '%s', 'fortran_order': False, 'shape': (",
                       descr(dtype));
    for (int i = 0; i < ndim; i++)
        len += snprintf(dict + len, sizeof(dict) - (size_t)len, i == 0 ? "%zu" : ", %zu",
                        shape[i]);
    len += snprintf(dict + len, sizeof(dict) - (size_t)len, "%s), }", ndim == 1 ? "," : "");
    if (len <= 0 || (size_t)len >= sizeof(dict))
        return -EOVERFLOW;
    /* magic(6) + version(2) + header_len(2) + dict + spaces + '\n', a multiple of 64. */
    size_t total = (10 + (size_t)len + 1 + 63) / 64 * 64;
    if (total > cap)
        return -ENOSPC;
    size_t hlen = total - 10;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)(hlen & 0xFF);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)len);
    memset(buf + 10 + len, ' ', total - 10 - (size_t)len - 1);
    buf[total - 1] = '\n';
    return (int)total;
}

static void put16(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    put16(p, v & 0xFFFF);
    put16(p + 2, v >> 16);
}

static int write_all(npz_writer_t *w, const void *p, size_t n, char *err, size_t errlen)
{
    if (n > 0 && fwrite(p, 1, n, w->f) != n) {
        int e = errno ? errno : EIO;
        errbuf_set(err, errlen, "npz: write failed: %s", strerror(e));
        return -e;
    }
    w->offset += n;
    return 0;
}

int npz_open(FILE *f, npz_writer_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (f == NULL) {
        errbuf_set(err, errlen, "npz: no output stream");
        return -EINVAL;
    }
    npz_writer_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        errbuf_set(err, errlen, "npz: out of memory");
        return -ENOMEM;
    }
    w->f = f;
    *out = w;
    return 0;
}

static int check_name(const npz_writer_t *w, const char *name, char *err, size_t errlen)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > NPZ_MAX_NAME) {
        errbuf_set(err, errlen, "npz: array name must have 1 to %d characters", NPZ_MAX_NAME);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-')) {
            errbuf_set(err, errlen,
                       "npz: array name '%s' has a character other than [A-Za-z0-9_-]", name);
            return -EINVAL;
        }
    }
    char full[NPZ_MAX_NAME + 5];
    snprintf(full, sizeof(full), "%s.npy", name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->entry[i].name, full) == 0) {
            errbuf_set(err, errlen, "npz: array '%s' is already in the archive", name);
            return -EEXIST;
        }
    return 0;
}

int npz_add(npz_writer_t *w, const char *name, npz_dtype_t dtype, const void *data,
            const size_t *shape, int ndim, char *err, size_t errlen)
{
    if (w == NULL || (ndim > 0 && shape == NULL) || descr(dtype) == NULL) {
        errbuf_set(err, errlen, "npz: invalid argument");
        return -EINVAL;
    }
    int rc = check_name(w, name, err, errlen);
    if (rc < 0)
        return rc;
    if (w->n == NPZ_MAX_ARRAYS) {
        errbuf_set(err, errlen, "npz: more than %d arrays", NPZ_MAX_ARRAYS);
        return -ENOSPC;
    }
    if (ndim < 0 || ndim > NPZ_MAX_NDIM) {
        errbuf_set(err, errlen, "npz: array '%s': rank %d outside 0..%d", name, ndim,
                   NPZ_MAX_NDIM);
        return -EINVAL;
    }
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] != 0 && count > ZIP_LIMIT / itemsize(dtype) / shape[i]) {
            errbuf_set(err, errlen, "npz: array '%s' is larger than 4 GiB", name);
            return -EFBIG;
        }
        count *= shape[i];
    }
    if (count > 0 && data == NULL) {
        errbuf_set(err, errlen, "npz: array '%s' has no data", name);
        return -EINVAL;
    }
    char hdr[512];
    int hlen = npz_npy_header(hdr, sizeof(hdr), dtype, shape, ndim);
    if (hlen < 0) {
        errbuf_set(err, errlen, "npz: array '%s': shape too long for an npy header", name);
        return hlen;
    }
    uint64_t bytes = count * itemsize(dtype);
    uint64_t size = (uint64_t)hlen + bytes;
    npz_entry_t *e = &w->entry[w->n];
    snprintf(e->name, sizeof(e->name), "%s.npy", name);
    size_t name_len = strlen(e->name);
    if (size > ZIP_LIMIT || w->offset + 30 + name_len + size > ZIP_LIMIT) {
        errbuf_set(err, errlen, "npz: array '%s' would take the archive past 4 GiB", name);
        return -EFBIG;
    }
    e->crc = (uint32_t)npz_crc32(npz_crc32(0, hdr, (size_t)hlen), data, (size_t)bytes);
    e->size = (uint32_t)size;
    e->offset = (uint32_t)w->offset;

    unsigned char lh[30];
    put32(lh, 0x04034b50); /* local file header signature */
    put16(lh + 4, 20);     /* version needed: 2.0 */
    put16(lh + 6, 0);      /* flags */
    put16(lh + 8, 0);      /* method: stored */
    put16(lh + 10, 0);     /* time 00:00 */
    put16(lh + 12, DOS_DATE_1980);
    put32(lh + 14, e->crc);
    put32(lh + 18, e->size); /* compressed size */
    put32(lh + 22, e->size); /* uncompressed size */
    put16(lh + 26, (uint32_t)name_len);
    put16(lh + 28, 0); /* extra field length */
    if ((rc = write_all(w, lh, sizeof(lh), err, errlen)) < 0 ||
        (rc = write_all(w, e->name, name_len, err, errlen)) < 0 ||
        (rc = write_all(w, hdr, (size_t)hlen, err, errlen)) < 0 ||
        (rc = write_all(w, data, (size_t)bytes, err, errlen)) < 0)
        return rc;
    w->n++;
    return 0;
}

int npz_add_f32(npz_writer_t *w, const char *name, const float *data, const size_t *shape,
                int ndim, char *err, size_t errlen)
{
    return npz_add(w, name, NPZ_F32, data, shape, ndim, err, errlen);
}

int npz_add_u8(npz_writer_t *w, const char *name, const unsigned char *data,
               const size_t *shape, int ndim, char *err, size_t errlen)
{
    return npz_add(w, name, NPZ_U8, data, shape, ndim, err, errlen);
}

static int write_directory(npz_writer_t *w, char *err, size_t errlen)
{
    uint64_t start = w->offset;
    int rc;
    for (int i = 0; i < w->n; i++) {
        const npz_entry_t *e = &w->entry[i];
        size_t name_len = strlen(e->name);
        unsigned char ch[46];
        put32(ch, 0x02014b50); /* central directory header signature */
        put16(ch + 4, 20);     /* version made by: 2.0, MS-DOS attributes */
        put16(ch + 6, 20);     /* version needed */
        put16(ch + 8, 0);
        put16(ch + 10, 0);
        put16(ch + 12, 0);
        put16(ch + 14, DOS_DATE_1980);
        put32(ch + 16, e->crc);
        put32(ch + 20, e->size);
        put32(ch + 24, e->size);
        put16(ch + 28, (uint32_t)name_len);
        put16(ch + 30, 0); /* extra */
        put16(ch + 32, 0); /* comment */
        put16(ch + 34, 0); /* disk number */
        put16(ch + 36, 0); /* internal attributes */
        put32(ch + 38, 0); /* external attributes */
        put32(ch + 42, e->offset);
        if ((rc = write_all(w, ch, sizeof(ch), err, errlen)) < 0 ||
            (rc = write_all(w, e->name, name_len, err, errlen)) < 0)
            return rc;
    }
    uint64_t dir_size = w->offset - start;
    if (w->offset + 22 > ZIP_LIMIT) {
        errbuf_set(err, errlen, "npz: archive larger than 4 GiB");
        return -EFBIG;
    }
    unsigned char end[22];
    put32(end, 0x06054b50); /* end of central directory signature */
    put16(end + 4, 0);
    put16(end + 6, 0);
    put16(end + 8, (uint32_t)w->n);
    put16(end + 10, (uint32_t)w->n);
    put32(end + 12, (uint32_t)dir_size);
    put32(end + 16, (uint32_t)start);
    put16(end + 20, 0); /* comment length */
    return write_all(w, end, sizeof(end), err, errlen);
}

int npz_close(npz_writer_t *w, char *err, size_t errlen)
{
    if (w == NULL)
        return 0;
    int rc = write_directory(w, err, errlen);
    if (rc == 0 && fflush(w->f) != 0) {
        rc = errno ? -errno : -EIO;
        errbuf_set(err, errlen, "npz: write failed: %s", strerror(-rc));
    }
    free(w);
    return rc;
}

void npz_abort(npz_writer_t *w)
{
    free(w);
}
