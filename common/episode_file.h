/*
 * episode_file.h: writing one episode file for the trainer (common/EPISODES.md).
 *
 * An episode is o_0..o_T, a_0..a_{T-1}, r_0..r_{T-1} as float32 arrays "observation"
 * [T+1, O], "action" [T, A] and "reward" [T] in an uncompressed .npz, and optionally the
 * camera images of o_0..o_T as a uint8 array "image" [T+1, H, W, C] (top row first); a
 * camera robot's episode may have only images (O = 0: observation [T+1, 0]). Files
 * are named DIR/<task>-<YYYYmmddTHHMMSS>-<seq>.npz (UTC), are written to a hidden temporary
 * file first and then linked into place, so a reader never sees a partial file and an existing
 * file is never overwritten (the next free seq is taken instead). Used by mpc-sim --record
 * and mpcd --record.
 */
#ifndef MPC_EPISODE_FILE_H
#define MPC_EPISODE_FILE_H

#include <stddef.h>

typedef struct {
    const char *task;         /* [A-Za-z0-9_-]+, the file name's prefix */
    size_t steps;             /* T >= 1 */
    size_t obs_dim, act_dim;  /* O >= 1 (0 when there are images), A >= 1 */
    const float *observation; /* (T+1) x O, row-major */
    const float *action;      /* T x A */
    const float *reward;      /* T */
    /* Optional pixel observations: NULL, or (T+1) x H x W x C bytes, top row first. */
    const unsigned char *image;
    size_t image_height, image_width; /* H, W >= 1 when image is set */
    size_t image_channels;            /* C: 1 (grey) or 3 (RGB) when image is set */
} episode_t;

/* Writes ep into dir (which must exist). *seq is the first sequence number tried and, on
 * success, one past the number used (pass it back for the next episode). The file's path
 * goes to path (may be NULL). Non-finite values are refused (the trainer would refuse
 * the file). Returns 0 or a negative errno with a message in err. */
int episode_write(const char *dir, const episode_t *ep, unsigned *seq, char *path,
                  size_t pathlen, char *err, size_t errlen);

#endif
