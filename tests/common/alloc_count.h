/*
 * alloc_count.h: the counting allocator the tests use to prove "no allocation on the
 * control path" (STYLE.md, habit 4).
 *
 * A test gets it by depending on alloc_count_dep (tests/common/meson.build), which links
 * alloc_count.c into the binary with -Wl,--wrap for malloc, calloc, realloc and
 * aligned_alloc: every such call from the test's objects and the static libraries it links
 * (librssm, libplanner, libmpcclient, mpcd's core, ...) goes through a counter first.
 * Calls from shared libraries (libc itself, protobuf-c, OpenBLAS) are not seen.
 */
#ifndef MPCD_TEST_ALLOC_COUNT_H
#define MPCD_TEST_ALLOC_COUNT_H

/* Sets the count to zero and counts every allocation from now on, on every thread that
 * has not called alloc_count_ignore_thread(). */
void alloc_count_start(void);

/* Stops counting and returns the number of allocations since alloc_count_start(). */
long alloc_count_stop(void);

/* The calling thread's allocations never count (e.g. a client or fake-server thread in a
 * test that counts the code under test only). */
void alloc_count_ignore_thread(void);

#endif
