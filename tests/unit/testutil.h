/* Helpers shared by the unit tests. */
#ifndef ANT_TESTUTIL_H
#define ANT_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "crypto/base/base.h"

/* An exact-size heap copy (len 0 gives a 1-byte allocation), so ASan sees over-reads. */
uint8_t *test_memdup(const void *p, size_t len);
/* Reads a whole file; aborts the test on failure. Caller free()s. */
uint8_t *test_read_file(const char *path, size_t *len);
/* The path of a file in tests/vectors/c4gh (ANT_VECTORS) (static buffer, valid until next call). */
const char *test_vector_path(const char *name);
/* A fresh temporary directory (mkdtemp); caller removes it with test_rmtree. */
char *test_tmpdir(void);
void test_rmtree(const char *path);

#endif
