/*
 * random_model.c: builds a random mpc-rssm safetensors container in memory (see
 * random_model.h): the tensor table of model/FORMAT.md, JSON header padded to 8 bytes,
 * tensors back to back in table order.
 */
#include "random_model.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"

typedef struct {
    char name[40];
    int rank, shape[2];
    int fan_in; /* 0: a normalisation buffer (obs_mean 0, obs_std 1) */
} tensor_t;

static int add(tensor_t *t, int n, const char *name, int rows, int cols, int fan_in)
{
    snprintf(t[n].name, sizeof t[n].name, "%s", name);
    t[n].rank = cols ? 2 : 1;
    t[n].shape[0] = rows;
    t[n].shape[1] = cols;
    t[n].fan_in = fan_in;
    return n + 1;
}

/* Linear layer "prefix.weight" [out, in] and "prefix.bias" [out]. */
static int linear(tensor_t *t, int n, const char *prefix, int out, int in)
{
    char name[40];
    snprintf(name, sizeof name, "%s.weight", prefix);
    n = add(t, n, name, out, in, in);
    snprintf(name, sizeof name, "%s.bias", prefix);
    return add(t, n, name, out, 0, in);
}

static uint64_t next(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int random_model_create(const random_model_spec_t *s, const char *path, rssm_model_t **out,
                        char *err, size_t errlen)
{
    const int O = s->obs, A = s->action, D = s->deter, S = s->stoch, H = s->hidden,
              E = s->embed;
    tensor_t t[40];
    int n = 0;
    n = add(t, n, "obs_mean", O, 0, 0);
    n = add(t, n, "obs_std", O, 0, 0);
    n = linear(t, n, "encoder.0", H, O);
    n = linear(t, n, "encoder.1", E, H);
    n = linear(t, n, "img_in", H, S + A);
    n = add(t, n, "gru.weight_ih", 3 * D, H, D); /* GRUCell: +-1/sqrt(hidden size) */
    n = add(t, n, "gru.weight_hh", 3 * D, D, D);
    n = add(t, n, "gru.bias_ih", 3 * D, 0, D);
    n = add(t, n, "gru.bias_hh", 3 * D, 0, D);
    n = linear(t, n, "prior.0", H, D);
    n = linear(t, n, "prior.1", 2 * S, H);
    n = linear(t, n, "posterior.0", H, D + E);
    n = linear(t, n, "posterior.1", 2 * S, H);
    const char *heads[2] = {"reward", "value"};
    for (int k = 0; k < (s->has_value ? 2 : 1); k++) {
        char p[40];
        snprintf(p, sizeof p, "%s.0", heads[k]);
        n = linear(t, n, p, H, D + S);
        snprintf(p, sizeof p, "%s.1", heads[k]);
        n = linear(t, n, p, H, H);
        snprintf(p, sizeof p, "%s.2", heads[k]);
        n = linear(t, n, p, 1, H);
    }

    size_t data = 0;
    for (int i = 0; i < n; i++)
        data += 4 * (size_t)t[i].shape[0] * (size_t)(t[i].rank == 2 ? t[i].shape[1] : 1);
    size_t hcap = 8192 + (size_t)A * 32;
    char *hdr = malloc(hcap + 8 + data);
    char *lo = malloc((size_t)A * 16 + 4), *hi = malloc((size_t)A * 16 + 4);
    int rc = RSSM_ENOMEM;
    if (!hdr || !lo || !hi) {
        errbuf_set(err, errlen, "out of memory");
        goto done;
    }
    lo[0] = hi[0] = '\0';
    for (int a = 0; a < A; a++) {
        strcat(lo, a ? ",-1.0" : "-1.0");
        strcat(hi, a ? ",1.0" : "1.0");
    }
    char *h = hdr + 8;
    int len = snprintf(
        h, hcap,
        "{\"__metadata__\":{\"format\":\"mpc-rssm\",\"format_version\":\"1.0\","
        "\"obs_dim\":\"%d\",\"action_dim\":\"%d\",\"deter\":\"%d\",\"stoch\":\"%d\","
        "\"hidden\":\"%d\",\"embed\":\"%d\",\"min_std\":\"0.1\",\"activation\":\"relu\","
        "\"has_value\":\"%s\",\"has_decoder\":\"false\",\"action_low\":\"[%s]\","
        "\"action_high\":\"[%s]\",\"task\":\"random\",\"name\":\"mpc-plan-bench-random\","
        "\"control_period_s\":\"0.05\",\"discount\":\"0.99\",\"seed\":\"%llu\","
        "\"trainer\":\"mpc-plan-bench (random init)\"}",
        O, A, D, S, H, E, s->has_value ? "true" : "false", lo, hi, (unsigned long long)s->seed);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t bytes = 4 * (size_t)t[i].shape[0] * (size_t)(t[i].rank == 2 ? t[i].shape[1] : 1);
        char shape[32];
        if (t[i].rank == 2)
            snprintf(shape, sizeof shape, "%d,%d", t[i].shape[0], t[i].shape[1]);
        else
            snprintf(shape, sizeof shape, "%d", t[i].shape[0]);
        len += snprintf(h + len, hcap - (size_t)len,
                        ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}",
                        t[i].name, shape, off, off + bytes);
        off += bytes;
    }
    len += snprintf(h + len, hcap - (size_t)len, "}");
    while ((8 + len) % 8)
        h[len++] = ' ';
    uint64_t hl = (uint64_t)len;
    for (int b = 0; b < 8; b++)
        hdr[b] = (char)(hl >> (8 * b) & 0xff);
    float *f = (float *)(void *)(hdr + 8 + len); /* 8 + len is a multiple of 8 */
    uint64_t st = s->seed;
    for (int i = 0; i < n; i++) {
        size_t cnt = (size_t)t[i].shape[0] * (size_t)(t[i].rank == 2 ? t[i].shape[1] : 1);
        float bound = t[i].fan_in ? 1.0f / sqrtf((float)t[i].fan_in) : 0.0f;
        bool is_std = strcmp(t[i].name, "obs_std") == 0;
        for (size_t k = 0; k < cnt; k++) {
            double u = (double)(next(&st) >> 11) * (1.0 / 9007199254740992.0);
            *f++ = is_std ? 1.0f : t[i].fan_in ? (float)((2.0 * u - 1.0) * bound) : 0.0f;
        }
    }
    size_t total = 8 + (size_t)len + data;
    if (path) {
        FILE *fp = fopen(path, "wb");
        bool ok = fp && fwrite(hdr, 1, total, fp) == total;
        if (fp && fclose(fp) != 0)
            ok = false;
        if (!ok) {
            errbuf_set(err, errlen, "cannot write %s", path);
            rc = RSSM_EIO;
            goto done;
        }
    }
    rc = rssm_load_buffer(hdr, total, out, err, errlen);
done:
    free(hi);
    free(lo);
    free(hdr);
    return rc;
}
