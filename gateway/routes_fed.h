/* The serving side of federation (DESIGN.md §8, docs/federation.md): what a peer site may ask
 * for on behalf of one of its principals. These routes are public in the route table because a
 * federation token is not a local credential: each handler verifies it itself (the peer's
 * pinned Ed25519 key, audience = this site, at most 5 minutes, jti accepted once) and audits
 * every refusal with the reason, which the 401 also states. */
#ifndef ANT_ROUTES_FED_H
#define ANT_ROUTES_FED_H

#include "gateway/http.h"

/* The header both sites put on every federation request and response, and in their audit
 * events, so that the two logs can be joined. */
#define ANT_FED_TRANSFER_HEADER "X-Antenna-Transfer-Id"
/* The detached Ed25519 signature of a manifest's exact body bytes, standard base64. */
#define ANT_FED_SIGNATURE_HEADER "X-Antenna-Signature"

/* GET /v1/federation/datasets: the datasets the asking principal may transfer here. */
int ant_route_fed_datasets(struct ant_req *r);
/* GET /v1/federation/datasets/{id}/manifest: files, sizes and body digests, signed. */
int ant_route_fed_manifest(struct ant_req *r);
/* GET /v1/federation/datasets/{id}/files/{path}[?part=header|body]: the file with its header
 * re-encrypted for the asking site's X25519 key and the body unchanged; single byte Range. */
int ant_route_fed_file(struct ant_req *r);
/* GET /v1/federation/checkpoint: this site's latest signed audit checkpoint, as the export's
 * checkpoint line, for the asking peer to witness (docs/security.md, "Witnesses"); 404
 * no_checkpoint before the first. Any authenticated peer may ask; each request is audited. */
int ant_route_fed_checkpoint(struct ant_req *r);

#endif
