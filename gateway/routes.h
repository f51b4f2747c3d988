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

#endif
