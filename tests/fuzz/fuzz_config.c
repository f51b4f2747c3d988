/* Fuzz target: antenna.conf parser. */
#include "gateway/config.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ant_config c;
    struct ant_diag d;
    ant_config_defaults(&c);
    int rc = ant_config_parse((struct ant_bytes){data, size}, "fuzz", &c, &d);
    (void)rc;
    return 0;
}
