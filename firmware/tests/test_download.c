#include "otaml_download.h"
#include "otaml_mbedtls_compat.h"
#include "otaml_test.h"

int main(void)
{
    uint8_t data[1000];
    for (size_t i = 0; i < sizeof(data); i++) data[i] = (uint8_t)(i * 7);
    uint8_t sha[32];
    otaml_sha256(data, sizeof(data), sha);

    otaml_download_t d;
    CHECK_EQ_INT(otaml_download_start(&d, sizeof(data)), OTAML_OK);
    CHECK_EQ_INT(otaml_download_feed(&d, data, 600), OTAML_OK);
    CHECK_EQ_INT(otaml_download_feed(&d, data + 600, 400), OTAML_OK);
    CHECK_EQ_INT(otaml_download_finish(&d, sha), OTAML_OK);

    /* The endless-data attack: a byte past the declared size is refused and not hashed. */
    CHECK_EQ_INT(otaml_download_start(&d, sizeof(data)), OTAML_OK);
    CHECK_EQ_INT(otaml_download_feed(&d, data, 999), OTAML_OK);
    CHECK_EQ_INT(otaml_download_feed(&d, data, 2), OTAML_ERR_SIZE);
    CHECK_EQ_INT(d.received, 999);
    otaml_download_free(&d);

    /* Short, then wrong bytes. */
    CHECK_EQ_INT(otaml_download_start(&d, sizeof(data)), OTAML_OK);
    CHECK_EQ_INT(otaml_download_feed(&d, data, 10), OTAML_OK);
    CHECK_EQ_INT(otaml_download_finish(&d, sha), OTAML_ERR_SIZE);
    data[5] ^= 1;
    CHECK_EQ_INT(otaml_download_start(&d, sizeof(data)), OTAML_OK);
    CHECK_EQ_INT(otaml_download_feed(&d, data, sizeof(data)), OTAML_OK);
    CHECK_EQ_INT(otaml_download_finish(&d, sha), OTAML_ERR_HASH);
    otaml_download_free(&d); /* safe after finish */
    return test_summary();
}
