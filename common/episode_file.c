/*
 * episode_file.c: one episode as an .npz file, written atomically and never over another
 * (see episode_file.h).
 */
#include "episode_file.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errbuf.h"
#include "npz.h"

#define MAX_SEQ 1000000u

static int check(const episode_t *ep, char *err, size_t errlen)
{
    if (ep == NULL || ep->task == NULL || ep->task[0] == '\0') {
        errbuf_set(err, errlen, "episode: no task name");
        return -EINVAL;
    }
    for (const char *c = ep->task; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (*c >= '0' && *c <= '9') || *c == '_' || *c == '-')) {
            errbuf_set(err, errlen, "episode: task name '%s' is not [A-Za-z0-9_-]+", ep->task);
            return -EINVAL;
        }
    if (ep->steps < 1 || (ep->obs_dim < 1 && ep->image == NULL) || ep->act_dim < 1 ||
        (ep->observation == NULL && ep->obs_dim > 0) || ep->action == NULL ||
        ep->reward == NULL) {
        errbuf_set(err, errlen,
                   "episode: empty (steps %zu, observation size %zu, action size %zu)",
                   ep->steps, ep->obs_dim, ep->act_dim);
        return -EINVAL;
    }
    const struct {
        const char *name;
        const float *v;
        size_t n;
    } arr[] = {{"observation", ep->observation, (ep->steps + 1) * ep->obs_dim},
               {"action", ep->action, ep->steps * ep->act_dim},
               {"reward", ep->reward, ep->steps}};
    for (size_t k = 0; k < sizeof(arr) / sizeof(arr[0]); k++)
        for (size_t i = 0; i < arr[k].n; i++)
            if (!isfinite(arr[k].v[i])) {
                errbuf_set(err, errlen, "episode: %s[%zu] is not finite", arr[k].name, i);
                return -EINVAL;
            }
    if (ep->image != NULL && (ep->image_height < 1 || ep->image_width < 1 ||
                              (ep->image_channels != 1 && ep->image_channels != 3))) {
        errbuf_set(err, errlen, "episode: images of %zux%zux%zu", ep->image_height,
                   ep->image_width, ep->image_channels);
        return -EINVAL;
    }
    return 0;
}

/* Writes the arrays (three, or four with images) to an open temporary file and makes them
 * durable. */
static int write_npz(FILE *f, const episode_t *ep, char *err, size_t errlen)
{
    npz_writer_t *w;
    int rc = npz_open(f, &w, err, errlen);
    if (rc < 0)
        return rc;
    size_t obs_shape[2] = {ep->steps + 1, ep->obs_dim};
    size_t act_shape[2] = {ep->steps, ep->act_dim};
    size_t rew_shape[1] = {ep->steps};
    size_t img_shape[4] = {ep->steps + 1, ep->image_height, ep->image_width,
                           ep->image_channels};
    static const float none[1]; /* an image-only episode's [T+1, 0] observation */
    const float *obs = ep->obs_dim > 0 ? ep->observation : none;
    if ((rc = npz_add_f32(w, "observation", obs, obs_shape, 2, err, errlen)) < 0 ||
        (rc = npz_add_f32(w, "action", ep->action, act_shape, 2, err, errlen)) < 0 ||
        (rc = npz_add_f32(w, "reward", ep->reward, rew_shape, 1, err, errlen)) < 0 ||
        (ep->image != NULL &&
         (rc = npz_add_u8(w, "image", ep->image, img_shape, 4, err, errlen)) < 0)) {
        npz_abort(w);
        return rc;
    }
    if ((rc = npz_close(w, err, errlen)) < 0)
        return rc;
    if (fsync(fileno(f)) != 0) {
        rc = -errno;
        errbuf_set(err, errlen, "episode: fsync: %s", strerror(errno));
    }
    return rc;
}

int episode_write(const char *dir, const episode_t *ep, unsigned *seq, char *path,
                  size_t pathlen, char *err, size_t errlen)
{
    int rc = check(ep, err, errlen);
    if (rc < 0)
        return rc;
    char tmp[PATH_MAX], final[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s/.%s-XXXXXX", dir, ep->task) >= (int)sizeof(tmp)) {
        errbuf_set(err, errlen, "episode: directory name too long: %s", dir);
        return -ENAMETOOLONG;
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = -errno;
        errbuf_set(err, errlen, "episode: cannot create a file in %s: %s", dir,
                   strerror(errno));
        return rc;
    }
    /* mkstemp creates 0600; episodes are data for other users (the trainer) too. */
    mode_t mask = umask(0);
    umask(mask);
    (void)fchmod(fd, 0666 & ~mask);
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        rc = -errno;
        close(fd);
        unlink(tmp);
        errbuf_set(err, errlen, "episode: %s: %s", tmp, strerror(-rc));
        return rc;
    }
    rc = write_npz(f, ep, err, errlen);
    if (fclose(f) != 0 && rc == 0) {
        rc = -errno;
        errbuf_set(err, errlen, "episode: %s: %s", tmp, strerror(errno));
    }
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    /* link() refuses to replace an existing name: take the next free sequence number. */
    time_t now = time(NULL);
    struct tm tm;
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", gmtime_r(&now, &tm));
    rc = -EEXIST;
    for (unsigned s = *seq; s < MAX_SEQ && rc == -EEXIST; s++) {
        snprintf(final, sizeof(final), "%s/%s-%s-%03u.npz", dir, ep->task, stamp, s);
        if (link(tmp, final) == 0) {
            rc = 0;
            *seq = s + 1;
        } else {
            rc = -errno;
        }
    }
    if (rc < 0)
        errbuf_set(err, errlen, "episode: cannot name the file in %s: %s", dir, strerror(-rc));
    else if (path != NULL && pathlen > 0)
        snprintf(path, pathlen, "%s", final);
    unlink(tmp);
    return rc;
}
