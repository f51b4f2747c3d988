/* antenna c4gh: keygen, encrypt, decrypt, reencrypt, inspect; compatible with the reference
 * crypt4gh tool's files and key files. Streams stdin to stdout by default, a segment at a
 * time. Never prints key material: only public keys, and only in `inspect`. */
#include "crypto/c4gh.h"
#include "crypto/keys.h"
#include "gateway/cli.h"

#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define PASS_MAX 1024
#define IO_CHUNK (256u * 1024u)

static void usage(FILE *out)
{
    fprintf(out,
            "usage: antenna c4gh keygen --sk FILE --pk FILE [--nocrypt] [-C COMMENT]\n"
            "       antenna c4gh encrypt [--sk SENDER.sec] --recipient_pk R.pub [--recipient_pk ...]\n"
            "                            [--range START-END | --range START-] [-i IN] [-o OUT]\n"
            "       antenna c4gh decrypt --sk KEY.sec [--sender_pk P.pub] [-i IN] [-o OUT]\n"
            "       antenna c4gh reencrypt --sk KEY.sec --recipient_pk R.pub [...] [--trim]\n"
            "                              [--header-only] [-i IN] [-o OUT]\n"
            "       antenna c4gh inspect --sk KEY.sec [-i IN]\n\n"
            "GA4GH Crypt4GH v1, interoperable with the reference crypt4gh tool. Input is stdin\n"
            "and output stdout unless -i / -o are given. An encrypted secret key's passphrase\n"
            "comes from $C4GH_PASSPHRASE, else from a prompt on the terminal.\n"
            "--range START-END keeps bytes START..END-1 (END excluded) through an edit list;\n"
            "START- keeps everything from START. decrypt -o publishes the output file only\n"
            "after every segment verified; to stdout it stops at the first bad segment.\n");
}

/* Reads a line from /dev/tty with echo off. Returns 0, -ENOTTY without a terminal. */
static int prompt_tty(const char *prompt, char *buf, size_t cap)
{
    struct termios old, quiet;
    size_t n = 0;
    int rc = 0;
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        return -ENOTTY;
    }
    bool restore = tcgetattr(fd, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        (void)tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    rc = ant_write_all(fd, prompt, strlen(prompt));
    while (rc == 0) {
        char c;
        ssize_t got = read(fd, &c, 1);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0 || c == '\n' || c == '\r') {
            break;
        }
        if (n + 1 >= cap) {
            rc = -E2BIG;
            break;
        }
        buf[n++] = c;
    }
    buf[n] = '\0';
    if (restore) {
        (void)tcsetattr(fd, TCSAFLUSH, &old);
    }
    (void)!ant_write_all(fd, "\n", 1);
    ant_close(fd);
    return rc;
}

/* The passphrase: $C4GH_PASSPHRASE, else a prompt (twice when `confirm`). */
static int get_passphrase(const char *what, bool confirm, char *buf, size_t cap)
{
    const char *env = getenv("C4GH_PASSPHRASE");
    char prompt[512], again[PASS_MAX];
    int rc = 0;
    if (env != NULL) {
        if (strlen(env) >= cap) {
            return -E2BIG;
        }
        snprintf(buf, cap, "%s", env);
        return 0;
    }
    snprintf(prompt, sizeof(prompt), "Passphrase for %s: ", what);
    rc = prompt_tty(prompt, buf, cap);
    if (rc == 0 && confirm) {
        rc = prompt_tty("Passphrase (again): ", again, sizeof(again));
        if (rc == 0 && strcmp(again, buf) != 0) {
            fprintf(stderr, "antenna c4gh: the passphrases differ\n");
            rc = -EINVAL;
        }
        explicit_bzero(again, sizeof(again));
    }
    if (rc == -ENOTTY) {
        fprintf(stderr, "antenna c4gh: %s is encrypted and there is no terminal to ask for its "
                        "passphrase: set C4GH_PASSPHRASE\n", what);
    }
    return rc;
}

/* Loads a secret key; asks for the passphrase only if the file is encrypted. */
static int load_secret(const char *path, struct ant_key **out)
{
    struct ant_diag d = {{0}};
    char pass[PASS_MAX];
    int rc = ant_key_load(AT_FDCWD, path, NULL, out, &d);
    if (rc == -ENOKEY) {
        rc = get_passphrase(path, false, pass, sizeof(pass));
        if (rc == 0) {
            rc = ant_key_load(AT_FDCWD, path, pass, out, &d);
        }
        explicit_bzero(pass, sizeof(pass));
        if (rc == -ENOTTY) {
            return rc; /* already said */
        }
    }
    if (rc == -EKEYREJECTED) {
        fprintf(stderr, "antenna c4gh: wrong passphrase for %s\n", path);
    } else if (rc < 0) {
        fprintf(stderr, "antenna c4gh: %s\n", ant_diag_msg(&d, strerror(-rc)));
    }
    return rc;
}

/* --- output: stdout, or a temporary file in the target's folder renamed at the end --- */

struct output {
    int fd;
    const char *path; /* NULL: stdout */
    bool direct;      /* a device or pipe, written in place */
    char tmp[4096];
};

static int output_open(struct output *o, const char *path)
{
    o->path = path;
    o->direct = false;
    o->tmp[0] = '\0';
    if (path == NULL || strcmp(path, "-") == 0) {
        o->path = NULL;
        o->fd = STDOUT_FILENO;
        return 0;
    }
    /* A device or a pipe (-o /dev/null, -o /dev/stdout) is written in place: a temporary
     * name beside it would be created in /dev and renamed over the device. */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        o->fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (o->fd < 0) {
            int rc = -errno;
            fprintf(stderr, "antenna c4gh: cannot open %s: %s\n", path, strerror(-rc));
            return rc;
        }
        o->direct = true;
        return 0;
    }
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", path);
    const char *base = basename(copy);
    char dcopy[4096];
    snprintf(dcopy, sizeof(dcopy), "%s", path);
    const char *dir = dirname(dcopy);
    int n = snprintf(o->tmp, sizeof(o->tmp), "%s/.%s.XXXXXX", dir, base);
    if (n < 0 || (size_t)n >= sizeof(o->tmp)) {
        return -ENAMETOOLONG;
    }
    o->fd = mkostemp(o->tmp, O_CLOEXEC);
    if (o->fd < 0) {
        int rc = -errno;
        o->tmp[0] = '\0';
        fprintf(stderr, "antenna c4gh: cannot create a file next to %s: %s\n", path, strerror(-rc));
        return rc;
    }
    return 0;
}

/* Publishes (ok) or removes (!ok) the temporary file. */
static int output_close(struct output *o, bool ok)
{
    int rc = 0;
    if (o->path == NULL) {
        return 0;
    }
    if (o->direct) {
        ant_close(o->fd);
        o->fd = -1;
        return 0;
    }
    /* mkostemp made it 0600, which it keeps: decrypted data stays private to its owner */
    if (ok) {
        rc = ant_rename_durable(o->fd, AT_FDCWD, o->tmp, o->path);
    }
    ant_close(o->fd);
    o->fd = -1;
    if (!ok || rc < 0) {
        (void)unlink(o->tmp);
    }
    if (rc < 0) {
        fprintf(stderr, "antenna c4gh: cannot write %s: %s\n", o->path, strerror(-rc));
    }
    return rc;
}

static int fd_sink(void *arg, const uint8_t *p, size_t len)
{
    return ant_write_all(*(int *)arg, p, len);
}

static int open_input(const char *path)
{
    if (path == NULL || strcmp(path, "-") == 0) {
        return STDIN_FILENO;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "antenna c4gh: cannot open %s: %s\n", path, strerror(errno));
    }
    return fd;
}

static void close_input(int fd)
{
    if (fd != STDIN_FILENO) {
        ant_close(fd);
    }
}

/* --- options --- */

struct opts {
    const char *sk, *pk, *comment, *in, *out, *sender_pk, *range;
    const char *recipients[ANT_C4GH_MAX_RECIPIENTS];
    size_t nrecipients;
    bool nocrypt, trim, header_only;
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option long_opts[] = {
        {"sk", required_argument, NULL, 's'},
        {"pk", required_argument, NULL, 'p'},
        {"nocrypt", no_argument, NULL, 'n'},
        {"recipient_pk", required_argument, NULL, 'r'},
        {"recipient-pk", required_argument, NULL, 'r'},
        {"sender_pk", required_argument, NULL, 'S'},
        {"sender-pk", required_argument, NULL, 'S'},
        {"range", required_argument, NULL, 'R'},
        {"trim", no_argument, NULL, 't'},
        {"header-only", no_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    memset(o, 0, sizeof(*o));
    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "C:i:o:h", long_opts, NULL)) != -1) {
        switch (c) {
        case 's':
            o->sk = optarg;
            break;
        case 'p':
            o->pk = optarg;
            break;
        case 'n':
            o->nocrypt = true;
            break;
        case 'C':
            o->comment = optarg;
            break;
        case 'r':
            if (o->nrecipients == ANT_C4GH_MAX_RECIPIENTS) {
                fprintf(stderr, "antenna c4gh: at most %d recipients\n", ANT_C4GH_MAX_RECIPIENTS);
                return -1;
            }
            o->recipients[o->nrecipients++] = optarg;
            break;
        case 'S':
            o->sender_pk = optarg;
            break;
        case 'R':
            o->range = optarg;
            break;
        case 't':
            o->trim = true;
            break;
        case 'H':
            o->header_only = true;
            break;
        case 'i':
            o->in = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'h':
            return 1;
        default:
            return -1;
        }
    }
    return optind == argc ? 0 : -1;
}

/* The recipients' public keys, back to back. */
static int load_recipients(const struct opts *o, uint8_t *keys)
{
    for (size_t i = 0; i < o->nrecipients; i++) {
        struct ant_diag d = {{0}};
        int rc = ant_pubkey_load(AT_FDCWD, o->recipients[i], keys + i * ANT_KEY_LEN, &d);
        if (rc < 0) {
            fprintf(stderr, "antenna c4gh: %s\n", ant_diag_msg(&d, strerror(-rc)));
            return rc;
        }
    }
    return 0;
}

/* "S-E" keeps [S, E): edit list [S, E-S]; "S-" keeps [S, end): [S]. */
static int parse_range(const char *s, uint64_t edits[2], size_t *n)
{
    const char *dash = strchr(s, '-');
    uint64_t start, end;
    if (dash == NULL ||
        ant_parse_u64(ant_bytes_of(s, (size_t)(dash - s)), 0, UINT64_MAX, &start) < 0) {
        return -EINVAL;
    }
    if (dash[1] == '\0') {
        edits[0] = start;
        *n = 1;
        return 0;
    }
    if (ant_parse_u64(ant_bytes_str(dash + 1), 0, UINT64_MAX, &end) < 0 || end <= start) {
        return -EINVAL;
    }
    edits[0] = start;
    edits[1] = end - start;
    *n = 2;
    return 0;
}

/* --- commands --- */

static int cmd_keygen(const struct opts *o)
{
    char pass[PASS_MAX] = "";
    struct ant_diag d = {{0}};
    int rc = 0;
    if (o->sk == NULL || o->pk == NULL || o->nrecipients || o->in || o->out) {
        usage(stderr);
        return 2;
    }
    if (!o->nocrypt) {
        rc = get_passphrase(o->sk, true, pass, sizeof(pass));
        if (rc < 0) {
            return 1;
        }
    }
    rc = ant_c4gh_keygen_files(AT_FDCWD, o->sk, o->pk, pass[0] ? pass : NULL, o->comment, &d);
    explicit_bzero(pass, sizeof(pass));
    if (rc < 0) {
        fprintf(stderr, "antenna c4gh keygen: %s\n", ant_diag_msg(&d, strerror(-rc)));
        return 1;
    }
    return 0;
}

static int cmd_encrypt(const struct opts *o)
{
    struct ant_key *sender = NULL;
    struct ant_c4gh_writer *w = NULL;
    struct output out = {.fd = -1};
    uint8_t rec[ANT_C4GH_MAX_RECIPIENTS * ANT_KEY_LEN];
    uint64_t edits[2];
    size_t nedits = 0;
    uint8_t *buf = NULL;
    int in = -1, rc = 0, status = 1;
    bool out_open = false;
    if (o->nrecipients == 0 || o->pk || o->sender_pk || o->trim || o->header_only ||
        (o->range && parse_range(o->range, edits, &nedits) < 0)) {
        usage(stderr);
        return 2;
    }
    /* Without --sk the reference uses a one-off sender key; so do we. */
    rc = o->sk ? load_secret(o->sk, &sender) : ant_key_generate(&sender);
    if (rc == 0) {
        rc = load_recipients(o, rec);
    }
    if (rc < 0) {
        goto out;
    }
    in = open_input(o->in);
    buf = malloc(IO_CHUNK);
    if (in < 0 || buf == NULL || output_open(&out, o->out) < 0) {
        goto out;
    }
    out_open = true;
    rc = ant_c4gh_writer_new(sender, rec, o->nrecipients, edits, nedits, fd_sink, &out.fd, &w);
    if (rc == 0) {
        ant_c4gh_writer_skip_digests(w); /* nothing here would check them */
    }
    while (rc == 0) {
        ssize_t got = read(in, buf, IO_CHUNK);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            rc = got < 0 ? -errno : ant_c4gh_writer_finish(w, NULL);
            break;
        }
        rc = ant_c4gh_writer_write(w, ant_bytes_of(buf, (size_t)got));
    }
    if (rc < 0) {
        fprintf(stderr, "antenna c4gh encrypt: %s\n", strerror(-rc));
        goto out;
    }
    status = 0;
out:
    if (out_open && output_close(&out, status == 0) < 0) {
        status = 1;
    }
    ant_c4gh_writer_free(w);
    ant_key_free(sender);
    close_input(in);
    free(buf);
    return status;
}

static int cmd_decrypt(const struct opts *o)
{
    struct ant_key *key = NULL;
    struct ant_c4gh_reader *r = NULL;
    struct output out = {.fd = -1};
    uint8_t spk[ANT_KEY_LEN];
    uint8_t *buf = NULL;
    int in = -1, rc = 0, status = 1;
    bool out_open = false;
    if (o->sk == NULL || o->nrecipients || o->pk || o->range || o->trim || o->header_only) {
        usage(stderr);
        return 2;
    }
    if (o->sender_pk != NULL) {
        struct ant_diag d = {{0}};
        rc = ant_pubkey_load(AT_FDCWD, o->sender_pk, spk, &d);
        if (rc < 0) {
            fprintf(stderr, "antenna c4gh: %s\n", ant_diag_msg(&d, strerror(-rc)));
            goto out;
        }
    }
    if (load_secret(o->sk, &key) < 0) {
        goto out;
    }
    in = open_input(o->in);
    buf = malloc(IO_CHUNK);
    if (in < 0 || buf == NULL || output_open(&out, o->out) < 0) {
        goto out;
    }
    out_open = true;
    rc = ant_c4gh_reader_new(key, o->sender_pk ? spk : NULL, fd_sink, &out.fd, &r);
    if (rc == 0) {
        ant_c4gh_reader_skip_digests(r); /* nothing here would check them */
    }
    while (rc == 0) {
        ssize_t got = read(in, buf, IO_CHUNK);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            rc = got < 0 ? -errno : ant_c4gh_reader_finish(r, NULL);
            break;
        }
        rc = ant_c4gh_reader_write(r, ant_bytes_of(buf, (size_t)got));
    }
    if (rc == -ENOKEY && o->sender_pk != NULL) {
        fprintf(stderr, "antenna c4gh decrypt: this file was not encrypted for the key in %s by "
                        "the sender in %s\n", o->sk, o->sender_pk);
    } else if (rc == -ENOKEY) {
        fprintf(stderr, "antenna c4gh decrypt: this file was not encrypted for the key in %s\n",
                o->sk);
    } else if (rc < 0 && r != NULL && (rc == -EBADMSG || rc == -E2BIG || rc == -ENOTSUP)) {
        fprintf(stderr, "antenna c4gh decrypt: %s%s\n", ant_c4gh_reader_diag(r),
                o->out ? "; no output file was written" : "");
    } else if (rc < 0) {
        fprintf(stderr, "antenna c4gh decrypt: %s\n", strerror(-rc));
    }
    if (rc == 0) {
        status = 0;
    }
out:
    /* -o: the plaintext becomes visible only now, after every segment verified */
    if (out_open && output_close(&out, status == 0) < 0) {
        status = 1;
    }
    ant_c4gh_reader_free(r);
    ant_key_free(key);
    close_input(in);
    free(buf);
    return status;
}

static int cmd_reencrypt(const struct opts *o)
{
    struct ant_key *key = NULL;
    struct output out = {.fd = -1};
    struct ant_diag d = {{0}};
    uint8_t rec[ANT_C4GH_MAX_RECIPIENTS * ANT_KEY_LEN];
    int in = -1, rc, status = 1;
    bool out_open = false;
    if (o->sk == NULL || o->nrecipients == 0 || o->pk || o->range || o->sender_pk) {
        usage(stderr);
        return 2;
    }
    if (load_secret(o->sk, &key) < 0 || load_recipients(o, rec) < 0) {
        goto out;
    }
    in = open_input(o->in);
    if (in < 0 || output_open(&out, o->out) < 0) {
        goto out;
    }
    out_open = true;
    rc = ant_c4gh_reencrypt_fd(in, out.fd, key, rec, o->nrecipients,
                               (o->trim ? ANT_C4GH_REENC_TRIM : 0u) |
                                   (o->header_only ? ANT_C4GH_REENC_HEADER_ONLY : 0u),
                               &d);
    if (rc == -ENOKEY) {
        fprintf(stderr, "antenna c4gh reencrypt: this file was not encrypted for the key in %s\n",
                o->sk);
    } else if (rc < 0) {
        fprintf(stderr, "antenna c4gh reencrypt: %s\n", ant_diag_msg(&d, strerror(-rc)));
    } else {
        status = 0;
    }
out:
    if (out_open && output_close(&out, status == 0) < 0) {
        status = 1;
    }
    ant_key_free(key);
    close_input(in);
    return status;
}

static const char *type_name(uint32_t type)
{
    return type == 0 ? "data key" : type == 1 ? "edit list" : "unknown";
}

static int cmd_inspect(const struct opts *o)
{
    struct ant_key *key = NULL;
    struct ant_c4gh_header *h = NULL;
    struct ant_buf hdr = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
    struct ant_diag d = {{0}};
    int in = -1, rc, status = 1;
    if (o->sk == NULL || o->nrecipients || o->pk || o->range || o->out || o->trim ||
        o->header_only || o->sender_pk) {
        usage(stderr);
        return 2;
    }
    if (load_secret(o->sk, &key) < 0) {
        goto out;
    }
    in = open_input(o->in);
    if (in < 0) {
        goto out;
    }
    /* The header only: the body is never read. */
    rc = ant_c4gh_header_read_fd(in, &hdr, &d);
    if (rc == 0) {
        rc = ant_c4gh_header_parse(ant_buf_view(&hdr), key, NULL, ANT_C4GH_PARSE_ALLOW_NOKEY, &h,
                                   &d);
    }
    if (rc < 0) {
        fprintf(stderr, "antenna c4gh inspect: %s\n", ant_diag_msg(&d, strerror(-rc)));
        goto out;
    }
    size_t np = ant_c4gh_header_packet_count(h);
    printf("header: %zu bytes, %zu packet%s; body starts at byte %zu\n", ant_c4gh_header_len(h),
           np, np == 1 ? "" : "s", ant_c4gh_header_len(h));
    for (size_t i = 0; i < np; i++) {
        struct ant_c4gh_packet_info pi;
        char wpk[2 * ANT_KEY_LEN + 1];
        if (ant_c4gh_header_packet(h, i, &pi) < 0) {
            goto out;
        }
        ant_hex_encode(pi.writer_pk, ANT_KEY_LEN, wpk);
        printf("packet %zu: offset %zu, length %zu, method %u%s, writer key %s, ", i, pi.offset,
               pi.len, pi.method, pi.method == 0 ? " (X25519_chacha20_ietf_poly1305)" : " (unknown)",
               wpk);
        if (!pi.readable) {
            printf("not readable with this key\n");
            continue;
        }
        printf("readable with this key, type %u (%s)", pi.type, type_name(pi.type));
        if (pi.type == 0) {
            printf(", data method %u (chacha20_ietf_poly1305)", pi.data_method);
        } else if (pi.type == 1) {
            const uint64_t *lens;
            size_t n;
            (void)ant_c4gh_header_edits(h, &lens, &n);
            printf(", edit list of %zu length%s:", n, n == 1 ? "" : "s");
            for (size_t j = 0; j < n; j++) {
                printf(" %llu", (unsigned long long)lens[j]);
            }
        }
        printf("\n");
    }
    if (ant_c4gh_header_key_count(h) == 0) {
        printf("this file was not encrypted for the key in %s\n", o->sk);
    } else {
        printf("data keys readable with %s: %zu\n", o->sk, ant_c4gh_header_key_count(h));
    }
    status = fflush(stdout) == 0 ? 0 : 1;
out:
    ant_c4gh_header_free(h);
    ant_buf_fini(&hdr);
    ant_key_free(key);
    close_input(in);
    return status;
}

int ant_cli_c4gh(int argc, char **argv)
{
    struct opts o;
    static const struct {
        const char *name;
        int (*run)(const struct opts *o);
    } verbs[] = {
        {"keygen", cmd_keygen},   {"encrypt", cmd_encrypt}, {"decrypt", cmd_decrypt},
        {"reencrypt", cmd_reencrypt}, {"inspect", cmd_inspect},
    };
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < ANT_ARRAY_LEN(verbs); i++) {
        if (strcmp(argv[1], verbs[i].name) != 0) {
            continue;
        }
        int p = parse_opts(argc - 1, argv + 1, &o);
        if (p == 1) {
            usage(stdout);
            return 0;
        }
        if (p < 0) {
            usage(stderr);
            return 2;
        }
        return verbs[i].run(&o);
    }
    fprintf(stderr, "antenna c4gh: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
