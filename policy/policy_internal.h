/* Shared between the files of policy/: the connection struct, statement cache, error mapping. */
#ifndef ANT_POLICY_INTERNAL_H
#define ANT_POLICY_INTERNAL_H

#include <sqlite3.h>

#include "policy/store.h"

#define STORE_STMT_MAX 128

struct ant_store {
    sqlite3 *db;
    unsigned nstmt;
    struct {
        const char *sql; /* a string literal: cached by address */
        sqlite3_stmt *stmt;
    } stmts[STORE_STMT_MAX];
};

/* Maps a SQLite result code (extended) to a negative errno. */
int ant_sqlite_err(int rc);
/* Opens `name` under dirfd: creates it (0600, must not exist) when `create`. */
ANT_MUST_CHECK int ant_sqlite_open_at(int dirfd, const char *name, bool create, bool readonly,
                                      sqlite3 **out);
/* The cached, reset statement for `sql` (a string literal), or NULL (out of memory or bad SQL,
 * logged). */
sqlite3_stmt *ant_store_stmt(struct ant_store *st, const char *sql);
/* Binds a C string, NULL as SQL NULL. */
int ant_bind_text(sqlite3_stmt *s, int i, const char *v);
/* Copies column i (text) into dst of size n; NULL gives "". -E2BIG if it does not fit. */
int ant_col_copy(sqlite3_stmt *s, int i, char *dst, size_t n);
/* Steps a statement that returns no rows; reset afterwards. */
ANT_MUST_CHECK int ant_store_exec_stmt(sqlite3_stmt *s);
/* Random "<prefix><16 hex>". */
void ant_random_id(const char *prefix, char *out, size_t n);

#endif
