/* The port's one function the document paths use (logging), silenced, and the harnesses' helpers. */
#include <stdarg.h>
#include <string.h>

#include "fuzz_common.h"
#include "fuzz_keys.h"
#include "otaml_port.h"

void otaml_port_log(otaml_log_level_t level, const char *tag, const char *fmt, ...)
{
    (void)level;
    (void)tag;
    (void)fmt; /* thousands of refusals per second: formatting them would be most of the work */
}

static const otaml_keyring_t *prv_ring(otaml_keyring_t *ring, bool *ready, const char *pem)
{
    if (!*ready) {
        const char *pems[] = {pem};
        if (otaml_keyring_init(ring, pems, 1) != OTAML_OK) abort();
        *ready = true;
    }
    return ring;
}

const otaml_keyring_t *fuzz_release_ring(void)
{
    static otaml_keyring_t s_ring;
    static bool s_ready;
    return prv_ring(&s_ring, &s_ready, FUZZ_RELEASE_PEM);
}

const otaml_keyring_t *fuzz_config_ring(void)
{
    static otaml_keyring_t s_ring;
    static bool s_ready;
    return prv_ring(&s_ring, &s_ready, FUZZ_CONFIG_PEM);
}

size_t fuzz_split(const uint8_t *data, size_t size, char sig[256])
{
    sig[0] = '\0';
    const uint8_t *sep = NULL;
    for (size_t i = 0; i + 1 < size && sep == NULL; i++) {
        if (data[i] == 0xFF && data[i + 1] == 0xFE) sep = data + i;
    }
    if (sep == NULL) return size;
    size_t doc_len = (size_t)(sep - data), n = size - doc_len - 2;
    if (n > 255) n = 255;
    memcpy(sig, sep + 2, n);
    sig[n] = '\0'; /* a NUL inside ends the header value, as it would on the wire */
    return doc_len;
}
