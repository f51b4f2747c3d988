/* The antenna command's subcommands. Each takes the arguments after its own name (argv[0] is
 * the subcommand) and returns the process exit code: 0 success, 1 failure, 2 usage. */
#ifndef ANT_CLI_H
#define ANT_CLI_H

#include <jansson.h>
#include <stdbool.h>

struct ant_key;
struct ant_store;

int ant_cli_init(int argc, char **argv);
int ant_cli_serve(int argc, char **argv);
int ant_cli_c4gh(int argc, char **argv);
int ant_cli_admin(int argc, char **argv);
int ant_cli_audit(int argc, char **argv);
/* admin peer add|list|remove|token|pull, dispatched from ant_cli_admin (argv[0] is "peer") */
int ant_cli_peer(int argc, char **argv);
/* dataset, put, get, grant, pubkey, login, logout, explain: the client commands (argv[0]
 * names which). */
int ant_cli_client(int argc, char **argv);
/* stage, pull: stage jobs and pulling their files with the job token (argv[0] names which). */
int ant_cli_stage(int argc, char **argv);

/* admin archive check (cli_check.c): the archive folder `archive_dir` (relative to dirfd)
 * against the catalog, for every dataset or only `dataset` (-ENOENT if there is none), read
 * only; kx opens the stored headers; `deep` also decrypts every file and compares its sums.
 * *report: {datasets, files, bytes, deep, problems: [{problem, dataset, path, file_id,
 * detail}]}. Errors are the check's own (-ENOMEM, the archive folder or catalog unreadable);
 * what is wrong with the archive goes into problems. */
int ant_archive_check(int dirfd, const char *archive_dir, struct ant_store *st,
                      const struct ant_key *kx, const char *dataset, bool deep, json_t **report);

#endif
