/*
 * errbuf.h: filling a caller's "char *err, size_t errlen" message buffer (common/ helpers).
 */
#ifndef MPC_ERRBUF_H
#define MPC_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* printf into err when the caller gave one (err may be NULL or errlen 0). */
__attribute__((format(printf, 3, 0))) static inline void
errbuf_vset(char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (err != NULL && errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
}

/* The same with the arguments in line: the one way mpcd fills a caller's error buffer.
 * errbuf_vset is for wrappers that add a return code or a state change of their own. */
__attribute__((format(printf, 3, 4))) static inline void errbuf_set(char *err, size_t errlen,
                                                                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errbuf_vset(err, errlen, fmt, ap);
    va_end(ap);
}

#endif
