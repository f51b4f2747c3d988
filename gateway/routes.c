/* The route table and the path matcher. */
#include "gateway/routes.h"
#include "gateway/routes_fed.h"
#include "gateway/routes_stage.h"

#include <string.h>

const struct ant_route g_ant_routes[] = {
    {"GET", "/v1/health", "health", ant_route_health, NULL, ANT_ROUTE_PUBLIC},
    {"GET", "/v1/site", "site", ant_route_site, NULL, ANT_ROUTE_PUBLIC},
    {"GET", "/metrics", "metrics", ant_route_metrics, NULL, 0},
    {"POST", "/v1/tenants", "tenants.create", ant_route_tenant_create, NULL, 0},
    {"GET", "/v1/tenants", "tenants.list", ant_route_tenant_list, NULL, 0},
    {"POST", "/v1/principals", "principals.create", ant_route_principal_create, NULL, 0},
    {"GET", "/v1/principals", "principals.list", ant_route_principal_list, NULL, 0},
    {"POST", "/v1/principals/{}/keys", "keys.create", ant_route_key_create, NULL, 0},
    {"PUT", "/v1/principals/{}/c4gh-key", "principals.c4gh_key.set",
     ant_route_principal_pubkey_put, NULL, 0},
    {"GET", "/v1/principals/{}/c4gh-key", "principals.c4gh_key.show",
     ant_route_principal_pubkey_get, NULL, 0},
    {"GET", "/v1/keys", "keys.list", ant_route_key_list, NULL, 0},
    {"DELETE", "/v1/keys/{}", "keys.revoke", ant_route_key_revoke, NULL, 0},
    {"POST", "/v1/datasets", "datasets.create", ant_route_dataset_create, NULL, 0},
    {"GET", "/v1/datasets", "datasets.list", ant_route_dataset_list, NULL, 0},
    {"GET", "/v1/datasets/{}", "datasets.show", ant_route_dataset_show, NULL, 0},
    {"POST", "/v1/datasets/{}/publish", "datasets.publish", ant_route_dataset_publish, NULL, 0},
    {"POST", "/v1/datasets/{}/withdraw", "datasets.withdraw", ant_route_dataset_withdraw, NULL,
     0},
    {"GET", "/v1/datasets/{}/files", "files.list", ant_route_file_list, NULL, 0},
    {"PUT", "/v1/datasets/{}/files/{*}", "files.put", ant_route_file_put,
     ant_route_file_put_body, 0},
    {"GET", "/v1/datasets/{}/files/{*}", "files.get", ant_route_file_get, NULL, 0},
    {"POST", "/v1/datasets/{}/grants", "grants.create", ant_route_grant_create, NULL, 0},
    {"GET", "/v1/datasets/{}/grants", "grants.list", ant_route_grant_list, NULL, 0},
    {"DELETE", "/v1/grants/{}", "grants.revoke", ant_route_grant_revoke, NULL, 0},
    {"POST", "/v1/policy/explain", "policy.explain", ant_route_policy_explain, NULL, 0},
    {"GET", "/v1/audit/events", "audit.events", ant_route_audit_events, NULL, 0},
    {"GET", "/v1/audit/status", "audit.status", ant_route_audit_status, NULL, 0},
    {"GET", "/v1/audit/checkpoints", "audit.checkpoints", ant_route_audit_checkpoints, NULL, 0},
    {"GET", "/v1/audit/export", "audit.export", ant_route_audit_export, NULL, 0},
    {"POST", "/v1/stage", "stage.create", ant_route_stage_create, NULL, 0},
    {"GET", "/v1/stage", "stage.list", ant_route_stage_list, NULL, 0},
    {"PUT", "/v1/tenants/{}/scratch-quota", "stage.quota.set", ant_route_quota_put, NULL, 0},
    {"GET", "/v1/tenants/{}/scratch-quota", "stage.quota.show", ant_route_quota_get, NULL, 0},
    {"GET", "/v1/stage/{}", "stage.show", ant_route_stage_show, NULL, 0},
    {"DELETE", "/v1/stage/{}", "stage.cancel", ant_route_stage_cancel, NULL, 0},
    {"POST", "/v1/stage-out", "stage.out", ant_route_stage_out, NULL, 0},
    /* job tokens are not API keys: these handlers verify the token themselves */
    {"GET", "/v1/stage/{}/files", "stage.files", ant_route_stage_files, NULL, ANT_ROUTE_PUBLIC},
    {"GET", "/v1/stage/{}/files/{*}", "stage.file", ant_route_stage_file, NULL,
     ANT_ROUTE_PUBLIC},
    /* federation tokens are not local credentials: these handlers verify them themselves */
    {"GET", "/v1/federation/datasets", "fed.datasets", ant_route_fed_datasets, NULL,
     ANT_ROUTE_PUBLIC},
    {"GET", "/v1/federation/datasets/{}/manifest", "fed.manifest", ant_route_fed_manifest, NULL,
     ANT_ROUTE_PUBLIC},
    {"GET", "/v1/federation/datasets/{}/files/{*}", "fed.file", ant_route_fed_file, NULL,
     ANT_ROUTE_PUBLIC},
    {"GET", "/v1/federation/checkpoint", "fed.checkpoint", ant_route_fed_checkpoint, NULL,
     ANT_ROUTE_PUBLIC},
};
const size_t g_ant_nroutes = ANT_ARRAY_LEN(g_ant_routes);

bool ant_route_match(const char *pattern, const char *path, struct ant_bytes *params,
                     unsigned *nparams)
{
    const char *p = pattern, *u = path;
    unsigned n = 0;
    while (*p != '\0') {
        if (p[0] == '{' && p[1] == '*' && p[2] == '}') {
            /* the rest of the path, at least one byte */
            if (*u == '\0' || n == ANT_ROUTE_MAX_PARAMS) {
                return false;
            }
            params[n++] = ant_bytes_of(u, strlen(u));
            *nparams = n;
            return true;
        }
        if (p[0] == '{' && p[1] == '}') {
            size_t len = strcspn(u, "/");
            if (len == 0 || n == ANT_ROUTE_MAX_PARAMS) {
                return false;
            }
            params[n++] = ant_bytes_of(u, len);
            u += len;
            p += 2;
            continue;
        }
        if (*p != *u) {
            return false;
        }
        p++;
        u++;
    }
    if (*u != '\0') {
        return false;
    }
    *nparams = n;
    return true;
}
