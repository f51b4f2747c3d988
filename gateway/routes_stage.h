/* Stage jobs over HTTP (issue 6): the /v1/stage and /v1/stage-out routes, and the runner's start
 * and stop for `antenna serve`. */
#ifndef ANT_ROUTES_STAGE_H
#define ANT_ROUTES_STAGE_H

#include "crypto/base/base.h"
#include "gateway/http.h"

#include <stdint.h>

struct ant_site;
struct ant_jobs;

/* Opens the job table of `site` and starts its runner threads and purger (workers, quota, time
 * to live and engine from the [staging] configuration) as site->jobs, where the routes find
 * it. Call after ant_site_open and before ant_server_start. Errors as ant_jobs_open and
 * ant_jobs_start, with diag saying what failed. */
ANT_MUST_CHECK int ant_gw_stage_start(struct ant_site *site, struct ant_diag *d);
/* Stops the runner (running jobs go back to queued and resume at the next start), closes the
 * table and clears site->jobs. Call after ant_server_stop and before ant_site_close. */
void ant_gw_stage_stop(struct ant_site *site);

int ant_route_stage_create(struct ant_req *r); /* POST /v1/stage */
int ant_route_stage_list(struct ant_req *r);   /* GET /v1/stage */
int ant_route_quota_put(struct ant_req *r);    /* PUT /v1/tenants/{name}/scratch-quota */
int ant_route_quota_get(struct ant_req *r);    /* GET /v1/tenants/{name}/scratch-quota */
int ant_route_stage_show(struct ant_req *r);   /* GET /v1/stage/{id} */
int ant_route_stage_cancel(struct ant_req *r); /* DELETE /v1/stage/{id} */
int ant_route_stage_out(struct ant_req *r);    /* POST /v1/stage-out */
/* GET /v1/stage/{id}/files and /v1/stage/{id}/files/{*}: ANT_ROUTE_PUBLIC, authenticated here
 * by the job token (job tokens are not API keys: gateway/auth.c need not know them). */
int ant_route_stage_files(struct ant_req *r);
int ant_route_stage_file(struct ant_req *r);

#endif
