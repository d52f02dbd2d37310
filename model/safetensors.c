/*
 * safetensors.c: paranoid parser for the safetensors container that mpc-rssm files use.
 *
 * Validates everything about the container before anyone touches tensor data: header
 * length within the file and under a cap, JSON well formed, every entry with dtype F32,
 * a sane shape and data_offsets whose byte count equals the shape times 4, offsets sorted,
 * contiguous from 0 to the end of the file with no gap and no overlap, no duplicate names.
 * Errors name the entry at fault. Metadata semantics are left to the model loader.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"
#include "rssm_private.h"

int rssm__fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errbuf_vset(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

/* A JSON number that is a non-negative integer exactly representable (<= 2^53). */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d))
        return -1;
    *out = (uint64_t)d;
    return 0;
}

static int parse_entry(const cJSON *e, size_t data_size, st_tensor_t *t, char *err,
                       size_t errlen)
{
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return rssm__fail(err, errlen, RSSM_EFORMAT, "tensor '%s': entry is not an object",
                          name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
        return rssm__fail(err, errlen, RSSM_EFORMAT,
                          "tensor '%s': needs string dtype, array shape and array data_offsets",
                          name);
    if (strcmp(dtype->valuestring, "F32") != 0)
        return rssm__fail(err, errlen, RSSM_ETENSOR,
                          "tensor '%s' has dtype %.16s; expected F32", name,
                          dtype->valuestring);
    int rank = cJSON_GetArraySize(shape);
    if (rank > 4)
        return rssm__fail(err, errlen, RSSM_ETENSOR, "tensor '%s' has rank %d; at most 4", name,
                          rank);
    uint64_t count = 1;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape)
    {
        uint64_t dim;
        if (json_uint(d, &dim) != 0 || dim > INT32_MAX)
            return rssm__fail(err, errlen, RSSM_EFORMAT,
                              "tensor '%s': shape[%d] is not a valid dimension", name, i);
        if (__builtin_mul_overflow(count, dim, &count))
            return rssm__fail(err, errlen, RSSM_EFORMAT, "tensor '%s': shape overflows", name);
        t->shape[i++] = (int64_t)dim;
    }
    uint64_t begin, end, bytes;
    if (cJSON_GetArraySize(offs) != 2 || json_uint(cJSON_GetArrayItem(offs, 0), &begin) ||
        json_uint(cJSON_GetArrayItem(offs, 1), &end))
        return rssm__fail(err, errlen, RSSM_EFORMAT,
                          "tensor '%s': data_offsets must be two non-negative integers", name);
    if (begin > end || end > data_size)
        return rssm__fail(err, errlen, RSSM_EFORMAT,
                          "tensor '%s': data_offsets [%llu,%llu] outside the %zu data bytes",
                          name, (unsigned long long)begin, (unsigned long long)end, data_size);
    if (__builtin_mul_overflow(count, (uint64_t)4, &bytes) || bytes != end - begin)
        return rssm__fail(err, errlen, RSSM_EFORMAT,
                          "tensor '%s': data_offsets [%llu,%llu] hold %llu bytes but the shape "
                          "needs %llu",
                          name, (unsigned long long)begin, (unsigned long long)end,
                          (unsigned long long)(end - begin), (unsigned long long)count * 4);
    t->name = name;
    t->rank = rank;
    t->begin = (size_t)begin;
    t->end = (size_t)end;
    return 0;
}

static int by_offset(const void *a, const void *b)
{
    const st_tensor_t *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int check_layout(const st_file_t *f, char *err, size_t errlen)
{
    size_t pos = 0;
    for (int i = 0; i < f->ntensors; i++) {
        const st_tensor_t *t = &f->tensors[i];
        if (t->begin < pos)
            return rssm__fail(err, errlen, RSSM_EFORMAT,
                              "tensor '%s' (bytes %zu..%zu) overlaps tensor '%s' (ends at %zu)",
                              t->name, t->begin, t->end, f->tensors[i - 1].name, pos);
        if (t->begin > pos)
            return rssm__fail(
                err, errlen, RSSM_EFORMAT,
                "gap of %zu bytes before tensor '%s' (starts at %zu, expected %zu)",
                t->begin - pos, t->name, t->begin, pos);
        pos = t->end;
    }
    if (pos != f->data_size)
        return rssm__fail(err, errlen, RSSM_EFORMAT,
                          "%zu bytes after the last tensor (data section is %zu bytes)",
                          f->data_size - pos, f->data_size);
    /* Sorted by offset, so equal names need a separate pass; the list is short. */
    for (int i = 0; i < f->ntensors; i++)
        for (int j = i + 1; j < f->ntensors; j++)
            if (strcmp(f->tensors[i].name, f->tensors[j].name) == 0)
                return rssm__fail(err, errlen, RSSM_EFORMAT, "tensor '%s' appears twice",
                                  f->tensors[i].name);
    return 0;
}

static int check_metadata(const cJSON *meta, char *err, size_t errlen)
{
    if (!cJSON_IsObject(meta))
        return rssm__fail(err, errlen, RSSM_EFORMAT, "__metadata__ is not an object");
    const cJSON *v;
    cJSON_ArrayForEach(v, meta)
    {
        if (!cJSON_IsString(v))
            return rssm__fail(err, errlen, RSSM_EFORMAT,
                              "metadata '%s' is not a string (safetensors metadata is "
                              "string -> string)",
                              v->string);
        for (const cJSON *w = meta->child; w != v; w = w->next)
            if (strcmp(w->string, v->string) == 0)
                return rssm__fail(err, errlen, RSSM_EFORMAT, "metadata '%s' appears twice",
                                  v->string);
    }
    return 0;
}

int st_parse(const void *buf, size_t size, st_file_t *out, char *err, size_t errlen)
{
    const unsigned char *p = buf;
    int rc;
    memset(out, 0, sizeof *out);
    if (!buf || size < 8)
        return rssm__fail(err, errlen, RSSM_EFORMAT,
                          "file is %zu bytes; too short for a safetensors header", size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | p[i];
    if (n > RSSM_HEADER_CAP)
        return rssm__fail(err, errlen, RSSM_EFORMAT,
                          "header length %llu exceeds the %u byte cap", (unsigned long long)n,
                          RSSM_HEADER_CAP);
    if (n > size - 8)
        return rssm__fail(err, errlen, RSSM_EFORMAT,
                          "header length %llu runs past the end of the file (%zu bytes)",
                          (unsigned long long)n, size);
    const char *end = NULL; /* per-call error position: cJSON_GetErrorPtr is global */
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)p + 8, (size_t)n, &end, 0);
    if (!root)
        return rssm__fail(err, errlen, RSSM_EFORMAT,
                          "header is not valid JSON (error near byte %zu of the header)",
                          end ? (size_t)(end - ((const char *)p + 8)) : (size_t)0);
    out->json = root;
    out->data = p + 8 + n;
    out->data_size = size - 8 - (size_t)n;
    if (!cJSON_IsObject(root)) {
        rc = rssm__fail(err, errlen, RSSM_EFORMAT, "header is not a JSON object");
        goto fail;
    }
    int count = cJSON_GetArraySize(root);
    if (count > RSSM_MAX_TENSORS + 1) {
        rc = rssm__fail(err, errlen, RSSM_EFORMAT, "header has %d entries; at most %d", count,
                        RSSM_MAX_TENSORS);
        goto fail;
    }
    out->tensors = calloc((size_t)count + 1, sizeof *out->tensors);
    if (!out->tensors) {
        rc = rssm__fail(err, errlen, RSSM_ENOMEM, "out of memory parsing the header");
        goto fail;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        if (!e->string) {
            rc = rssm__fail(err, errlen, RSSM_EFORMAT, "header entry without a name");
            goto fail;
        }
        if (strcmp(e->string, "__metadata__") == 0) {
            if (out->metadata) {
                rc = rssm__fail(err, errlen, RSSM_EFORMAT, "__metadata__ appears twice");
                goto fail;
            }
            if ((rc = check_metadata(e, err, errlen)) != 0)
                goto fail;
            out->metadata = e;
            continue;
        }
        if ((rc = parse_entry(e, out->data_size, &out->tensors[out->ntensors], err, errlen)))
            goto fail;
        out->ntensors++;
    }
    qsort(out->tensors, (size_t)out->ntensors, sizeof *out->tensors, by_offset);
    if ((rc = check_layout(out, err, errlen)) != 0)
        goto fail;
    return 0;
fail:
    st_free(out);
    return rc;
}

void st_free(st_file_t *f)
{
    if (!f)
        return;
    cJSON_Delete(f->json);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}
