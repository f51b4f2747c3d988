/* Subcommands whose components have not landed yet say so plainly. */
#include "gateway/cli.h"

#include <stdio.h>

static int not_built(const char *what)
{
    fprintf(stderr, "antenna %s: not available in this build yet\n", what);
    return 1;
}

int ant_cli_init(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return not_built("init");
}

int ant_cli_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return not_built("serve");
}

int ant_cli_c4gh(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return not_built("c4gh");
}

int ant_cli_admin(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return not_built("admin");
}

int ant_cli_audit(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return not_built("audit");
}
