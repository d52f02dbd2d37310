/*
 * mpc-model: inspect, validate and evaluate mpc-rssm model files with librssm.
 *
 *   mpc-model info FILE           architecture, metadata, tensors, parameters, FLOPs
 *   mpc-model check FILE...       full validation; exit 1 with the loader's message
 *   mpc-model eval FILE INPUT     run observe / imagine / reward / value / decode on the
 *                                 inputs in INPUT (JSON, "-" = stdin), print JSON
 *
 * Used by tests and by anyone debugging a model; it runs exactly the code mpcd runs.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rssm.h"

static const char usage_text[] =
    "NAME\n"
    "    mpc-model - inspect, validate and evaluate mpc-rssm model files\n"
    "\n"
    "SYNOPSIS\n"
    "    mpc-model info FILE\n"
    "    mpc-model check FILE...\n"
    "    mpc-model eval FILE INPUT.json\n"
    "    mpc-model --help\n"
    "\n"
    "DESCRIPTION\n"
    "    Loads a model file (model/FORMAT.md) with librssm, the same loader and forward\n"
    "    pass that mpcd uses, so a file that passes `check` will load in the daemon.\n"
    "\n"
    "    info   Prints the architecture (O obs, A action, D deter, S stoch, H hidden,\n"
    "           E embed), the observation (a vector, or an image model's image size and\n"
    "           conv encoder), every metadata entry, every tensor with its shape in file\n"
    "           order, the parameter count and the FLOPs of one imagined step for one\n"
    "           candidate (transition + prior + reward, + value when present).\n"
    "\n"
    "    check  Fully validates each FILE (container, metadata, tensor shapes, finite\n"
    "           values). Prints \"FILE: ok ...\" or \"FILE: <error>: <message>\".\n"
    "\n"
    "    eval   Runs the model on the inputs in INPUT.json (\"-\" reads stdin) and prints\n"
    "           the outputs as JSON on stdout. INPUT is an object with either or both:\n"
    "\n"
    "           \"observe\": [ STEP, ... ]   belief updates, in order. STEP is\n"
    "               {\"obs\": [O], \"a_prev\": [A], \"h\": [D], \"z\": [S]}\n"
    "               obs is required; for an image model it is the image: O = H*W*C\n"
    "               integers 0..255 in HWC order, rows top first (see info).\n"
    "               a_prev defaults to zeros. h and z default to the\n"
    "               previous step's h and post_mean (zeros for the first step), so a\n"
    "               list of steps filters an episode the way mpcd does with mean latents.\n"
    "               Output per step: h, prior_mean, prior_std, post_mean, post_std,\n"
    "               kl (KL(post || prior), nats) and reward (at h, post_mean).\n"
    "\n"
    "           \"imagine\": {\"h\": [[D], ...], \"z\": [[S], ...], \"a\": [[A], ...]}\n"
    "               a batch of N rows (same N for all three). Output: h, prior_mean,\n"
    "               prior_std (the prior step from each row), and reward, value (if the\n"
    "               model has a value head) and decode (raw observation, if it has a\n"
    "               decoder) evaluated at the input (h, z) rows.\n"
    "\n"
    "           Example: {\"observe\": [{\"obs\": [0.1, 0, 1, 0, 0]},\n"
    "                                 {\"obs\": [0.2, 0, 1, 0, 0], \"a_prev\": [0.5]}]}\n"
    "\n"
    "EXIT STATUS\n"
    "    0  success (check: every FILE is valid)\n"
    "    1  a model file or the input is invalid (the message names the field or tensor)\n"
    "    2  usage error\n"
    "\n"
    "SEE ALSO\n"
    "    model/FORMAT.md, model/train/make_model.py, mpcd(8)\n";

static int load_or_report(const char *path, rssm_model_t **m)
{
    char err[1024];
    int rc = rssm_load(path, m, err, sizeof err);
    if (rc)
        fprintf(stderr, "mpc-model: %s (%s)\n", err, rssm_strerror(rc));
    return rc;
}

static const char *activation_name(rssm_activation_t a)
{
    return a == RSSM_ACT_ELU ? "elu" : "relu";
}

/* Side of an image model's conv encoder output for an input side n (FORMAT.md: 4
 * convolutions, kernel 4, stride 2, no padding). */
static int conv_side(int n)
{
    for (int i = 0; i < 4; i++)
        n = (n - 4) / 2 + 1;
    return n;
}

static void print_observation(const rssm_info_t *info)
{
    if (info->image_channels <= 0) {
        printf("observation vector of %d floats, normalised by obs_mean / obs_std\n",
               info->dims.obs);
        return;
    }
    int h4 = conv_side(info->image_height), w4 = conv_side(info->image_width);
    printf("observation image %dx%dx%d uint8 (HWC, top row first), x/255 - 0.5\n",
           info->image_height, info->image_width, info->image_channels);
    printf("encoder     conv depth %d, 4 convs k4 s2 -> [%d, %d, %d] -> %d -> E=%d\n",
           info->conv_depth, 8 * info->conv_depth, h4, w4, 8 * info->conv_depth * h4 * w4,
           info->dims.embed);
}

static int cmd_info(const char *path)
{
    rssm_model_t *m;
    if (load_or_report(path, &m))
        return 1;
    const rssm_info_t *info = rssm_info(m);
    const rssm_dims_t *d = &info->dims;
    printf("file        %s\n", path);
    printf("format      mpc-rssm %d.%d\n", info->format_major, info->format_minor);
    printf("name        %s\n", info->name);
    printf("task        %s\n", info->task);
    printf("dims        O=%d A=%d D=%d S=%d H=%d E=%d\n", d->obs, d->action, d->deter, d->stoch,
           d->hidden, d->embed);
    print_observation(info);
    printf("activation  %s, min_std %g\n", activation_name(info->activation), info->min_std);
    printf("heads       reward%s%s\n", info->has_value ? ", value" : "",
           info->has_decoder ? ", decoder" : "");
    printf("control     period %g s, discount %g\n", info->control_period_s, info->discount);
    printf("actions    ");
    for (int i = 0; i < d->action; i++)
        printf(" [%g, %g]", info->action_low[i], info->action_high[i]);
    printf("\nparameters  %lld\n", (long long)rssm_param_count(m));
    printf("flops       %lld per imagined step per candidate\n",
           (long long)rssm_flops_per_imagine_step(m));
    printf("\nmetadata (%d)\n", rssm_metadata_count(m));
    for (int i = 0; i < rssm_metadata_count(m); i++) {
        const char *k, *v;
        rssm_metadata_at(m, i, &k, &v);
        printf("  %-22s %s\n", k, v);
    }
    printf("\ntensors (%d, float32, file order)\n", rssm_tensor_count(m));
    for (int i = 0; i < rssm_tensor_count(m); i++) {
        const char *name;
        int rank, shape[4];
        rssm_tensor_at(m, i, &name, &rank, shape);
        printf("  %-22s [", name);
        for (int k = 0; k < rank; k++)
            printf("%s%d", k ? ", " : "", shape[k]);
        printf("]\n");
    }
    rssm_destroy(m);
    return 0;
}

static int cmd_check(int n, char **paths)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        rssm_model_t *m;
        char err[1024];
        int rc = rssm_load(paths[i], &m, err, sizeof err);
        if (rc) {
            printf("%s: %s: %s\n", paths[i], rssm_strerror(rc), err);
            bad = 1;
            continue;
        }
        const rssm_info_t *info = rssm_info(m);
        char image[64] = "";
        if (info->image_channels > 0)
            snprintf(image, sizeof image, ", image %dx%dx%d", info->image_height,
                     info->image_width, info->image_channels);
        printf("%s: ok (mpc-rssm %d.%d, %s, %lld parameters%s)\n", paths[i], info->format_major,
               info->format_minor, info->name, (long long)rssm_param_count(m), image);
        rssm_destroy(m);
    }
    return bad;
}

/* ---- eval ---- */

typedef struct eval_ctx {
    const rssm_model_t *m;
    const char *input;
} eval_ctx_t;

/* Reads exactly n finite numbers from a JSON array into out. */
static int read_vec(const eval_ctx_t *c, const cJSON *arr, int n, float *out, const char *what)
{
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) {
        fprintf(stderr, "mpc-model: %s: %s must be an array of %d numbers\n", c->input, what,
                n);
        return -1;
    }
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr)
    {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e30) {
            fprintf(stderr, "mpc-model: %s: %s[%d] is not a finite number\n", c->input, what,
                    i);
            return -1;
        }
        out[i++] = (float)v->valuedouble;
    }
    return 0;
}

/* Reads an image model's observation: exactly n integers 0..255. */
static int read_image(const eval_ctx_t *c, const cJSON *arr, int n, uint8_t *out,
                      const char *what)
{
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) {
        fprintf(stderr, "mpc-model: %s: %s must be an image: an array of %d integers 0..255\n",
                c->input, what, n);
        return -1;
    }
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr)
    {
        double x = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (!(x >= 0 && x <= 255 && x == (int)x)) {
            fprintf(stderr, "mpc-model: %s: %s[%d] is not an integer 0..255\n", c->input, what,
                    i);
            return -1;
        }
        out[i++] = (uint8_t)x;
    }
    return 0;
}

/* Reads a batch [rows][n] into out (rows given by the array length when *rows < 0). */
static int read_rows(const eval_ctx_t *c, const cJSON *arr, int *rows, int n, float **out,
                     const char *what)
{
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) < 1 ||
        (*rows >= 0 && cJSON_GetArraySize(arr) != *rows)) {
        fprintf(stderr, "mpc-model: %s: imagine.%s must be a non-empty array of rows%s\n",
                c->input, what, *rows >= 0 ? " (as many as imagine.h)" : "");
        return -1;
    }
    *rows = cJSON_GetArraySize(arr);
    *out = calloc((size_t)*rows * (size_t)n, sizeof(float));
    if (!*out)
        return -1;
    char label[64];
    int i = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, arr)
    {
        snprintf(label, sizeof label, "imagine.%s[%d]", what, i);
        if (read_vec(c, row, n, *out + (size_t)i * n, label))
            return -1;
        i++;
    }
    return 0;
}

static cJSON *vec_json(const float *x, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(x[i]));
    return a;
}

static cJSON *rows_json(const float *x, int rows, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < rows; i++)
        cJSON_AddItemToArray(a, vec_json(x + (size_t)i * n, n));
    return a;
}

static int eval_observe(const eval_ctx_t *c, const cJSON *steps, cJSON *out)
{
    const rssm_dims_t *d = &rssm_info(c->m)->dims;
    const int D = d->deter, S = d->stoch, A = d->action, O = d->obs;
    const bool image = rssm_info(c->m)->image_channels > 0;
    if (!cJSON_IsArray(steps)) {
        fprintf(stderr, "mpc-model: %s: observe must be an array of steps\n", c->input);
        return -1;
    }
    /* reward_batch(n = 1) needs less scratch than observe, so one workspace serves both */
    size_t nws = rssm_observe_workspace(c->m);
    float *buf = calloc((size_t)(2 * D + 5 * S + A + O) + nws, sizeof(float));
    uint8_t *pixels = image ? malloc((size_t)O) : NULL;
    if (!buf || (image && !pixels)) {
        free(buf);
        free(pixels);
        return -1;
    }
    float *h = buf, *z = h + D, *a = z + S, *obs = a + A, *hn = obs + O;
    float *pm = hn + D, *ps = pm + S, *qm = ps + S, *qs = qm + S, *ws = qs + S;
    cJSON *list = cJSON_AddArrayToObject(out, "observe");
    int i = 0, rc = 0;
    const cJSON *st;
    char label[64];
    cJSON_ArrayForEach(st, steps)
    {
        const cJSON *v;
#define FIELD(key, n, dst, required)                                                           \
    snprintf(label, sizeof label, "observe[%d].%s", i, key);                                   \
    v = cJSON_GetObjectItemCaseSensitive(st, key);                                             \
    if (v || required) {                                                                       \
        if ((rc = read_vec(c, v, n, dst, label)))                                              \
            break;                                                                             \
    }
        memset(a, 0, sizeof(float) * (size_t)A);
        if (image) {
            snprintf(label, sizeof label, "observe[%d].obs", i);
            if ((rc = read_image(c, cJSON_GetObjectItemCaseSensitive(st, "obs"), O, pixels,
                                 label)))
                break;
        } else {
            FIELD("obs", O, obs, 1)
        }
        FIELD("a_prev", A, a, 0)
        FIELD("h", D, h, 0)
        FIELD("z", S, z, 0)
#undef FIELD
        rssm_observe_out_t res = {hn, pm, ps, qm, qs};
        rc = image ? rssm_observe_image(c->m, h, z, a, pixels, &res, ws)
                   : rssm_observe(c->m, h, z, a, obs, &res, ws);
        if (rc) {
            fprintf(stderr, "mpc-model: observe[%d]: %s\n", i, rssm_strerror(rc));
            break;
        }
        float reward;
        rssm_reward_batch(c->m, 1, hn, qm, &reward, ws);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "h", vec_json(hn, D));
        cJSON_AddItemToObject(o, "prior_mean", vec_json(pm, S));
        cJSON_AddItemToObject(o, "prior_std", vec_json(ps, S));
        cJSON_AddItemToObject(o, "post_mean", vec_json(qm, S));
        cJSON_AddItemToObject(o, "post_std", vec_json(qs, S));
        cJSON_AddNumberToObject(o, "kl", rssm_kl_diag(qm, qs, pm, ps, S));
        cJSON_AddNumberToObject(o, "reward", reward);
        cJSON_AddItemToArray(list, o);
        /* the next step continues from this belief unless it gives h / z */
        memcpy(h, hn, sizeof(float) * (size_t)D);
        memcpy(z, qm, sizeof(float) * (size_t)S);
        i++;
    }
    free(buf);
    free(pixels);
    return rc;
}

static int eval_imagine(const eval_ctx_t *c, const cJSON *in, cJSON *out)
{
    const rssm_info_t *info = rssm_info(c->m);
    const rssm_dims_t *d = &info->dims;
    const int D = d->deter, S = d->stoch, A = d->action, O = d->obs;
    float *h = NULL, *z = NULL, *a = NULL, *buf = NULL;
    int n = -1, rc = -1;
    if (!cJSON_IsObject(in)) {
        fprintf(stderr, "mpc-model: %s: imagine must be an object {h, z, a}\n", c->input);
        return -1;
    }
    if (read_rows(c, cJSON_GetObjectItemCaseSensitive(in, "h"), &n, D, &h, "h") ||
        read_rows(c, cJSON_GetObjectItemCaseSensitive(in, "z"), &n, S, &z, "z") ||
        read_rows(c, cJSON_GetObjectItemCaseSensitive(in, "a"), &n, A, &a, "a"))
        goto out;
    size_t rows = (size_t)n;
    buf = calloc(rows * (size_t)(D + 2 * S + 2 + O) + rssm_batch_workspace(c->m, n),
                 sizeof(float));
    if (!buf)
        goto out;
    float *hn = buf, *pm = hn + rows * D, *ps = pm + rows * S, *r = ps + rows * S;
    float *v = r + rows, *obs = v + rows, *ws = obs + rows * O;
    rssm_imagine_batch(c->m, n, h, z, a, hn, pm, ps, ws);
    rssm_reward_batch(c->m, n, h, z, r, ws);
    cJSON *o = cJSON_AddObjectToObject(out, "imagine");
    cJSON_AddItemToObject(o, "h", rows_json(hn, n, D));
    cJSON_AddItemToObject(o, "prior_mean", rows_json(pm, n, S));
    cJSON_AddItemToObject(o, "prior_std", rows_json(ps, n, S));
    cJSON_AddItemToObject(o, "reward", vec_json(r, n));
    if (info->has_value) {
        rssm_value_batch(c->m, n, h, z, v, ws);
        cJSON_AddItemToObject(o, "value", vec_json(v, n));
    }
    if (info->has_decoder) {
        rssm_decode_batch(c->m, n, h, z, obs, ws);
        cJSON_AddItemToObject(o, "decode", rows_json(obs, n, O));
    }
    rc = 0;
out:
    free(h), free(z), free(a), free(buf);
    return rc;
}

static char *read_text(const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len < cap - 1)
            break;
        char *bigger = cap < (256u << 20) ? realloc(buf, cap *= 2) : NULL;
        if (!bigger)
            free(buf);
        buf = bigger;
    }
    if (buf)
        buf[len] = 0;
    if (f != stdin)
        fclose(f);
    return buf;
}

static int cmd_eval(const char *path, const char *input)
{
    rssm_model_t *m;
    if (load_or_report(path, &m))
        return 1;
    eval_ctx_t c = {m, input};
    int rc = 1;
    cJSON *in = NULL, *out = cJSON_CreateObject();
    char *text = read_text(input);
    if (!text) {
        fprintf(stderr, "mpc-model: cannot read %s\n", input);
        goto done;
    }
    in = cJSON_Parse(text);
    if (!cJSON_IsObject(in)) {
        fprintf(stderr, "mpc-model: %s: not a JSON object (see mpc-model --help)\n", input);
        goto done;
    }
    const cJSON *obs = cJSON_GetObjectItemCaseSensitive(in, "observe");
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(in, "imagine");
    if (!obs && !img) {
        fprintf(stderr, "mpc-model: %s: give \"observe\" and/or \"imagine\"\n", input);
        goto done;
    }
    if ((obs && eval_observe(&c, obs, out)) || (img && eval_imagine(&c, img, out)))
        goto done;
    char *json = cJSON_Print(out);
    if (json) {
        puts(json);
        free(json);
        rc = 0;
    }
done:
    cJSON_Delete(in);
    cJSON_Delete(out);
    free(text);
    rssm_destroy(m);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "info") == 0)
        return cmd_info(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "check") == 0)
        return cmd_check(argc - 2, argv + 2);
    if (argc == 4 && strcmp(argv[1], "eval") == 0)
        return cmd_eval(argv[2], argv[3]);
    fprintf(stderr, "usage: mpc-model info FILE | check FILE... | eval FILE INPUT.json\n"
                    "       mpc-model --help for details\n");
    return 2;
}
