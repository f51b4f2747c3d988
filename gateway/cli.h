/* The antenna command's subcommands. Each takes the arguments after its own name (argv[0] is
 * the subcommand) and returns the process exit code: 0 success, 1 failure, 2 usage. */
#ifndef ANT_CLI_H
#define ANT_CLI_H

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

#endif
