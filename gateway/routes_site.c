/* GET /v1/health and GET /v1/site: public, so peers and load balancers can reach them. */
#include "ant_version.h"
#include "gateway/routes.h"
#include "gateway/site.h"

int ant_route_health(struct ant_req *r)
{
    json_t *doc = json_pack("{s:s, s:s}", "status", "ok", "version", ANT_VERSION);
    if (doc == NULL) {
        return -ENOMEM;
    }
    int rc = ant_req_json(r, MHD_HTTP_OK, doc);
    json_decref(doc);
    return rc;
}

int ant_route_site(struct ant_req *r)
{
    const struct ant_site *s = r->site;
    json_t *doc = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:s}", "id", s->cfg.site_id, "region",
                            s->cfg.region, "public_keys", "x25519", s->x25519_b64, "ed25519",
                            s->ed25519_b64, "tls_cert_sha256", s->cert_sha256, "version",
                            ANT_VERSION);
    if (doc == NULL) {
        return -ENOMEM;
    }
    int rc = ant_req_json(r, MHD_HTTP_OK, doc);
    json_decref(doc);
    return rc;
}
