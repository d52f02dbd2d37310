/*
 * npz.h: a small writer of NumPy .npz archives (an uncompressed zip of .npy files).
 *
 * Only what episode files need (common/EPISODES.md): little-endian float32 and uint8
 * arrays of any rank, stored without compression so that numpy.load() opens them with no zlib
 * on this side. The writer streams each array straight to the file (CRC first, then header and
 * data), keeps only the table of contents in memory, and writes the central directory in
 * npz_close(). Archives are limited to the classic zip format (no zip64): every member and
 * the whole file must stay below 4 GiB, and at most NPZ_MAX_ARRAYS arrays.
 *
 * Functions return 0 or a negative errno and, on failure, fill err (when not NULL) with a
 * message naming the array or the file.
 */
#ifndef MPC_NPZ_H
#define MPC_NPZ_H

#include <stddef.h>
#include <stdio.h>

#define NPZ_MAX_ARRAYS 16
#define NPZ_MAX_NAME   64 /* array name, without ".npy" */
#define NPZ_MAX_NDIM   8

typedef struct npz_writer npz_writer_t;

/* Element types: numpy's '<f4' (float32, native little-endian) and '|u1' (uint8). */
typedef enum { NPZ_F32, NPZ_U8 } npz_dtype_t;

/* Starts an archive on an open stream (the caller keeps ownership of f and closes it after
 * npz_close()). The stream must be at offset 0 and seekable or not: nothing is rewritten. */
int npz_open(FILE *f, npz_writer_t **out, char *err, size_t errlen);

/* Appends "<name>.npy": a C-order array of dtype and shape[0..ndim) (ndim 0 is a scalar).
 * name is ASCII letters, digits, '_' or '-', unique in the archive. */
int npz_add(npz_writer_t *w, const char *name, npz_dtype_t dtype, const void *data,
            const size_t *shape, int ndim, char *err, size_t errlen);
/* npz_add for float32 and uint8 data. */
int npz_add_f32(npz_writer_t *w, const char *name, const float *data, const size_t *shape,
                int ndim, char *err, size_t errlen);
int npz_add_u8(npz_writer_t *w, const char *name, const unsigned char *data,
               const size_t *shape, int ndim, char *err, size_t errlen);

/* Writes the central directory and frees the writer (also on failure). Accepts NULL. */
int npz_close(npz_writer_t *w, char *err, size_t errlen);

/* Frees the writer without finishing the archive (after an error). Accepts NULL. */
void npz_abort(npz_writer_t *w);

/* CRC-32 (zip / IEEE 802.3) of n bytes, continuing from crc (start with 0). */
unsigned long npz_crc32(unsigned long crc, const void *data, size_t n);

/* The .npy header (magic, version 1.0, dict, padding, '\n') of an array of dtype, written
 * to buf; returns its length, or a negative errno when it does not fit in cap. */
int npz_npy_header(char *buf, size_t cap, npz_dtype_t dtype, const size_t *shape, int ndim);

#endif
