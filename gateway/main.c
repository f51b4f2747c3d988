/* antenna: one binary for the daemon, the admin commands, the client and the c4gh tool. */
#include "ant_version.h"
#include "gateway/cli.h"

#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    {"init", ant_cli_init, "create a new site (keys, TLS certificate, config, databases)"},
    {"serve", ant_cli_serve, "run the HTTPS gateway"},
    {"admin", ant_cli_admin, "tenants, principals, API keys, datasets, grants (site offline or not)"},
    {"audit", ant_cli_audit, "verify the audit chain or an export"},
    {"c4gh", ant_cli_c4gh, "Crypt4GH keygen, encrypt, decrypt, reencrypt, inspect"},
    {"dataset", ant_cli_client, "create, list, show, publish, withdraw datasets on a site"},
    {"put", ant_cli_client, "upload local files or folders into a draft dataset"},
    {"get", ant_cli_client, "download a file, a folder or a dataset, encrypted for your key"},
    {"grant", ant_cli_client, "create, list, revoke grants on a dataset"},
    {"explain", ant_cli_client, "why an action on a dataset would be allowed or denied"},
    {"login", ant_cli_client, "check and save a site's URL, CA certificate and your API key"},
    {"logout", ant_cli_client, "forget what `antenna login` saved"},
    {"pubkey", ant_cli_client, "register the Crypt4GH public key your downloads are encrypted for"},
    {"stage", ant_cli_stage, "stage a dataset into scratch; status, cancel of stage jobs"},
    {"pull", ant_cli_stage, "fetch a staged job's files with its job token"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: antenna <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].help);
    }
    fprintf(out, "\n'antenna <command> --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("antenna %s\n", ANT_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "antenna: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
