/*
 * fuzz_loader.c: libFuzzer target for the model loader (rssm_load_buffer).
 *
 * Any input must be either refused with an error code and a message, or accepted as a
 * fully valid model; an accepted model is then run through one observe step (an image
 * model's: rssm_observe_image and rssm_encode_image on a black image) and one batched
 * imagine/reward(/value/decode) step on zero inputs, which must stay finite-safe
 * (ASan/UBSan check the memory side). Built only with -Dfuzzing=true (clang).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rssm.h"

static void run_model(const rssm_model_t *m)
{
    const rssm_info_t *info = rssm_info(m);
    const rssm_dims_t *d = &info->dims;
    /* the fuzzer's max_len keeps dims small; refuse to allocate silly amounts anyway */
    if ((size_t)d->deter * d->hidden > (1u << 22))
        return;
    const int n = 2;
    const bool image = info->image_channels > 0;
    size_t D = (size_t)d->deter, S = (size_t)d->stoch, A = (size_t)d->action;
    size_t O = image ? 0 : (size_t)d->obs; /* float observations: vector models only */
    size_t ws_n = rssm_batch_workspace(m, n), ws_o = rssm_observe_workspace(m);
    if (ws_o > (1u << 24))
        return;
    size_t total = ws_n + ws_o + n * (2 * D + 4 * S + A + O + 2) + 2 * S + (size_t)d->embed;
    float *buf = calloc(total, sizeof(float));
    uint8_t *pixels = image ? calloc((size_t)d->obs, 1) : NULL;
    if (!buf || (image && !pixels)) {
        free(buf);
        free(pixels);
        return;
    }
    float *h = buf, *z = h + n * D, *a = z + n * S, *obs = a + n * A, *hn = obs + n * O;
    float *pm = hn + n * D, *ps = pm + n * S, *r = ps + n * S, *v = r + n;
    float *qm = v + n, *qs = qm + S, *wb = qs + S, *wo = wb + ws_n, *e = wo + ws_o;
    rssm_observe_out_t out = {hn, pm, ps, qm, qs};
    if (image ? rssm_observe_image(m, h, z, a, pixels, &out, wo) != 0 ||
                    rssm_encode_image(m, pixels, e, wo) != 0
              : rssm_observe(m, h, z, a, obs, &out, wo) != 0)
        abort();
    rssm_imagine_batch(m, n, h, z, a, hn, pm, ps, wb);
    rssm_reward_batch(m, n, h, z, r, wb);
    if (info->has_value)
        rssm_value_batch(m, n, h, z, v, wb);
    if (info->has_decoder)
        rssm_decode_batch(m, n, h, z, obs, wb);
    free(buf);
    free(pixels);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rssm_model_t *m = (rssm_model_t *)1;
    char err[256];
    err[0] = 0;
    int rc = rssm_load_buffer(data, size, &m, err, sizeof err);
    if (rc != 0) {
        /* a refusal always says why and never leaves a model behind */
        if (m != NULL || err[0] == 0 || rc > 0)
            abort();
        return 0;
    }
    run_model(m);
    rssm_destroy(m);
    return 0;
}
