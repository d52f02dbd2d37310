/*
 * record.c: --record DIR, each session's transitions appended to episode files in the
 * trainer's format (common/EPISODES.md). Not implemented yet: --record is refused at
 * start so nobody believes they are recording.
 */
#include <errno.h>
#include <stdio.h>

#include "server_priv.h"

int record_init(server_t *s, char *err, size_t errlen)
{
    if (!s->cfg->record)
        return 0;
    snprintf(err, errlen, "record: --record is not implemented in this build yet");
    return -ENOSYS;
}

void record_destroy(server_t *s)
{
    (void)s;
}

void record_step(server_t *s, conn_t *c)
{
    (void)s;
    (void)c;
}

void record_session_end(server_t *s, conn_t *c)
{
    (void)s;
    (void)c;
}
