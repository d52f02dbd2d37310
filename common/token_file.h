/*
 * token_file.h: reading a secret token from a file (the daemon's auth-token-file and
 * admin-token-file, the clients' --token-file), so tokens stay off command lines.
 *
 * The token is the file's first line with surrounding whitespace removed; it must not be
 * empty. Files that group or others may read are reported (the caller decides whether to
 * warn), never refused: systemd credentials and Kubernetes secrets differ in modes.
 */
#ifndef MPC_TOKEN_FILE_H
#define MPC_TOKEN_FILE_H

#include <stdbool.h>
#include <stddef.h>

/* Longest token read (bytes, without the terminating NUL). */
#define TOKEN_FILE_MAX 1023

/* Reads path's token into out (at least TOKEN_FILE_MAX + 1 bytes). *loose (may be NULL)
 * is set when group or others may read the file. 0, or a negative errno with a message
 * naming path in err. */
int token_file_read(const char *path, char *out, size_t outlen, bool *loose, char *err,
                    size_t errlen);

#endif
