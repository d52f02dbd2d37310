/*
 * registry.c: model loading with validation and a smoke test, per-worker planners and
 * scratch, atomic swap and reference counting (see registry.h).
 */
#include "registry.h"
#include "errbuf.h"
#include "mono.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "model_file.h"

static bool all_finite(const float *x, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

size_t registry_image_bytes(const rssm_info_t *info)
{
    if (info->image_channels <= 0)
        return 0;
    return (size_t)info->image_height * info->image_width * info->image_channels;
}

int registry_obs_values(const rssm_info_t *info)
{
    return info->image_channels > 0 ? 0 : info->dims.obs;
}

const char *registry_obs_shape(const rssm_info_t *info, char *buf, size_t len)
{
    if (info->image_channels > 0)
        snprintf(buf, len, "%dx%dx%d images (%zu bytes)", info->image_height, info->image_width,
                 info->image_channels, registry_image_bytes(info));
    else
        snprintf(buf, len, "%d observation values", info->dims.obs);
    return buf;
}

static int slot_init(registry_slot_t *s, const registry_model_t *m, const cem_config_t *cfg,
                     char *err, size_t errlen)
{
    const rssm_dims_t *d = &m->info->dims;
    size_t ws = rssm_observe_workspace(m->model), wb = rssm_batch_workspace(m->model, 1);
    if (wb > ws)
        ws = wb;
    size_t n = (size_t)d->deter + 4 * (size_t)d->stoch + 1 + ws;
    if (!(s->buf = calloc(n, sizeof(float)))) {
        errbuf_set(err, errlen, "out of memory for worker scratch");
        return -ENOMEM;
    }
    float *p = s->buf;
    s->h = p, p += d->deter;
    s->prior_mean = p, p += d->stoch;
    s->prior_std = p, p += d->stoch;
    s->post_mean = p, p += d->stoch;
    s->post_std = p, p += d->stoch;
    s->reward = p, p += 1;
    s->ws = p;
    return cem_create(m->model, cfg, &s->planner, err, errlen);
}

/* One forward pass through every head on zero state and a zero observation (a black
 * image for an image model): catches
 * weights that load but produce NaN/Inf before a client ever sees them. */
static int smoke_test(const registry_model_t *m, char *err, size_t errlen)
{
    const rssm_dims_t *d = &m->info->dims;
    registry_slot_t *s = &m->slots[0];
    size_t n = (size_t)d->deter + d->stoch + d->action + d->obs + 2 * (size_t)d->deter;
    float *buf = calloc(n, sizeof(float));
    if (!buf) {
        errbuf_set(err, errlen, "out of memory for the smoke test");
        return -ENOMEM;
    }
    float *h = buf, *z = h + d->deter, *a = z + d->stoch, *o = a + d->action;
    float *h2 = o + d->obs;
    rssm_observe_out_t out = {s->h, s->prior_mean, s->prior_std, s->post_mean, s->post_std};
    /* o has dims.obs zero floats: at least the image's dims.obs zero bytes */
    bool image = registry_image_bytes(m->info) > 0;
    int rc = image ? rssm_observe_image(m->model, h, z, a, (const uint8_t *)o, &out, s->ws)
                   : rssm_observe(m->model, h, z, a, o, &out, s->ws);
    if (rc) {
        errbuf_set(err, errlen, "smoke test: %s failed: %s",
                   image ? "rssm_observe_image" : "rssm_observe", rssm_strerror(rc));
        goto done;
    }
    rc = -EINVAL;
    if (!all_finite(s->h, d->deter) || !all_finite(s->post_mean, d->stoch) ||
        !all_finite(s->post_std, d->stoch) || !all_finite(s->prior_std, d->stoch)) {
        errbuf_set(err, errlen, "smoke test: belief update produced non-finite values");
        goto done;
    }
    rssm_imagine_batch(m->model, 1, s->h, s->post_mean, a, h2, s->prior_mean, s->prior_std,
                       s->ws);
    rssm_reward_batch(m->model, 1, h2, s->prior_mean, s->reward, s->ws);
    if (!all_finite(h2, d->deter) || !all_finite(s->reward, 1)) {
        errbuf_set(err, errlen, "smoke test: imagination or reward produced non-finite values");
        goto done;
    }
    rc = 0;
done:
    free(buf);
    return rc;
}

int registry_model_load(const registry_source_t *src, const cem_config_t *cfg, int nslots,
                        const registry_model_t *like, registry_model_t **out, char *err,
                        size_t errlen)
{
    double t0 = mono_now();
    int rc = -ENOMEM;
    char path[PATH_MAX];
    *out = NULL;
    int fd = model_file_open(src->path, src->confine_dir, path, sizeof path, err, errlen);
    if (fd < 0)
        return fd;
    registry_model_t *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        close(fd);
        errbuf_set(err, errlen, "out of memory");
        goto fail;
    }
    char msg[512];
    rc = rssm_load_fd(fd, path, src->max_bytes, src->confine_dir ? RSSM_LOAD_OPAQUE : 0,
                      &m->model, msg, sizeof msg);
    close(fd);
    if (rc) {
        errbuf_set(err, errlen, "%s", msg); /* librssm's messages start with the path */
        goto fail;
    }
    m->info = rssm_info(m->model);
    if (like) {
        const rssm_info_t *li = like->info, *mi = m->info;
        /* (all 0 for two vector models: their sizes are compared below) */
        if (li->image_height != mi->image_height || li->image_width != mi->image_width ||
            li->image_channels != mi->image_channels) {
            char was[64], now[64];
            errbuf_set(err, errlen,
                       "%s: the model observes %s; the serving model observes %s; sessions "
                       "could not continue",
                       path, registry_obs_shape(mi, now, sizeof now),
                       registry_obs_shape(li, was, sizeof was));
            rc = -EINVAL;
            goto fail;
        }
        const rssm_dims_t *a = &li->dims, *b = &mi->dims;
        if (a->obs != b->obs || a->action != b->action) {
            errbuf_set(err, errlen,
                       "%s: observation/action sizes %d/%d differ from the serving model's "
                       "%d/%d; sessions could not continue",
                       path, b->obs, b->action, a->obs, a->action);
            rc = -EINVAL;
            goto fail;
        }
    }
    if (!(m->slots = calloc((size_t)nslots, sizeof *m->slots))) {
        errbuf_set(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    m->nslots = nslots;
    /* "use-value" means: when the model has a value head. */
    cem_config_t pc = *cfg;
    pc.use_value = cfg->use_value && m->info->has_value;
    for (int i = 0; i < nslots; i++) {
        if ((rc = slot_init(&m->slots[i], m, &pc, msg, sizeof msg))) {
            errbuf_set(err, errlen, "%s: planner: %s", path, msg);
            goto fail;
        }
    }
    if ((rc = smoke_test(m, msg, sizeof msg))) {
        errbuf_set(err, errlen, "%s: %s", path, msg);
        goto fail;
    }
    atomic_init(&m->refs, 1);
    /* Calibrated by cem_create: the first cost admission control works with. */
    m->iteration_s = cem_iteration_estimate(m->slots[0].planner);
    m->load_s = mono_now() - t0;
    *out = m;
    return 0;
fail:
    registry_model_free(m);
    return rc < 0 ? rc : -EINVAL;
}

void registry_model_free(registry_model_t *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->nslots; i++) {
        cem_destroy(m->slots[i].planner);
        free(m->slots[i].buf);
    }
    free(m->slots);
    rssm_destroy(m->model);
    free(m->path);
    free(m);
}

int registry_init(registry_t *r, registry_wake_cb wake, void *ctx)
{
    memset(r, 0, sizeof *r);
    r->wake = wake;
    r->wake_ctx = ctx;
    return -pthread_mutex_init(&r->lock, NULL);
}

void registry_destroy(registry_t *r)
{
    registry_model_t *cur = r->current;
    r->current = NULL;
    registry_release(cur);
    registry_reap(r);
    pthread_mutex_destroy(&r->lock);
}

void registry_swap(registry_t *r, registry_model_t *m)
{
    registry_model_t *old = r->current;
    m->owner = r;
    m->version = ++r->version;
    r->current = m;
    registry_release(old);
}

registry_model_t *registry_acquire(registry_t *r)
{
    if (r->current)
        registry_ref(r->current);
    return r->current;
}

void registry_ref(registry_model_t *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void registry_release(registry_model_t *m)
{
    if (!m)
        return;
    /* acq_rel: every use of the model by this thread happens before its destruction. */
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    registry_t *r = m->owner;
    if (!r) { /* never published: nobody else can see it */
        registry_model_free(m);
        return;
    }
    pthread_mutex_lock(&r->lock);
    m->next_dead = r->dead;
    r->dead = m;
    pthread_mutex_unlock(&r->lock);
    if (r->wake)
        r->wake(r->wake_ctx);
}

int registry_reap(registry_t *r)
{
    pthread_mutex_lock(&r->lock);
    registry_model_t *list = r->dead;
    r->dead = NULL;
    pthread_mutex_unlock(&r->lock);
    int n = 0;
    while (list) {
        registry_model_t *next = list->next_dead;
        registry_model_free(list);
        list = next;
        n++;
    }
    return n;
}

int registry_dead_count(registry_t *r)
{
    int n = 0;
    pthread_mutex_lock(&r->lock);
    for (registry_model_t *m = r->dead; m; m = m->next_dead)
        n++;
    pthread_mutex_unlock(&r->lock);
    return n;
}
