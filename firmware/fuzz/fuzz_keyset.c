/*
 * libFuzzer harness for key-set documents: the header as it arrives (size, strict base64, signature with
 * the test release key as the keys in use, then everything after), and, to reach the parser without the
 * key, otaml_keyset_parse (what otaml_keyset_verify runs once the signature verified). Input:
 * DOC [0xFF 0xFE SIG].
 */
#include <string.h>

#include <mbedtls/base64.h>

#include "fuzz_common.h"
#include "otaml_keyset.h"

static bool prv_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    }
    return s[n] == '\0';
}

/* What is accepted is whole: 1..OTAML_MAX_KEYS distinct keys, each a usable keyring entry with its id. */
static void prv_check_accepted(const otaml_keyset_t *set, uint64_t above)
{
    FUZZ_ASSERT(set->version > above && set->version <= 9007199254740991ULL);
    FUZZ_ASSERT(set->count >= 1 && set->count <= OTAML_MAX_KEYS);
    FUZZ_ASSERT(memchr(set->project, '\0', sizeof(set->project)) != NULL && set->project[0] != '\0');
    otaml_keyring_t ring;
    FUZZ_ASSERT(otaml_keyset_keyring(set, &ring) == OTAML_OK);
    for (size_t i = 0; i < set->count; i++) {
        FUZZ_ASSERT(prv_lower_hex(set->key_id[i], 16));
        FUZZ_ASSERT(strcmp(ring.key_id[i], set->key_id[i]) == 0);
        for (size_t j = 0; j < i; j++) FUZZ_ASSERT(strcmp(set->key_id[i], set->key_id[j]) != 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char sig[256];
    size_t len = fuzz_split(data, size, sig);
    otaml_keyset_t set;

    char b64[OTAML_MAX_KEYSET_B64 + 8];
    size_t b64_len = 0;
    if (len <= OTAML_MAX_KEYSET_BYTES && mbedtls_base64_encode((unsigned char *)b64, sizeof(b64), &b64_len, data, len) == 0) {
        if (otaml_keyset_verify(fuzz_release_ring(), b64, sig, "otaml", 2, &set) == OTAML_KEYSET_OK) prv_check_accepted(&set, 2);
    }
    char *header = malloc(len + 1);
    memcpy(header, data, len);
    header[len] = '\0';
    if (otaml_keyset_verify(fuzz_release_ring(), header, sig, "otaml", 2, &set) == OTAML_KEYSET_OK) prv_check_accepted(&set, 2);
    free(header);

    uint8_t *body = malloc(len ? len : 1);
    memcpy(body, data, len);
    otaml_status_t st = otaml_keyset_parse(body, len, &set);
    if (st == OTAML_OK) {
        prv_check_accepted(&set, 0);
    } else {
        FUZZ_ASSERT(set.count == 0 && set.version == 0); /* nothing half-parsed */
    }
    free(body);
    return 0;
}
