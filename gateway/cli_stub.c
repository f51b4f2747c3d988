/* Subcommands whose components have not landed yet say so plainly. Each is compiled only while
 * its real source file does not exist (see gateway/meson.build). */
#include "gateway/cli.h"

#include <stdio.h>

__attribute__((unused)) static int not_built(const char *what)
{
    fprintf(stderr, "antenna %s: not available in this build yet\n", what);
    return 1;
}

#ifndef ANT_HAVE_CLI_C4GH
int ant_cli_c4gh(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return not_built("c4gh");
}
#endif

#ifndef ANT_HAVE_CLI_ADMIN
int ant_cli_admin(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return not_built("admin");
}
#endif

#ifndef ANT_HAVE_CLI_AUDIT
int ant_cli_audit(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return not_built("audit");
}
#endif
