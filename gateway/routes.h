/* The route table of the HTTP API (documented in docs/api.yaml; a test checks both agree). */
#ifndef ANT_ROUTES_H
#define ANT_ROUTES_H

#include "gateway/http.h"

#include <stddef.h>

extern const struct ant_route g_ant_routes[];
extern const size_t g_ant_nroutes;

/* Matches path against pattern; fills params on success. */
bool ant_route_match(const char *pattern, const char *path, struct ant_bytes *params,
                     unsigned *nparams);

/* Handlers, one file per area. */
int ant_route_health(struct ant_req *r);
int ant_route_site(struct ant_req *r);
int ant_route_metrics(struct ant_req *r);
/* routes_admin.c */
int ant_route_tenant_create(struct ant_req *r);
int ant_route_tenant_list(struct ant_req *r);
int ant_route_principal_create(struct ant_req *r);
int ant_route_principal_list(struct ant_req *r);
int ant_route_key_create(struct ant_req *r);
int ant_route_key_list(struct ant_req *r);
int ant_route_key_revoke(struct ant_req *r);
int ant_route_principal_pubkey_put(struct ant_req *r);
int ant_route_principal_pubkey_get(struct ant_req *r);
/* routes_datasets.c */
int ant_route_dataset_create(struct ant_req *r);
int ant_route_dataset_list(struct ant_req *r);
int ant_route_dataset_show(struct ant_req *r);
int ant_route_dataset_publish(struct ant_req *r);
int ant_route_dataset_withdraw(struct ant_req *r);
int ant_route_file_list(struct ant_req *r);
/* routes_files.c */
int ant_route_file_put(struct ant_req *r);
int ant_route_file_put_body(struct ant_req *r, const uint8_t *p, size_t n);
int ant_route_file_get(struct ant_req *r);
/* routes_grants.c */
int ant_route_grant_create(struct ant_req *r);
int ant_route_grant_list(struct ant_req *r);
int ant_route_grant_revoke(struct ant_req *r);
int ant_route_policy_explain(struct ant_req *r);
/* routes_audit.c */
int ant_route_audit_events(struct ant_req *r);
int ant_route_audit_status(struct ant_req *r);
int ant_route_audit_checkpoints(struct ant_req *r);
int ant_route_audit_export(struct ant_req *r);

#endif
