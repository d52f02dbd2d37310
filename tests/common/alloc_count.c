/*
 * alloc_count.c: the counting allocator behind alloc_count.h. The __wrap_ functions are
 * what -Wl,--wrap=NAME links every call to NAME to; __real_NAME is the C library's.
 */
#include "alloc_count.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);

static atomic_long count;
static atomic_bool counting;
static _Thread_local bool ignored;

static void note(void)
{
    if (atomic_load_explicit(&counting, memory_order_relaxed) && !ignored)
        atomic_fetch_add(&count, 1);
}

void *__wrap_malloc(size_t n)
{
    note();
    return __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
    note();
    return __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
    note();
    return __real_realloc(p, n);
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
    note();
    return __real_aligned_alloc(align, n);
}

void alloc_count_start(void)
{
    atomic_store(&count, 0);
    atomic_store(&counting, true);
}

long alloc_count_stop(void)
{
    atomic_store(&counting, false);
    return atomic_load(&count);
}

void alloc_count_ignore_thread(void)
{
    ignored = true;
}
