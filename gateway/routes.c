/* The route table and the path matcher. */
#include "gateway/routes.h"

#include <string.h>

const struct ant_route g_ant_routes[] = {
    {"GET", "/v1/health", "health", ant_route_health, NULL, ANT_ROUTE_PUBLIC},
    {"GET", "/v1/site", "site", ant_route_site, NULL, ANT_ROUTE_PUBLIC},
    {"GET", "/metrics", "metrics", ant_route_metrics, NULL, 0},
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
