/* Files: upload (PUT, streamed) and download (GET/HEAD). Waiting for crypto/c4gh.h. */
#include "gateway/api.h"
#include "gateway/routes.h"

int ant_route_file_put_body(struct ant_req *r, const uint8_t *p, size_t n)
{
    (void)r;
    (void)p;
    (void)n;
    return 0;
}

int ant_route_file_put(struct ant_req *r)
{
    return ant_api_end(ant_api_fail(r, 501, "not_implemented", "uploads are not built yet"));
}

int ant_route_file_get(struct ant_req *r)
{
    return ant_api_end(ant_api_fail(r, 501, "not_implemented", "downloads are not built yet"));
}
