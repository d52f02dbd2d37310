/*
 * token_file.c: a secret token from the first line of a file (see token_file.h).
 */
#include "token_file.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "errbuf.h"

int token_file_read(const char *path, char *out, size_t outlen, bool *loose, char *err,
                    size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        errbuf_set(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (loose)
        *loose = !fstat(fileno(f), &st) && (st.st_mode & 0077);
    char line[TOKEN_FILE_MAX + 2];
    bool got = fgets(line, sizeof line, f) != NULL;
    /* A first line longer than the buffer: what is left of it may only be whitespace. */
    bool overlong = false;
    if (got && !strchr(line, '\n')) {
        for (int c; (c = getc(f)) != EOF && c != '\n';)
            overlong |= !isspace(c);
    }
    fclose(f);
    char *b = line, *e = got ? line + strlen(line) : line;
    while (b < e && isspace((unsigned char)*b))
        b++;
    while (e > b && isspace((unsigned char)e[-1]))
        e--;
    size_t n = (size_t)(e - b);
    int rc = 0;
    if (!n) {
        errbuf_set(err, errlen, "%s: no token on its first line", path);
        rc = -EINVAL;
    } else if (overlong || n > TOKEN_FILE_MAX || n >= outlen) {
        errbuf_set(err, errlen, "%s: token longer than %d bytes", path, TOKEN_FILE_MAX);
        rc = -E2BIG;
    } else {
        memcpy(out, b, n);
        out[n] = 0;
    }
    explicit_bzero(line, sizeof line);
    return rc;
}
