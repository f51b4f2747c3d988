/* The client half of the antenna binary: HTTPS requests to a site's API through libcurl.
 *
 * Where and who: the site URL, the CA file that anchors its certificate (a site's self-signed
 * certificate, or the pinned anchor of a peer) and an API key. Each is taken from the first of:
 *   1. the command line: --url, --cacert, --key-file (a key itself never: `ps` would show it);
 *   2. the environment: ANTENNA_URL, ANTENNA_CACERT, ANTENNA_API_KEY (ANTENNA_TOKEN is the same
 *      thing under the name the issue tracker uses), else ANTENNA_API_KEY_FILE;
 *   3. the saved login (`antenna login`): $XDG_CONFIG_HOME/antenna/ or ~/.config/antenna/, a
 *      folder of mode 0700 holding `url`, `ca.pem` (a copy of the CA file) and `api_key`, each
 *      mode 0600. Like ssh with a private key, a saved `api_key` that is not ours or that group
 *      or others may read is refused (-EACCES), not used. Its `ca.pem` and `api_key` apply only
 *      to its own URL: when no URL is given (1, 2), or the URL given is the saved one (trailing
 *      slashes aside); for any other site neither is used, so its CA is not trusted for, nor
 *      its key sent to, a site the login is not for;
 *   4. the defaults: https://127.0.0.1:8443, the system CA store, no key.
 * Certificate verification is never turned off. */
#ifndef ANT_CLIENT_H
#define ANT_CLIENT_H

#include "crypto/base/base.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct ant_client_conf {
    const char *url;      /* https://host:port; NULL: environment, saved login, default */
    const char *cacert;   /* NULL: $ANTENNA_CACERT, saved login, else the system store */
    const char *key_file; /* NULL: $ANTENNA_API_KEY/_TOKEN/_API_KEY_FILE, else saved login */
    const char *bearer;   /* a token to use instead of an API key (job tokens) */
    bool progress;        /* draw a progress bar on stderr for uploads and downloads */
    bool ignore_login;    /* the saved login is not read (`antenna login` checks what it saves) */
};

struct ant_client;

/* Resolves the connection as above. -EINVAL (a URL that is not https://, a key file without a
 * key), -EACCES (a saved key others may read), -errno of reading a key file; diag says which. */
ANT_MUST_CHECK int ant_client_open(const struct ant_client_conf *conf, struct ant_client **out,
                                   struct ant_diag *d);
void ant_client_close(struct ant_client *c); /* accepts NULL */

/* Appends path segment `seg` to `url`, percent-encoded ("/" inside seg is kept as a separator
 * when keep_slash). */
ANT_MUST_CHECK int ant_client_path(struct ant_buf *url, const char *seg,
                                   bool keep_slash);

/* A JSON request. body may be NULL. On an HTTP answer (any status) returns 0 with *status and
 * *resp (the parsed body, or NULL); for a status >= 400 diag holds "STATUS CODE: message
 * (request id ID)", the id from the error body or else the X-Request-Id header (the same for
 * uploads and downloads below). -EIO with diag for transport failures (TLS, refused, timeout). */
ANT_MUST_CHECK int ant_client_json(struct ant_client *c, const char *method, const char *path,
                                   const json_t *body, long *status, json_t **resp,
                                   struct ant_diag *d);

/* PUT of `size` bytes read from fd (streamed). Answer as ant_client_json. */
ANT_MUST_CHECK int ant_client_upload(struct ant_client *c, const char *path, int fd, uint64_t size,
                                     long *status, json_t **resp, struct ant_diag *d);

/* What a file download is checked against. The site sends, with every file it serves (GET
 * and HEAD, 200 and 206), the SHA-256 of the file's plaintext as X-Antenna-Sha256 and of its
 * Crypt4GH body (every byte after the header, which re-encryption for a recipient leaves
 * alone) as X-Antenna-Sha256-C4gh: the listing's `sha256` and `sha256_c4gh`. The checksum is
 * computed as the bytes arrive (a resumed download first reads back the part it keeps). */
enum ant_client_sum {
    ANT_CLIENT_SUM_NONE,  /* not checked (an audit export, a staged file checked by the caller) */
    ANT_CLIENT_SUM_C4GH,  /* Crypt4GH: the header measured (ant_c4gh_header_measure), the body
                           * after it against X-Antenna-Sha256-C4gh */
    ANT_CLIENT_SUM_PLAIN, /* plaintext: every byte against X-Antenna-Sha256 */
};

struct ant_client_check {
    enum ant_client_sum kind;
    const char *fallback; /* 64 hex digits used when the answer has no such header (an older
                           * site): the listing's value; NULL: none */
    bool verified;        /* out: a checksum was compared and matched (false: none was known) */
};

/* GET into a new file `dest` (relative to dirfd): written to a temporary name in the same folder
 * and put in place (ant_rename_durable: fsynced, renamed, the folder fsynced) only after the
 * whole body arrived with status 200 and matched `check` (NULL: no check); nothing is left
 * behind otherwise. `out_fd` >= 0 streams to that fd instead: a mismatch is then found only
 * once every byte went out, and said. Returns 0 with *status, -EIO with diag on transport
 * failures, -EBADMSG with diag when the checksum does not match (or a Crypt4GH answer has no
 * whole header). */
ANT_MUST_CHECK int ant_client_download(struct ant_client *c, const char *path, int dirfd,
                                       const char *dest, int out_fd,
                                       struct ant_client_check *check, long *status,
                                       uint64_t *bytes, struct ant_diag *d);

/* Opens (creating) the folder that will hold `rel` (a checked relative path, '/'-separated)
 * under rootfd, one component at a time with O_NOFOLLOW, so a symlink inside the folder cannot
 * carry a file out of it. Returns the folder's fd (rootfd's duplicate for a plain name) or
 * -errno. */
ANT_MUST_CHECK int ant_client_open_parent(int rootfd, const char *rel);

/* The saved login's files, under ant_client_login_dir(). */
#define ANT_LOGIN_URL "url"
#define ANT_LOGIN_CA "ca.pem"
#define ANT_LOGIN_KEY "api_key"
#define ANT_LOGIN_KEY_MAX 8192

/* $XDG_CONFIG_HOME/antenna (an absolute $XDG_CONFIG_HOME only), else $HOME/.config/antenna.
 * -ENOENT when neither is set, -ENAMETOOLONG past n. Nothing is created. */
ANT_MUST_CHECK int ant_client_login_dir(char *out, size_t n);

/* Saves a login: the folder is created 0700 (made 0700 if it was wider), each file is written
 * 0600 to a temporary name, fsynced and renamed, then the folder fsynced. `cacert` (NULL: none,
 * and an older saved copy is removed) is copied, so the login survives the file moving. -EINVAL
 * for a CA file that holds no PEM certificate, -EACCES for a folder not ours, -errno of the
 * file system; diag says which. The caller checks the credentials first. */
ANT_MUST_CHECK int ant_client_login_save(const char *url, const char *cacert, const char *key,
                                         struct ant_diag *d);

/* Removes the saved login's files (and the folder when that leaves it empty). Returns how many
 * files were removed (0: there was no login), or -errno with diag. */
ANT_MUST_CHECK int ant_client_login_remove(struct ant_diag *d);

/* Opens one saved file read-only (no symlink followed, a FIFO refused without waiting for a
 * writer); the caller closes the fd. -ENOENT without diag when there is none; -EACCES with diag
 * for an `api_key` that is not ours, not a regular file or not 0600 (or narrower), or for a
 * folder that is not ours; -EINVAL with diag for another file that is not a regular file. */
ANT_MUST_CHECK int ant_client_login_open(const char *name, struct ant_diag *d);

/* A resumable GET into `dest` (relative to dirfd; its folder must exist) through a partial
 * file ".NAME.antenna-partial" beside it and a sidecar ".NAME.antenna-partial.etag" holding the
 * answer's strong ETag (both 0600, symlinks and FIFOs refused). The partial file is locked
 * (flock) while this runs: a second fetch of the same file fails with -EBUSY rather than write
 * into it. When both are left from an interrupted run, only the rest is asked for (`Range:
 * bytes=N-` and `If-Range: <tag>`): a 206 appends, a 200 (the file changed) starts over.
 * Starting over empties the partial file and fdatasyncs it before the sidecar names the new tag
 * (written to ".NAME.antenna-partial.etag.XXXXXXXX", 8 hex digits, fsynced, renamed, the folder
 * fsynced), so no crash pairs a tag with another answer's bytes; such temporaries that a crash
 * left are removed by the next fetch of the file (regular files of exactly that name only). The
 * complete file is checked against `check` (NULL: no check), then put in place
 * (ant_rename_durable) and the sidecar removed. On a mismatch nothing is put in place and the
 * partial file and sidecar are removed (the next run starts over); on any other failure both
 * stay for the next run. *bytes is what this run received, *resumed what was kept from before
 * (0: from the start). Returns 0 with *status (200 or 206: done), -EIO with diag on transport
 * failures, -EBADMSG with diag if a 206 does not start where asked or the checksum does not
 * match, -EBUSY with diag when another fetch holds the partial file, -errno with diag for local
 * files. */
/* What a download keeps of its answer's header lines, which the server (or anyone between)
 * chose: a strong ETag of visible ASCII (it goes back into If-Range and the sidecar), "" when
 * none or weak; the start of "Content-Range: bytes START-...", -1 when none. Start with
 * range_start -1 and etag "". */
struct ant_client_hdrs {
    int64_t range_start;
    char etag[128];
};
/* One header line as curl hands it over (CRLF included, not NUL-terminated); a status line
 * ("HTTP/...", a new answer after a 429) forgets what earlier lines said. Untrusted input:
 * fuzzed (tests/fuzz/fuzz_client_headers.c). */
void ant_client_header_line(const char *p, size_t len, struct ant_client_hdrs *h);

ANT_MUST_CHECK int ant_client_fetch(struct ant_client *c, const char *path, int dirfd,
                                    const char *dest, struct ant_client_check *check,
                                    long *status, uint64_t *bytes, uint64_t *resumed,
                                    struct ant_diag *d);

/* Prints an answer for people and scripts alike: indented JSON on stdout (nothing for NULL). */
void ant_client_print_json(const json_t *v);

#endif
