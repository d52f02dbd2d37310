/*
 * alloc_count.h: a counting allocator for tests linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc.
 *
 * While alloc_counting is set, every allocation on a thread that has not set
 * alloc_ignore_thread adds one to alloc_count. Include it in exactly one file per test.
 */
#ifndef MPCD_TEST_ALLOC_COUNT_H
#define MPCD_TEST_ALLOC_COUNT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

static atomic_int alloc_count;
static atomic_bool alloc_counting;
static _Thread_local bool alloc_ignore_thread; /* e.g. the client's thread */

void *__real_malloc(size_t);
void *__real_calloc(size_t, size_t);
void *__real_realloc(void *, size_t);
void *__real_aligned_alloc(size_t, size_t);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t a, size_t b);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);

static void alloc_note(void)
{
    if (atomic_load(&alloc_counting) && !alloc_ignore_thread)
        atomic_fetch_add(&alloc_count, 1);
}

void *__wrap_malloc(size_t n)
{
    alloc_note();
    return __real_malloc(n);
}

void *__wrap_calloc(size_t a, size_t b)
{
    alloc_note();
    return __real_calloc(a, b);
}

void *__wrap_realloc(void *p, size_t n)
{
    alloc_note();
    return __real_realloc(p, n);
}

void *__wrap_aligned_alloc(size_t a, size_t n)
{
    alloc_note();
    return __real_aligned_alloc(a, n);
}

/* Counting starts at zero; stop returns what was counted in between. */
static void alloc_count_start(void)
{
    atomic_store(&alloc_count, 0);
    atomic_store(&alloc_counting, true);
}

static int alloc_count_stop(void)
{
    atomic_store(&alloc_counting, false);
    return atomic_load(&alloc_count);
}

#endif
