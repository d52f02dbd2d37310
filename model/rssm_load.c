/*
 * rssm_load.c: loading an mpc-rssm model file into an immutable rssm_model_t.
 *
 * Order of checks: container (safetensors.c), then metadata (format, version, observation
 * type and size, dims, activation, flags, action bounds, task, control period, discount),
 * then every tensor of RSSM_TENSOR_LIST present with the shape the metadata implies and
 * nothing else in the file, then every value finite and obs_std > 0. Only when all of that
 * passes is a model returned (an image model's encoder then prepared by rssm_conv.c);
 * otherwise everything is freed and the error names the field or tensor.
 * Tensor data is copied into one 64-byte aligned buffer, so the file can be replaced or
 * unmapped right after loading (the daemon hot-swaps by rename).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rssm_conv.h"
#include "rssm_gemm.h"
#include "rssm_private.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "librssm reads little-endian float32 tensors directly; add byte swapping for this host"
#endif

const char *rssm_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define XX(name, val, msg)                                                                     \
    case val:                                                                                  \
        return msg;
        RSSM_ERRNO_MAP(XX)
#undef XX
    default:
        /* -1..-4095: a negative errno, which callers mix with these codes */
        return err < 0 && err > -4096 ? strerror(-err) : "unknown error";
    }
}

/* ---- metadata ---- */

typedef struct meta_ctx {
    const cJSON *obj;
    char *err;
    size_t errlen;
} meta_ctx_t;

static const char *meta_get(const meta_ctx_t *c, const char *key)
{
    const cJSON *v = c->obj ? cJSON_GetObjectItemCaseSensitive(c->obj, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int meta_need(const meta_ctx_t *c, const char *key, const char **out)
{
    *out = meta_get(c, key);
    if (!*out)
        return rssm__fail(c->err, c->errlen, RSSM_EMETADATA, "metadata '%s' is missing", key);
    return 0;
}

static int meta_int(const meta_ctx_t *c, const char *key, int lo, int hi, int *out)
{
    const char *s;
    int rc = meta_need(c, key, &s);
    if (rc)
        return rc;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi)
        return rssm__fail(c->err, c->errlen, RSSM_EMETADATA,
                          "metadata '%s' is \"%.32s\"; expected an integer in %d..%d", key, s,
                          lo, hi);
    *out = (int)v;
    return 0;
}

static int meta_double(const meta_ctx_t *c, const char *key, double lo, double hi, double *out)
{
    const char *s;
    int rc = meta_need(c, key, &s);
    if (rc)
        return rc;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < lo || v > hi)
        return rssm__fail(c->err, c->errlen, RSSM_EMETADATA,
                          "metadata '%s' is \"%.32s\"; expected a number in [%g, %g]", key, s,
                          lo, hi);
    *out = v;
    return 0;
}

static int meta_bool(const meta_ctx_t *c, const char *key, bool *out)
{
    const char *s;
    int rc = meta_need(c, key, &s);
    if (rc)
        return rc;
    if (strcmp(s, "true") && strcmp(s, "false"))
        return rssm__fail(c->err, c->errlen, RSSM_EMETADATA,
                          "metadata '%s' is \"%.32s\"; expected true or false", key, s);
    *out = s[0] == 't';
    return 0;
}

/* A JSON array of exactly n finite numbers, e.g. "[-1.0, 1.0]". */
static int meta_floats(const meta_ctx_t *c, const char *key, int n, float *out)
{
    const char *s;
    int rc = meta_need(c, key, &s);
    if (rc)
        return rc;
    cJSON *arr = cJSON_Parse(s);
    int ok = cJSON_IsArray(arr) && cJSON_GetArraySize(arr) == n;
    int i = 0;
    const cJSON *v;
    if (ok)
        cJSON_ArrayForEach(v, arr)
        {
            if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
                fabs(v->valuedouble) > 3.0e38) {
                ok = 0;
                break;
            }
            out[i++] = (float)v->valuedouble;
        }
    cJSON_Delete(arr);
    if (!ok)
        return rssm__fail(c->err, c->errlen, RSSM_EMETADATA,
                          "metadata '%s' must be a JSON array of %d finite numbers", key, n);
    return 0;
}

static int parse_version(const meta_ctx_t *c, rssm_info_t *info)
{
    const char *fmt, *ver;
    int rc;
    if ((rc = meta_need(c, "format", &fmt)) || (rc = meta_need(c, "format_version", &ver)))
        return rc;
    if (strcmp(fmt, "mpc-rssm") != 0)
        return rssm__fail(c->err, c->errlen, RSSM_EMETADATA,
                          "metadata 'format' is \"%.32s\"; expected \"mpc-rssm\"", fmt);
    int major, minor, used = 0;
    if (sscanf(ver, "%4d.%4d%n", &major, &minor, &used) != 2 || ver[used] || major < 0 ||
        minor < 0)
        return rssm__fail(c->err, c->errlen, RSSM_EVERSION,
                          "metadata 'format_version' is \"%.32s\"; expected MAJOR.MINOR", ver);
    if (major > RSSM_FORMAT_MAJOR)
        return rssm__fail(c->err, c->errlen, RSSM_EVERSION,
                          "format_version %d.%d is newer than this loader supports (%d.x); "
                          "update mpcd/librssm to load this model",
                          major, minor, RSSM_FORMAT_MAJOR);
    if (major < RSSM_FORMAT_MAJOR)
        return rssm__fail(c->err, c->errlen, RSSM_EVERSION,
                          "format_version %d.%d is older than any supported version (%d.x)",
                          major, minor, RSSM_FORMAT_MAJOR);
    info->format_major = major;
    info->format_minor = minor;
    return 0;
}

static const char *const image_keys[] = {"image_height", "image_width", "image_channels",
                                         "conv_depth"};

/* obs_type (absent: "vector"), an image model's image size and conv depth, then obs_dim,
 * whose range depends on the type: an image model's is the number of bytes in its image. */
static int parse_observation(const meta_ctx_t *c, rssm_info_t *info)
{
    const char *type = meta_get(c, "obs_type");
    int rc;
    if (!type || strcmp(type, "vector") == 0) {
        for (size_t i = 0; i < sizeof image_keys / sizeof *image_keys; i++)
            if (meta_get(c, image_keys[i]))
                return rssm__fail(c->err, c->errlen, RSSM_EMETADATA,
                                  "metadata '%s' is set but obs_type is \"vector\"%s; an "
                                  "image model needs obs_type \"image\"",
                                  image_keys[i], type ? "" : " (absent)");
        return meta_int(c, "obs_dim", 1, RSSM_MAX_DIM, &info->dims.obs);
    }
    if (strcmp(type, "image") != 0)
        return rssm__fail(c->err, c->errlen, RSSM_EMETADATA,
                          "metadata 'obs_type' is \"%.32s\"; expected vector or image", type);
    if ((rc = meta_int(c, "image_height", 1, RSSM_MAX_IMAGE_SIDE, &info->image_height)) ||
        (rc = meta_int(c, "image_width", 1, RSSM_MAX_IMAGE_SIDE, &info->image_width)) ||
        (rc = meta_int(c, "image_channels", 1, 3, &info->image_channels)) ||
        (rc = meta_int(c, "conv_depth", 1, RSSM_MAX_CONV_DEPTH, &info->conv_depth)) ||
        (rc = meta_int(c, "obs_dim", 1, RSSM_MAX_IMAGE_OBS, &info->dims.obs)))
        return rc;
    if (info->image_channels == 2)
        return rssm__fail(c->err, c->errlen, RSSM_EMETADATA,
                          "metadata 'image_channels' is 2; expected 1 (grey) or 3 (RGB)");
    const int sides[2] = {info->image_height, info->image_width};
    for (int i = 0; i < 2; i++)
        if (rssm__conv_size(sides[i]) < 1)
            return rssm__fail(c->err, c->errlen, RSSM_EMETADATA,
                              "metadata '%s' is %d; the encoder's %d convolutions (kernel %d, "
                              "stride %d) need at least %d",
                              image_keys[i], sides[i], RSSM_CONV_LAYERS, RSSM_CONV_KERNEL,
                              RSSM_CONV_STRIDE, rssm__conv_min_side());
    int bytes = info->image_height * info->image_width * info->image_channels;
    if (info->dims.obs != bytes)
        return rssm__fail(c->err, c->errlen, RSSM_EMETADATA,
                          "metadata 'obs_dim' is %d; an image model's obs_dim must be "
                          "image_height*image_width*image_channels = %d",
                          info->dims.obs, bytes);
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int parse_metadata(rssm_model_t *m, const cJSON *obj, char *err, size_t errlen)
{
    meta_ctx_t c = {obj, err, errlen};
    rssm_info_t *info = &m->info;
    rssm_dims_t *d = &info->dims;
    const char *act, *task;
    double min_std;
    int rc;
    if (!obj)
        return rssm__fail(err, errlen, RSSM_EMETADATA,
                          "no __metadata__: not an mpc-rssm model file");
    if ((rc = parse_version(&c, info)))
        return rc;
    if ((rc = parse_observation(&c, info)) ||
        (rc = meta_int(&c, "action_dim", 1, RSSM_MAX_DIM, &d->action)) ||
        (rc = meta_int(&c, "deter", 1, RSSM_MAX_DIM, &d->deter)) ||
        (rc = meta_int(&c, "stoch", 1, RSSM_MAX_DIM, &d->stoch)) ||
        (rc = meta_int(&c, "hidden", 1, RSSM_MAX_DIM, &d->hidden)) ||
        (rc = meta_int(&c, "embed", 1, RSSM_MAX_DIM, &d->embed)) ||
        (rc = meta_double(&c, "min_std", 1e-6, 1e3, &min_std)) ||
        (rc = meta_need(&c, "activation", &act)) ||
        (rc = meta_bool(&c, "has_value", &info->has_value)) ||
        (rc = meta_bool(&c, "has_decoder", &info->has_decoder)) ||
        (rc = meta_double(&c, "control_period_s", 1e-6, 3600.0, &info->control_period_s)) ||
        (rc = meta_double(&c, "discount", 0.0, 1.0, &info->discount)) ||
        (rc = meta_need(&c, "task", &task)))
        return rc;
    if (info->image_channels > 0 && info->has_decoder)
        return rssm__fail(err, errlen, RSSM_EMETADATA,
                          "metadata 'has_decoder' is true, but an image model's pixel decoder "
                          "is training-only and never in a served file (export_model leaves "
                          "it out)");
    info->min_std = (float)min_std;
    if (strcmp(act, "relu") == 0)
        info->activation = RSSM_ACT_RELU;
    else if (strcmp(act, "elu") == 0)
        info->activation = RSSM_ACT_ELU;
    else
        return rssm__fail(err, errlen, RSSM_EMETADATA,
                          "metadata 'activation' is \"%.32s\"; expected relu or elu", act);
    m->action_low = malloc(sizeof(float) * (size_t)d->action);
    m->action_high = malloc(sizeof(float) * (size_t)d->action);
    m->task = strdup(task);
    m->name = dup_or_null(meta_get(&c, "name"));
    if (!m->action_low || !m->action_high || !m->task)
        return rssm__fail(err, errlen, RSSM_ENOMEM, "out of memory reading metadata");
    if ((rc = meta_floats(&c, "action_low", d->action, m->action_low)) ||
        (rc = meta_floats(&c, "action_high", d->action, m->action_high)))
        return rc;
    for (int i = 0; i < d->action; i++)
        if (!(m->action_low[i] < m->action_high[i]))
            return rssm__fail(err, errlen, RSSM_EMETADATA,
                              "metadata action_low[%d] = %g is not below action_high[%d] = %g",
                              i, m->action_low[i], i, m->action_high[i]);
    info->action_low = m->action_low;
    info->action_high = m->action_high;
    info->task = m->task;
    info->name = m->name ? m->name : m->task;
    return 0;
}

static int copy_metadata(rssm_model_t *m, const cJSON *obj, char *err, size_t errlen)
{
    int n = cJSON_GetArraySize(obj);
    m->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    m->meta_values = calloc((size_t)n + 1, sizeof(char *));
    if (!m->meta_keys || !m->meta_values)
        return rssm__fail(err, errlen, RSSM_ENOMEM, "out of memory copying metadata");
    const cJSON *v;
    cJSON_ArrayForEach(v, obj)
    {
        m->meta_keys[m->nmeta] = strdup(v->string);
        m->meta_values[m->nmeta] = strdup(v->valuestring);
        m->nmeta++;
        if (!m->meta_keys[m->nmeta - 1] || !m->meta_values[m->nmeta - 1])
            return rssm__fail(err, errlen, RSSM_ENOMEM, "out of memory copying metadata");
    }
    return 0;
}

/* ---- tensors ---- */

typedef struct tensor_spec {
    const char *name;
    const float **slot;
    int group;
    int rows, cols; /* cols == 0: vector */
    int k;          /* > 0: convolution weight [rows, cols, k, k] */
} tensor_spec_t;

static int tensor_specs(rssm_model_t *m, tensor_spec_t *out)
{
    const rssm_info_t *info = &m->info;
    const rssm_dims_t *d = &info->dims;
    /* the last convolution's output, flattened (0 for vector models) */
    int F = 8 * info->conv_depth * rssm__conv_size(info->image_height) *
            rssm__conv_size(info->image_width);
    int n = 0;
#define SPEC(nm, field, grp, r, cl, kk)                                                        \
    out[n++] = (tensor_spec_t){nm, &m->field, RSSM_GROUP_##grp, r, cl, kk};
    RSSM_TENSOR_LIST(SPEC, d->obs, d->action, d->deter, d->stoch, d->hidden, d->embed,
                     info->image_channels, info->conv_depth, F)
#undef SPEC
    return n;
}

#define RSSM_NSPECS                          48
#define COUNT_ONE(nm, field, grp, r, cl, kk) +1
_Static_assert(0 RSSM_TENSOR_LIST(COUNT_ONE, 0, 0, 0, 0, 0, 0, 0, 0, 0) == RSSM_NSPECS,
               "RSSM_NSPECS must match RSSM_TENSOR_LIST");
#undef COUNT_ONE

static bool group_present(const rssm_info_t *info, int group)
{
    bool image = info->image_channels > 0;
    switch (group) {
    case RSSM_GROUP_CORE:
        return true;
    case RSSM_GROUP_VALUE:
        return info->has_value;
    case RSSM_GROUP_DECODER:
        return info->has_decoder;
    case RSSM_GROUP_VECTOR:
        return !image;
    default:
        return image;
    }
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Why a tensor in the file is not part of the model (for the message). */
static const char *unexpected_why(const rssm_info_t *info, const char *name)
{
    bool image = info->image_channels > 0;
    if (image && has_prefix(name, "decoder."))
        return "an image model's pixel decoder is training-only and never in a served file";
    if (image && (strcmp(name, "obs_mean") == 0 || strcmp(name, "obs_std") == 0 ||
                  has_prefix(name, "encoder.")))
        return "an image model normalises pixels as x/255 - 0.5 and encodes them with "
               "conv_encoder.*; it has no obs_mean, obs_std or encoder.*";
    if (!image && (has_prefix(name, "conv_encoder.") || has_prefix(name, "encoder_out.")))
        return "obs_type is \"vector\"; a conv encoder needs obs_type \"image\"";
    return "not part of this architecture; check has_value/has_decoder";
}

static void shape_text(char *buf, size_t len, int rank, const int64_t *shape)
{
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < rank && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? "," : "",
                                 (long long)shape[i]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
}

static int check_shape(const tensor_spec_t *s, const st_tensor_t *t, char *err, size_t errlen)
{
    int64_t want[4] = {s->rows, s->cols, s->k, s->k};
    int want_rank = s->k ? 4 : s->cols ? 2 : 1;
    bool ok = t->rank == want_rank;
    for (int i = 0; ok && i < want_rank; i++)
        ok = t->shape[i] == want[i];
    if (ok)
        return 0;
    char a[64], b[96];
    shape_text(a, sizeof a, want_rank, want);
    shape_text(b, sizeof b, t->rank, t->shape);
    return rssm__fail(err, errlen, RSSM_ETENSOR,
                      "tensor '%s' has wrong shape; expected %s, got %s", s->name, a, b);
}

/* Matches every expected tensor to a file entry, then copies the data. */
static int load_tensors(rssm_model_t *m, const st_file_t *f, char *err, size_t errlen)
{
    tensor_spec_t specs[RSSM_NSPECS];
    int nspecs = tensor_specs(m, specs);
    const st_tensor_t *found[RSSM_NSPECS] = {0};
    bool *used = calloc((size_t)f->ntensors + 1, sizeof(bool));
    size_t total = 0;
    int rc = 0;
    if (!used)
        return rssm__fail(err, errlen, RSSM_ENOMEM, "out of memory");
    for (int i = 0; i < nspecs; i++) {
        if (!group_present(&m->info, specs[i].group))
            continue;
        for (int j = 0; j < f->ntensors && !found[i]; j++)
            if (strcmp(f->tensors[j].name, specs[i].name) == 0) {
                found[i] = &f->tensors[j];
                used[j] = true;
            }
        if (!found[i]) {
            rc =
                rssm__fail(err, errlen, RSSM_ETENSOR, "tensor '%s' is missing%s", specs[i].name,
                           specs[i].group == RSSM_GROUP_VALUE     ? " (has_value is true)"
                           : specs[i].group == RSSM_GROUP_DECODER ? " (has_decoder is true)"
                           : specs[i].group == RSSM_GROUP_IMAGE   ? " (obs_type is \"image\")"
                                                                  : "");
            goto out;
        }
        if ((rc = check_shape(&specs[i], found[i], err, errlen)))
            goto out;
        total += rssm__align((found[i]->end - found[i]->begin) / 4);
    }
    for (int j = 0; j < f->ntensors; j++)
        if (!used[j]) {
            rc = rssm__fail(err, errlen, RSSM_ETENSOR, "unexpected tensor '%s' (%s)",
                            f->tensors[j].name, unexpected_why(&m->info, f->tensors[j].name));
            goto out;
        }
    m->weights = aligned_alloc(RSSM_ALIGN_FLOATS * sizeof(float),
                               (total ? total : RSSM_ALIGN_FLOATS) * sizeof(float));
    if (!m->weights) {
        rc = rssm__fail(err, errlen, RSSM_ENOMEM, "out of memory for %zu weights", total);
        goto out;
    }
    m->weights_len = total;
    float *dst = m->weights;
    for (int i = 0; i < nspecs; i++) {
        if (!found[i])
            continue;
        size_t count = (found[i]->end - found[i]->begin) / 4;
        memcpy(dst, f->data + found[i]->begin, count * sizeof(float));
        for (size_t k = 0; k < count; k++)
            if (!isfinite(dst[k])) {
                rc = rssm__fail(err, errlen, RSSM_EVALUE,
                                "tensor '%s' has a non-finite value at index %zu",
                                specs[i].name, k);
                goto out;
            }
        *specs[i].slot = dst;
        dst += rssm__align(count);
    }
    m->info.obs_mean = m->obs_mean; /* image models: set by rssm__image_prepare */
    m->info.obs_std = m->obs_std;
    for (int k = 0; m->obs_std && k < m->info.dims.obs; k++)
        if (!(m->obs_std[k] > 0)) {
            rc = rssm__fail(err, errlen, RSSM_EVALUE,
                            "tensor 'obs_std' has a non-positive value %g at index %d",
                            m->obs_std[k], k);
            goto out;
        }
out:
    free(used);
    return rc;
}

static int list_tensors(rssm_model_t *m, const st_file_t *f, char *err, size_t errlen)
{
    m->tensors = calloc((size_t)f->ntensors + 1, sizeof *m->tensors);
    if (!m->tensors)
        return rssm__fail(err, errlen, RSSM_ENOMEM, "out of memory");
    for (int i = 0; i < f->ntensors; i++) {
        rssm_tensor_entry_t *t = &m->tensors[i];
        t->name = strdup(f->tensors[i].name);
        if (!t->name)
            return rssm__fail(err, errlen, RSSM_ENOMEM, "out of memory");
        m->ntensors++;
        t->rank = f->tensors[i].rank;
        for (int k = 0; k < t->rank; k++)
            t->shape[k] = (int)f->tensors[i].shape[k];
    }
    return 0;
}

/* Every matrix of RSSM_TENSOR_LIST is the `w` of an rssm_linear_t (its first member), so
 * the list gives each layer and its [out, in] shape. The image encoder's layers are packed
 * by rssm__image_prepare, in the order its im2col reads them. */
_Static_assert(offsetof(rssm_linear_t, w) == 0, "pack_layers finds layers by their weight");

static rssm_linear_t *layer_of(const tensor_spec_t *s)
{
    return s->cols > 0 && s->group != RSSM_GROUP_IMAGE && *s->slot
               ? (rssm_linear_t *)(void *)s->slot
               : NULL;
}

/* Repacks every layer for rssm_gemm into one buffer (a no-op where the kernel is off). */
static int pack_layers(rssm_model_t *m, char *err, size_t errlen)
{
    if (!rssm_gemm_enabled())
        return 0;
    tensor_spec_t specs[RSSM_NSPECS];
    int nspecs = tensor_specs(m, specs);
    size_t total = 0;
    for (int i = 0; i < nspecs; i++)
        if (layer_of(&specs[i]))
            total += rssm_gemm_packed_size(specs[i].rows, specs[i].cols);
    m->packed = aligned_alloc(RSSM_ALIGN_FLOATS * sizeof(float), total * sizeof(float));
    if (!m->packed)
        return rssm__fail(err, errlen, RSSM_ENOMEM, "out of memory for %zu packed weights",
                          total);
    float *dst = m->packed;
    for (int i = 0; i < nspecs; i++) {
        rssm_linear_t *l = layer_of(&specs[i]);
        if (!l)
            continue;
        rssm_gemm_pack(dst, l->w, l->b, specs[i].rows, specs[i].cols);
        l->packed = dst;
        dst += rssm_gemm_packed_size(specs[i].rows, specs[i].cols);
    }
    return 0;
}

int rssm_load_buffer(const void *data, size_t size, rssm_model_t **out, char *err,
                     size_t errlen)
{
    st_file_t f;
    rssm_model_t *m = NULL;
    int rc;
    if (!out)
        return rssm__fail(err, errlen, RSSM_EINVALID, "out is NULL");
    *out = NULL;
    if ((rc = st_parse(data, size, &f, err, errlen)))
        return rc;
    m = calloc(1, sizeof *m);
    if (!m) {
        rc = rssm__fail(err, errlen, RSSM_ENOMEM, "out of memory");
        goto fail;
    }
    const cJSON *meta = f.metadata;
    if ((rc = parse_metadata(m, meta, err, errlen)) ||
        (rc = load_tensors(m, &f, err, errlen)) || (rc = pack_layers(m, err, errlen)) ||
        (rc = rssm__image_prepare(m, err, errlen)) ||
        (rc = copy_metadata(m, meta, err, errlen)) || (rc = list_tensors(m, &f, err, errlen)))
        goto fail;
    st_free(&f);
    *out = m;
    return 0;
fail:
    st_free(&f);
    rssm_destroy(m);
    return rc;
}

bool rssm_looks_like_model(const void *data, size_t size)
{
    const unsigned char *p = data;
    if (!data || size < 8)
        return false;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | p[i];
    if (n < 2 || n > RSSM_HEADER_CAP || n > size - 8)
        return false;
    cJSON *root = cJSON_ParseWithLength((const char *)p + 8, (size_t)n);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(meta, "format");
    bool yes = cJSON_IsString(fmt) && strcmp(fmt->valuestring, "mpc-rssm") == 0;
    cJSON_Delete(root);
    return yes;
}

int rssm_load_fd(int fd, const char *name, size_t max_bytes, unsigned flags, rssm_model_t **out,
                 char *err, size_t errlen)
{
    if (!out || !name || fd < 0)
        return rssm__fail(err, errlen, RSSM_EINVALID, "fd, name or out is invalid");
    *out = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return rssm__fail(err, errlen, RSSM_EIO, "%s: %s", name, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return rssm__fail(err, errlen, RSSM_EIO, "%s: not a regular file", name);
    size_t size = (size_t)st.st_size;
    if (max_bytes && size > max_bytes)
        return rssm__fail(err, errlen, RSSM_EIO, "%s: %zu bytes; larger than the limit of %zu",
                          name, size, max_bytes);
    if (size < 8)
        return rssm__fail(err, errlen, RSSM_EFORMAT,
                          "%s: file is %zu bytes; too short for a safetensors header", name,
                          size);
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        return rssm__fail(err, errlen, RSSM_EIO, "%s: mmap: %s", name, strerror(errno));
    if ((flags & RSSM_LOAD_OPAQUE) && !rssm_looks_like_model(map, size)) {
        munmap(map, size);
        return rssm__fail(err, errlen, RSSM_EFORMAT,
                          "%s: not an mpc-rssm model file (no safetensors header with "
                          "format \"mpc-rssm\")",
                          name);
    }
    char msg[512] = "";
    int rc = rssm_load_buffer(map, size, out, msg, sizeof msg);
    munmap(map, size);
    if (rc)
        rssm__fail(err, errlen, rc, "%s: %s", name, msg);
    return rc;
}

int rssm_load(const char *path, rssm_model_t **out, char *err, size_t errlen)
{
    if (!out || !path)
        return rssm__fail(err, errlen, RSSM_EINVALID, "path or out is NULL");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return rssm__fail(err, errlen, RSSM_EIO, "%s: %s", path, strerror(errno));
    int rc = rssm_load_fd(fd, path, 0, 0, out, err, errlen);
    close(fd);
    return rc;
}

void rssm_destroy(rssm_model_t *m)
{
    if (!m)
        return;
    free(m->weights);
    free(m->packed);
    free(m->image.buf);
    free(m->action_low);
    free(m->action_high);
    free(m->task);
    free(m->name);
    for (int i = 0; i < m->nmeta; i++) {
        free(m->meta_keys[i]);
        free(m->meta_values[i]);
    }
    free(m->meta_keys);
    free(m->meta_values);
    for (int i = 0; i < m->ntensors; i++)
        free(m->tensors[i].name);
    free(m->tensors);
    free(m);
}

/* ---- accessors ---- */

const rssm_info_t *rssm_info(const rssm_model_t *m)
{
    return &m->info;
}

const char *rssm_metadata(const rssm_model_t *m, const char *key)
{
    for (int i = 0; i < m->nmeta; i++)
        if (strcmp(m->meta_keys[i], key) == 0)
            return m->meta_values[i];
    return NULL;
}

int rssm_metadata_count(const rssm_model_t *m)
{
    return m->nmeta;
}

void rssm_metadata_at(const rssm_model_t *m, int i, const char **key, const char **value)
{
    bool ok = i >= 0 && i < m->nmeta;
    *key = ok ? m->meta_keys[i] : NULL;
    *value = ok ? m->meta_values[i] : NULL;
}

int rssm_tensor_count(const rssm_model_t *m)
{
    return m->ntensors;
}

void rssm_tensor_at(const rssm_model_t *m, int i, const char **name, int *rank, int shape[4])
{
    bool ok = i >= 0 && i < m->ntensors;
    *name = ok ? m->tensors[i].name : NULL;
    *rank = ok ? m->tensors[i].rank : 0;
    for (int k = 0; k < 4; k++)
        shape[k] = ok && k < m->tensors[i].rank ? m->tensors[i].shape[k] : 0;
}

int64_t rssm_param_count(const rssm_model_t *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->ntensors; i++) {
        int64_t c = 1;
        for (int k = 0; k < m->tensors[i].rank; k++)
            c *= m->tensors[i].shape[k];
        n += c;
    }
    return n;
}

bool rssm_uses_kernel(const rssm_model_t *m)
{
    return m && m->packed;
}

int64_t rssm_flops_per_imagine_step(const rssm_model_t *m)
{
    const rssm_dims_t *d = &m->info.dims;
    int64_t D = d->deter, S = d->stoch, H = d->hidden, A = d->action;
    int64_t transition = 2 * H * (S + A) + 2 * 3 * D * H + 2 * 3 * D * D;
    int64_t prior = 2 * H * D + 2 * 2 * S * H;
    int64_t head = 2 * H * (D + S) + 2 * H * H + 2 * H;
    return transition + prior + head * (m->info.has_value ? 2 : 1);
}
