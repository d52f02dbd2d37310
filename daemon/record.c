/*
 * record.c: --record DIR: every session's transitions become episode files the trainer
 * reads (common/EPISODES.md, written by common/episode_file.c); see record.h.
 *
 * Pairing: a Step carries o_t and r_{t-1} (the reward of the previous action) and gets
 * a_t back. So a session's episode collects o_0, a_0, then per step r_{t-1}, o_t, a_t.
 * When the episode ends (reset flag, Reset, a new Hello, the connection closing) the last
 * action has no reward yet and is dropped: the file holds T = steps - 1 transitions
 * (o_0..o_T, a_0..a_{T-1}, r_0..r_{T-1}). Very long episodes are cut every
 * RECORD_MAX_STEPS steps (a pixel session's also once its images reach
 * RECORD_MAX_IMAGE_BYTES), the cut's last observation starting the next file.
 *
 * Buffers live on the loop thread (amortised doubling: recording is opt-in and the only
 * allocation on the step path it adds); writing a file is blocking I/O, so the finished
 * buffers move to libuv's thread pool. Once DIR holds record-max-mb, recording stops
 * with one warning (counted and logged as dropped episodes). Each session may start at
 * most record-episodes-per-min files a minute (a token bucket that holds as many), so a
 * client resetting in a loop cannot flood DIR with files.
 *
 * A pixel session (its model observes images) records its images as `image` [T+1, H, W,
 * C] uint8 and an empty `observation` [T+1, 0] (common/EPISODES.md).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "record.h"

#include "episode_file.h"
#include "errbuf.h"
#include "log.h"

#define RECORD_MAX_STEPS       10000
#define RECORD_MAX_IMAGE_BYTES (64u << 20) /* a file's images, 64 MiB */

struct record_episode {
    float *obs, *act, *rew;
    uint8_t *img;                    /* [cap, I]: a pixel session's images */
    size_t n_obs, n_act, n_rew, cap; /* cap in steps (obs rows) */
    int O, A;
    size_t I; /* bytes of an image, H * W * C; 0 for a vector session */
    int H, W, C;
    char task[64];
    /* the session's quota: a token bucket of episode files (record-episodes-per-min) */
    double tokens;
    uint64_t refilled_ms; /* uv_now of the last refill */
    bool quota_warned;
};
typedef struct record_episode rec_buf_t;

typedef struct rec_write {
    uv_work_t work;
    recorder_t *r;
    rec_buf_t buf;
    int rc;
    size_t bytes;   /* the file's size once written */
    size_t pending; /* the buffer's bytes, counted in recorder.pending_bytes meanwhile */
    char path[4096], err[512];
} rec_write_t;

struct recorder {
    uv_loop_t *loop;
    record_opts_t o; /* (o.dir points at dir) */
    char *dir;
    uint64_t cap_bytes, used_bytes;
    uint64_t
        pending_bytes; /* finished episodes still being written (record-max-mb counts them) */
    unsigned seq;
    int writing; /* files being written on the pool */
    bool full_warned;
    uint64_t written, dropped;
};

static uint64_t dir_bytes(const char *dir)
{
    uint64_t total = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    char p[4352];
    struct stat st;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 4, ".npz"))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (!stat(p, &st))
            total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

int recorder_create(uv_loop_t *loop, const record_opts_t *o, recorder_t **out, char *err,
                    size_t errlen)
{
    const char *dir = o->dir;
    *out = NULL;
    if (mkdir(dir, 0750) && errno != EEXIST) {
        int e = errno;
        errbuf_set(err, errlen, "record: cannot create %s: %s", dir, strerror(e));
        return -e;
    }
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        errbuf_set(err, errlen, "record: %s is not a directory", dir);
        return -ENOTDIR;
    }
    recorder_t *r = calloc(1, sizeof *r);
    if (!r || !(r->dir = strdup(dir))) {
        free(r);
        errbuf_set(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->loop = loop;
    r->o = *o;
    r->o.dir = r->dir;
    r->cap_bytes = (uint64_t)o->max_mb << 20;
    r->used_bytes = dir_bytes(dir);
    *out = r;
    mpcd_log(MPCD_LOG_INFO, "recording episodes to %s (%.1f of %lld MB used)", dir,
             r->used_bytes / 1048576.0, (long long)o->max_mb);
    return 0;
}

static void buf_free(rec_buf_t *b)
{
    free(b->obs);
    free(b->act);
    free(b->rew);
    free(b->img);
    memset(b, 0, sizeof *b);
}

void recorder_destroy(recorder_t *r)
{
    if (!r)
        return;
    if (r->written || r->dropped)
        mpcd_log(MPCD_LOG_INFO, "recorded %llu episode(s), dropped %llu",
                 (unsigned long long)r->written, (unsigned long long)r->dropped);
    free(r->dir);
    free(r);
}

static void write_work(uv_work_t *w)
{
    rec_write_t *x = w->data;
    rec_buf_t *b = &x->buf;
    episode_t ep = {.task = b->task,
                    .steps = b->n_act,
                    .obs_dim = (size_t)b->O,
                    .act_dim = (size_t)b->A,
                    .observation = b->obs,
                    .action = b->act,
                    .reward = b->rew,
                    .image = b->I ? b->img : NULL,
                    .image_height = (size_t)b->H,
                    .image_width = (size_t)b->W,
                    .image_channels = (size_t)b->C};
    unsigned seq = x->r->seq; /* a hint; episode_write skips names that exist */
    x->rc = episode_write(x->r->dir, &ep, &seq, x->path, sizeof x->path, x->err, sizeof x->err);
    struct stat st;
    if (!x->rc && !stat(x->path, &st))
        x->bytes = (uint64_t)st.st_size;
}

static void write_done(uv_work_t *w, int status)
{
    rec_write_t *x = w->data;
    recorder_t *r = x->r;
    r->writing--;
    r->pending_bytes -= x->pending;
    if (status || x->rc) {
        r->dropped++;
        mpcd_log(MPCD_LOG_ERR, "record: %s", status ? uv_strerror(status) : x->err);
    } else {
        r->written++;
        r->used_bytes += x->bytes;
        r->seq++;
        mpcd_log(MPCD_LOG_DEBUG, "record: %s (%zu steps)", x->path, x->buf.n_act);
    }
    buf_free(&x->buf);
    free(x);
}

static void sanitize_task(char *out, size_t outlen, const char *task)
{
    size_t o = 0;
    for (const char *c = task && *task ? task : "mpcd"; *c && o + 1 < outlen; c++)
        out[o++] = ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                    (*c >= '0' && *c <= '9') || *c == '_' || *c == '-')
                       ? *c
                       : '_';
    out[o] = 0;
}

/* One episode file from the session's bucket; false when it is empty. */
static bool take_quota(recorder_t *r, rec_buf_t *b)
{
    double per_min = r->o.episodes_per_min;
    uint64_t now = uv_now(r->loop);
    b->tokens += (double)(now - b->refilled_ms) / 60000.0 * per_min;
    if (b->tokens > per_min)
        b->tokens = per_min;
    b->refilled_ms = now;
    if (b->tokens >= 1) {
        b->tokens -= 1;
        return true;
    }
    if (!b->quota_warned)
        mpcd_log(MPCD_LOG_WARNING,
                 "record: a session started more than %d episodes a minute "
                 "(record-episodes-per-min); not recording the excess",
                 r->o.episodes_per_min);
    b->quota_warned = true;
    return false;
}

/* Hands a finished episode to the pool. drop_last: the episode ended and its last action
 * never got a reward, so that action is not a transition. */
static void flush(recorder_t *r, rec_buf_t *b, bool drop_last)
{
    if (drop_last && b->n_act > 0)
        b->n_act--;
    bool whole = b->n_act >= 1 && b->n_obs >= b->n_act + 1 && b->n_rew >= b->n_act;
    if (!whole) {
        b->n_obs = b->n_act = b->n_rew = 0;
        return;
    }
    if (!take_quota(r, b)) {
        r->dropped++;
        mpcd_metrics_guard(r->o.metrics, MPCD_GUARD_RECORD_QUOTA);
        b->n_obs = b->n_act = b->n_rew = 0;
        return;
    }
    size_t size =
        sizeof(float) * (b->n_obs * (size_t)b->O + b->n_act * (size_t)b->A + b->n_rew) +
        b->n_obs * b->I;
    if (r->used_bytes + r->pending_bytes + size > r->cap_bytes) {
        r->dropped++;
        if (!r->full_warned)
            mpcd_log(MPCD_LOG_WARNING,
                     "record: %s holds %lld MB (record-max-mb); not recording further "
                     "episodes",
                     r->dir, (long long)r->o.max_mb);
        r->full_warned = true;
        b->n_obs = b->n_act = b->n_rew = 0;
        return;
    }
    rec_write_t *x = calloc(1, sizeof *x);
    if (!x) {
        r->dropped++;
        b->n_obs = b->n_act = b->n_rew = 0;
        return;
    }
    x->r = r;
    x->pending = size;
    r->pending_bytes += size;
    x->buf = *b; /* the pool owns the arrays now; the session starts fresh ones */
    b->obs = b->act = b->rew = NULL;
    b->img = NULL;
    b->n_obs = b->n_act = b->n_rew = b->cap = 0;
    x->work.data = x;
    if (uv_queue_work(r->loop, &x->work, write_work, write_done)) {
        r->dropped++;
        buf_free(&x->buf);
        free(x);
        return;
    }
    r->writing++;
}

/* The most observations a buffer holds: an episode is cut at RECORD_MAX_STEPS steps, a
 * pixel one also once its images reach RECORD_MAX_IMAGE_BYTES (record_step). */
static size_t max_rows(const rec_buf_t *b)
{
    size_t rows = RECORD_MAX_STEPS + 1;
    if (b->I && RECORD_MAX_IMAGE_BYTES / b->I + 1 < rows)
        rows = RECORD_MAX_IMAGE_BYTES / b->I + 1;
    return rows;
}

static int grow(rec_buf_t *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < need)
        cap *= 2;
    if (cap > max_rows(b) && need <= max_rows(b)) /* doubling would pass the cut */
        cap = max_rows(b);
    float *o = realloc(b->obs, sizeof(float) * cap * (size_t)b->O + 1);
    if (!o)
        return -ENOMEM;
    b->obs = o;
    float *a = realloc(b->act, sizeof(float) * cap * (size_t)b->A);
    if (!a)
        return -ENOMEM;
    b->act = a;
    float *w = realloc(b->rew, sizeof(float) * cap);
    if (!w)
        return -ENOMEM;
    b->rew = w;
    if (b->I) {
        uint8_t *im = realloc(b->img, cap * b->I);
        if (!im)
            return -ENOMEM;
        b->img = im;
    }
    b->cap = cap;
    return 0;
}

void record_step(recorder_t *r, record_episode_t **ep, const session_t *se)
{
    if (!r || !se || se->out.rc)
        return;
    rec_buf_t *b = *ep;
    if (!b) {
        if (!(b = calloc(1, sizeof *b)))
            return;
        const rssm_info_t *info = se->model->info;
        b->O = se->obs_dim;
        b->A = se->act_dim;
        b->I = se->img_bytes;
        if (b->I) {
            b->H = info->image_height;
            b->W = info->image_width;
            b->C = info->image_channels;
        }
        b->tokens = r->o.episodes_per_min;
        b->refilled_ms = uv_now(r->loop);
        sanitize_task(b->task, sizeof b->task, info->task);
        *ep = b;
    }
    bool new_episode = se->in.reset || b->n_obs == 0;
    if (new_episode)
        flush(r, b, true);
    if (grow(b, b->n_obs + 1))
        return; /* this step is lost; the buffer stays consistent */
    if (!new_episode)
        b->rew[b->n_rew++] = se->in.reward; /* r_{t-1} */
    if (b->I)
        memcpy(b->img + b->n_obs * b->I, se->in.image, b->I);
    memcpy(b->obs + b->n_obs++ * (size_t)b->O, se->in.obs, sizeof(float) * (size_t)b->O);
    if (!new_episode &&
        (b->n_act >= RECORD_MAX_STEPS || (b->I && b->n_obs * b->I >= RECORD_MAX_IMAGE_BYTES))) {
        /* Cut a long episode here: complete up to o_t, which also starts the next file. */
        flush(r, b, false);
        if (grow(b, 1))
            return;
        memcpy(b->obs, se->in.obs, sizeof(float) * (size_t)b->O);
        if (b->I)
            memcpy(b->img, se->in.image, b->I);
        b->n_obs = 1;
    }
    /* the action applied after o_t (the one returned for it unless it was delayed) */
    memcpy(b->act + b->n_act++ * (size_t)b->A, se->a_prev, sizeof(float) * (size_t)b->A);
}

void record_session_end(recorder_t *r, record_episode_t **ep)
{
    rec_buf_t *b = *ep;
    if (!b)
        return;
    if (r)
        flush(r, b, true);
    buf_free(b);
    free(b);
    *ep = NULL;
}

bool record_busy(const recorder_t *r)
{
    return r && r->writing > 0;
}
