/* antenna serve: runs the HTTPS gateway until SIGTERM or SIGINT. */
#include "ant_version.h"
#include "crypto/base/log.h"
#include "gateway/cli.h"
#include "gateway/config.h"
#include "gateway/routes_stage.h"
#include "gateway/server.h"
#include "gateway/site.h"

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The archive sweep (ant_archive_sweep): at start and then hourly, temporaries unwritten for a
 * minute and unlocked. */
#define ARCHIVE_SWEEP_MIN_AGE_S 60
#define ARCHIVE_SWEEP_EVERY_S 3600LL

static void usage(FILE *out)
{
    fprintf(out, "usage: antenna serve [--dir DIR] [--config FILE] [--listen ADDR:PORT]\n\n"
                 "Runs the site's HTTPS gateway in the foreground. DIR defaults to ./var, FILE to\n"
                 "DIR/antenna.conf; --listen overrides [server] listen (port 0: any free port;\n"
                 "the bound address is printed on standard output). SIGTERM or SIGINT stop it\n"
                 "gracefully.\n");
}

int ant_cli_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = "var", *config = NULL, *listen = NULL;
    struct ant_diag diag = {{0}};
    struct ant_site *site = NULL;
    struct ant_server *srv = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'l':
            listen = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    char addr[64];
    uint16_t port = 0;
    if (optind != argc || (listen != NULL && ant_listen_parse(ant_bytes_str(listen), addr,
                                                              &port) < 0)) {
        if (listen != NULL) {
            fprintf(stderr, "antenna serve: bad --listen '%s': expected ADDRESS:PORT\n", listen);
        }
        usage(stderr);
        return 2;
    }

    /* Block the stop signals in every thread (libmicrohttpd's inherit this mask); this thread
     * takes them with sigtimedwait. SIGPIPE from a vanished client must not kill the daemon. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = ant_site_open(dir, config, &site, &diag);
    if (rc < 0) {
        fprintf(stderr, "antenna serve: %s\n", ant_diag_msg(&diag, strerror(-rc)));
        return rc == -EINVAL || rc == -E2BIG ? 2 : 1;
    }
    if (listen != NULL) {
        memcpy(site->cfg.listen_addr, addr, sizeof(addr));
        site->cfg.listen_port = port;
    }
    /* the stage runner first: the stage routes need it from the first request on */
    rc = ant_gw_stage_start(site, &diag);
    rc = rc < 0 ? rc : ant_server_start(site, &srv, &diag);
    if (rc < 0) {
        fprintf(stderr, "antenna serve: %s\n", ant_diag_msg(&diag, strerror(-rc)));
        ant_gw_stage_stop(site);
        ant_site_close(site);
        return 1;
    }
    bool v6 = strchr(site->cfg.listen_addr, ':') != NULL;
    char shown[80];
    snprintf(shown, sizeof(shown), "%s%s%s", v6 ? "[" : "", site->cfg.listen_addr, v6 ? "]" : "");
    ant_log(ANT_LOG_INFO, "server.started", "antenna %s site %s serving https://%s:%u",
            ANT_VERSION, site->cfg.site_id, shown, ant_server_port(srv));
    printf("antenna: serving https://%s:%u\n", shown, ant_server_port(srv));
    fflush(stdout);

    /* What a crash left in the archive (upload and fetch temporaries) goes now and every hour
     * after, on this thread, which otherwise only waits for signals. */
    int64_t next_sweep = 0;
    for (;;) {
        if (ant_mono_ns() >= next_sweep) {
            size_t swept = ant_archive_sweep(site->archive_fd, ARCHIVE_SWEEP_MIN_AGE_S);
            if (swept > 0) {
                ant_log(ANT_LOG_INFO, "archive.swept",
                        "removed %zu temporary file(s) that interrupted uploads or fetches left in"
                        " the archive",
                        swept);
            }
            next_sweep = ant_mono_ns() + ARCHIVE_SWEEP_EVERY_S * 1000000000LL;
        }
        struct timespec tick = {1, 0};
        siginfo_t si;
        int sig = sigtimedwait(&stop, &si, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            ant_log(ANT_LOG_INFO, "server.stopping", "signal %d: finishing requests in flight",
                    sig);
            break;
        }
        if (sig == SIGHUP) {
            ant_log(ANT_LOG_INFO, "server.sighup", "SIGHUP ignored: restart to reload");
        }
    }
    ant_server_stop(srv, site->cfg.shutdown_grace_s);
    ant_gw_stage_stop(site); /* running jobs go back to queued and resume at the next start */
    ant_site_close(site);
    ant_log(ANT_LOG_INFO, "server.stopped", "bye");
    return 0;
}
