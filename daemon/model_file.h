/*
 * model_file.h: opening the file a model load reads, so that a load can neither be
 * pointed at files outside the model directory nor be wedged by what it opens.
 *
 * Two kinds of path:
 * - an operator's (--model, SIGHUP, --watch): opened as given;
 * - a client's (a Reload request): resolved beneath `model-dir` only. A relative path is
 *   taken from model-dir; an absolute one must name model-dir (as configured or as its
 *   real path) as a prefix and is made relative to it. `..` components are refused
 *   before anything is looked up, so a path outside is refused, not probed. The open
 *   itself uses openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) (or, on kernels without
 *   it, a walk that opens each component with O_NOFOLLOW), so no symlink leads out.
 * Both kinds are opened O_RDONLY | O_NONBLOCK (a FIFO cannot block the open), a client's
 * also O_NOFOLLOW (its last component is never a symlink; an operator's --model may be
 * one, e.g. current.safetensors); the loader then accepts only a regular file under the
 * size cap (rssm_load_fd).
 *
 * Blocking (file system calls): call it off the loop.
 */
#ifndef MPCD_MODEL_FILE_H
#define MPCD_MODEL_FILE_H

#include <stddef.h>

/* Returns an open descriptor, or a negative errno with a message in err that names the
 * request and the reason (never file contents): -EPERM when the path is refused (outside
 * model-dir, `..`, a symlink), -ENOENT and friends from the file system. display receives
 * the path to log and show ("<model-dir>/<relative>" for a client's path). confine_dir
 * NULL: an operator's path. */
int model_file_open(const char *path, const char *confine_dir, char *display, size_t displaylen,
                    char *err, size_t errlen);

#endif
