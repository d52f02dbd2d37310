/*
 * frame_file.c: a frame as a binary PPM file (see frame_file.h).
 */
#include "frame_file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "errbuf.h"

int sim_frame_write_ppm(const char *path, const unsigned char *rgb, int width, int height,
                        char *err, size_t errlen)
{
    if (width < 1 || height < 1 || rgb == NULL) {
        errbuf_set(err, errlen, "%s: no picture (%dx%d)", path, width, height);
        return -EINVAL;
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        int rc = -errno;
        errbuf_set(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return rc;
    }
    size_t n = (size_t)width * (size_t)height * 3;
    int ok = fprintf(f, "P6\n%d %d\n255\n", width, height) > 0 && fwrite(rgb, 1, n, f) == n;
    int e = errno ? errno : EIO;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        e = errno ? errno : EIO;
    }
    if (!ok) {
        errbuf_set(err, errlen, "cannot write %s: %s", path, strerror(e));
        return -e;
    }
    return 0;
}
