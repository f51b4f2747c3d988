/* antenna init: lays out a new site (DESIGN.md §2). The site is built in a temporary sibling
 * folder and renamed into place at the end, so a failure half-way leaves nothing behind and an
 * existing site is never touched. */
#include "ant_version.h"
#include "crypto/base/log.h"
#include "crypto/keys.h"
#include "gateway/cli.h"
#include "gateway/config.h"
#include "gateway/tlscert.h"
#include "policy/audit.h"
#include "policy/store.h"

#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HOSTNAMES 32

static void usage(FILE *out)
{
    fprintf(out, "usage: antenna init --dir DIR --site-id ID --region REGION [--hostname NAME]...\n"
                 "                    [--listen ADDR:PORT]\n\n"
                 "Creates a new site in DIR (which must not exist, or be empty): X25519 and\n"
                 "Ed25519 keys, a self-signed TLS certificate, antenna.conf, antenna.db, audit.db\n"
                 "and a first site-admin principal whose API key is printed once.\n"
                 "The site key is encrypted with $ANTENNA_KEY_PASSPHRASE when it is set.\n");
}

/* Refuses a DIR that holds anything: an existing site must never be touched. */
static int check_target(const char *dir)
{
    struct stat st;
    if (lstat(dir, &st) < 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "antenna init: %s exists and is not a folder; refusing to touch it\n", dir);
        return -EEXIST;
    }
    char probe[4096];
    snprintf(probe, sizeof(probe), "%s/antenna.conf", dir);
    if (access(probe, F_OK) == 0) {
        fprintf(stderr, "antenna init: %s already holds a site; refusing to touch it\n", dir);
        return -EEXIST;
    }
    if (rmdir(dir) < 0) {
        /* not empty (ENOTEMPTY/EEXIST), or not ours to remove */
        fprintf(stderr, "antenna init: %s exists and is not empty; refusing to touch it\n", dir);
        return -EEXIST;
    }
    return 0;
}

static int make_dirs(int fd)
{
    static const struct {
        const char *name;
        mode_t mode;
    } dirs[] = {{"keys", 0700}, {"tls", 0700}, {"archive", 0750}, {"scratch", 0750}};
    for (size_t i = 0; i < ANT_ARRAY_LEN(dirs); i++) {
        if (mkdirat(fd, dirs[i].name, dirs[i].mode) < 0 ||
            fchmodat(fd, dirs[i].name, dirs[i].mode, 0) < 0) {
            return -errno;
        }
    }
    return 0;
}

static int write_tls(int fd, const char *site_id, const char *const *hosts, size_t nhosts,
                     char fingerprint[65])
{
    struct ant_buf cert = ANT_BUF_INIT(1024 * 1024), key = ANT_BUF_INIT(64 * 1024);
    int rc = ant_tlscert_make(site_id, hosts, nhosts, 365, &cert, &key);
    rc = rc < 0 ? rc : ant_write_new_file(fd, "tls/key.pem", 0600, key.p, key.len);
    rc = rc < 0 ? rc : ant_write_new_file(fd, "tls/cert.pem", 0644, cert.p, cert.len);
    rc = rc < 0 ? rc : ant_tlscert_fingerprint(ant_buf_view(&cert), fingerprint);
    ant_buf_fini(&cert);
    ant_buf_wipe_fini(&key);
    return rc;
}

static int create_site(int fd, const struct ant_config *cfg, const char *const *hosts,
                       size_t nhosts, struct ant_buf *admin_key, char fingerprint[65],
                       struct ant_site_keys *keys)
{
    struct ant_buf conf = ANT_BUF_INIT(64 * 1024);
    struct ant_store *st = NULL;
    struct ant_audit *audit = NULL;
    int keysfd = -1;
    const char *step = "folders";
    int rc = make_dirs(fd);
    if (rc < 0) {
        goto out;
    }
    step = "site keys";
    keysfd = openat(fd, "keys", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    rc = keysfd < 0 ? -errno : ant_site_keys_generate(keys);
    rc = rc < 0 ? rc : ant_site_keys_save(keys, keysfd, getenv("ANTENNA_KEY_PASSPHRASE"));
    if (rc < 0) {
        goto out;
    }
    step = "TLS certificate";
    rc = write_tls(fd, cfg->site_id, hosts, nhosts, fingerprint);
    if (rc < 0) {
        goto out;
    }
    step = "antenna.conf";
    rc = ant_config_render(cfg, &conf);
    rc = rc < 0 ? rc : ant_write_new_file(fd, "antenna.conf", 0640, conf.p, conf.len);
    if (rc < 0) {
        goto out;
    }
    step = "antenna.db";
    rc = ant_store_open(fd, "antenna.db", ANT_STORE_CREATE, &st);
    rc = rc < 0 ? rc : ant_store_bootstrap_admin(st, "admin", admin_key);
    if (rc < 0) {
        goto out;
    }
    step = "audit.db";
    struct ant_audit_opts ao = {
        .checkpoint_every = cfg->checkpoint_every,
        .checkpoint_seconds = cfg->checkpoint_seconds,
        .max_batch = cfg->audit_max_batch,
    };
    rc = ant_audit_open(fd, "audit.db", ANT_STORE_CREATE, keys->sign, &ao, &audit);
    if (rc < 0) {
        goto out;
    }
    /* the chain starts with the site's creation and its first admin (by key id, never the key) */
    char key_id[ANT_KEY_ID_LEN + 1] = "";
    if (admin_key->len > 3 + ANT_KEY_ID_LEN) {
        memcpy(key_id, admin_key->p + 3, ANT_KEY_ID_LEN);
    }
    const struct ant_audit_event evs[] = {
        {.actor = "antenna-init", .action = "site.init", .resource_kind = "site",
         .resource_id = cfg->site_id, .decision = ANT_AUDIT_INFO, .reason = "init"},
        {.actor = "antenna-init", .action = "admin.principal.create",
         .resource_kind = "principal", .resource_id = "admin", .decision = ANT_AUDIT_INFO,
         .reason = "bootstrap"},
        {.actor = "antenna-init", .action = "admin.key.create", .resource_kind = "key",
         .resource_id = key_id, .decision = ANT_AUDIT_INFO, .reason = "bootstrap"},
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(evs); i++) {
        int64_t seq = ant_audit_append(audit, &evs[i]);
        if (seq < 0) {
            rc = (int)seq;
            goto out;
        }
    }
out:
    if (rc < 0) {
        fprintf(stderr, "antenna init: cannot create %s: %s\n", step, strerror(-rc));
    }
    ant_audit_close(audit);
    ant_store_close(st);
    ant_close(keysfd);
    ant_buf_fini(&conf);
    return rc;
}

int ant_cli_init(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},      {"site-id", required_argument, NULL, 's'},
        {"region", required_argument, NULL, 'r'},   {"hostname", required_argument, NULL, 'H'},
        {"listen", required_argument, NULL, 'l'},   {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *site_id = NULL, *region = NULL, *listen = NULL;
    const char *hosts[MAX_HOSTNAMES];
    size_t nhosts = 0;
    struct ant_config cfg;
    struct ant_diag diag = {{0}};
    int c;
    ant_config_defaults(&cfg);
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 's':
            site_id = optarg;
            break;
        case 'r':
            region = optarg;
            break;
        case 'l':
            listen = optarg;
            break;
        case 'H':
            if (nhosts == MAX_HOSTNAMES || !ant_hostname_is_valid(optarg)) {
                fprintf(stderr, "antenna init: bad or too many --hostname: %s\n", optarg);
                return 2;
            }
            hosts[nhosts++] = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || dir == NULL || site_id == NULL || region == NULL) {
        usage(stderr);
        return 2;
    }
    /* Validate through the same parser that serve will use on the written file. */
    char snippet[512];
    snprintf(snippet, sizeof(snippet), "[site]\nid = %s\nregion = %s\n%s%s\n", site_id, region,
             listen ? "[server]\nlisten = " : "", listen ? listen : "");
    if (strchr(site_id, '\n') || strchr(region, '\n') || (listen && strchr(listen, '\n')) ||
        ant_config_parse(ant_bytes_str(snippet), "arguments", &cfg, &diag) < 0) {
        fprintf(stderr, "antenna init: %s\n",
                ant_diag_msg(&diag, "bad --site-id, --region or --listen"));
        return 2;
    }
    if (check_target(dir) < 0) {
        return 1;
    }

    char *dcopy = strdup(dir), *bcopy = strdup(dir);
    char tmpl[4096];
    struct ant_buf admin_key = ANT_BUF_INIT(512);
    struct ant_site_keys keys = {NULL, NULL};
    char fp[65] = "";
    int fd = -1, parentfd = -1, rc = -ENOMEM;
    if (dcopy == NULL || bcopy == NULL) {
        goto out;
    }
    const char *parent = dirname(dcopy);
    snprintf(tmpl, sizeof(tmpl), "%s/.%s.init-XXXXXX", parent, basename(bcopy));
    if (mkdtemp(tmpl) == NULL) {
        rc = -errno;
        fprintf(stderr, "antenna init: cannot create a folder in %s: %s\n", parent,
                strerror(errno));
        tmpl[0] = '\0';
        goto out;
    }
    fd = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    parentfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || parentfd < 0 || fchmod(fd, 0750) < 0) {
        rc = -errno;
        fprintf(stderr, "antenna init: %s: %s\n", tmpl, strerror(errno));
        goto out;
    }
    rc = create_site(fd, &cfg, hosts, nhosts, &admin_key, fp, &keys);
    if (rc < 0) {
        goto out;
    }
    if (fsync(fd) < 0 || rename(tmpl, dir) < 0) {
        rc = -errno;
        fprintf(stderr, "antenna init: cannot move the new site to %s: %s\n", dir,
                strerror(errno));
        goto out;
    }
    tmpl[0] = '\0';
    rc = ant_fsync_dir(parentfd);
    if (rc < 0 || ant_buf_terminate(&admin_key) < 0) {
        goto out;
    }
    char x[48], e[48];
    ant_key_b64(ant_key_public(keys.kx), x);
    ant_key_b64(ant_signkey_public(keys.sign), e);
    printf("Created site %s (region %s) in %s\n"
           "  X25519 public key   %s\n"
           "  Ed25519 public key  %s\n"
           "  TLS certificate     %s/tls/cert.pem (SHA-256 %s)\n"
           "  configuration       %s/antenna.conf\n\n"
           "Site admin API key (shown once; store it now):\n%s\n",
           cfg.site_id, cfg.region, dir, x, e, dir, fp, dir, (const char *)admin_key.p);
    fflush(stdout);
out:
    if (tmpl[0] != '\0' && rc < 0) {
        /* the temporary folder is ours alone: remove it so a failure leaves nothing */
        if (ant_rmtree_at(AT_FDCWD, tmpl) < 0) {
            fprintf(stderr, "antenna init: could not remove %s\n", tmpl);
        }
    }
    ant_site_keys_fini(&keys);
    ant_buf_wipe_fini(&admin_key);
    ant_close(fd);
    ant_close(parentfd);
    free(dcopy);
    free(bcopy);
    return rc < 0 ? 1 : 0;
}
