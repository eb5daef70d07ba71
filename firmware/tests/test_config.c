/* Desired-config documents from manifests/vectors/config-documents.json, signed by the Python server
 * code, judged by the device's otaml_config_verify; plus the applied-string round trip. */
#include <cJSON.h>

#include "otaml_config.h"
#include "otaml_test.h"

static const char *expected_name(otaml_status_t st)
{
    switch (st) {
    case OTAML_OK: return "ok";
    case OTAML_ERR_STALE: return "stale";
    case OTAML_ERR_WRONG_DEVICE: return "wrong_device";
    case OTAML_ERR_SIGNATURE: return "signature";
    case OTAML_ERR_PARSE: return "parse";
    case OTAML_ERR_TOO_LARGE: return "too_large";
    default: return otaml_status_to_str(st);
    }
}

int main(void)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/manifests/vectors/config-documents.json", OTAML_REPO_ROOT);
    char *text = test_read_file(path, NULL);
    cJSON *root = cJSON_Parse(text);
    CHECK(root != NULL);
    snprintf(path, sizeof(path), "%s/manifests/%s", OTAML_REPO_ROOT, cJSON_GetObjectItem(root, "key")->valuestring);
    char *pem = test_read_file(path, NULL);
    const char *pems[] = {pem};
    otaml_keyring_t ring;
    CHECK_EQ_INT(otaml_keyring_init(&ring, pems, 1), OTAML_OK);
    const char *device = cJSON_GetObjectItem(root, "device_id")->valuestring;
    uint64_t applied = (uint64_t)cJSON_GetObjectItem(root, "applied_revision")->valuedouble;

    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases"))
    {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        otaml_config_t cfg;
        otaml_status_t st = otaml_config_verify(&ring, cJSON_GetObjectItem(c, "doc")->valuestring,
                                                cJSON_GetObjectItem(c, "sig")->valuestring, device, applied, &cfg);
        printf("  %-18s %s\n", name, expected_name(st));
        CHECK_EQ_STR(expected_name(st), cJSON_GetObjectItem(c, "expect")->valuestring);
        char formatted[96];
        CHECK_EQ_INT(otaml_config_format(&cfg, formatted, sizeof(formatted)), OTAML_OK);
        CHECK_EQ_STR(formatted, cJSON_GetObjectItem(c, "applied")->valuestring);
        if (st != OTAML_OK) CHECK(cfg.revision == 0); /* a refusal leaves nothing half-applied */
        n++;
    }
    CHECK(n >= 9);

    /* What is stored and reported parses back to the same configuration. */
    otaml_config_t cfg, back;
    otaml_config_init(&cfg);
    cfg.ml_interval_ms = 250;
    cfg.alert_threshold = 0; /* zero is a value, not "unset" */
    char s[96];
    CHECK_EQ_INT(otaml_config_format(&cfg, s, sizeof(s)), OTAML_OK);
    CHECK_EQ_STR(s, "alert_threshold=0,ml_interval_ms=250");
    otaml_config_init(&back);
    CHECK_EQ_INT(otaml_config_parse_applied(s, &back), OTAML_OK);
    CHECK_EQ_INT(back.ml_interval_ms, 250);
    CHECK_EQ_INT(back.alert_threshold, 0);
    CHECK_EQ_INT(otaml_config_parse_applied("ml_interval_ms=5", &back), OTAML_ERR_PARSE);
    CHECK_EQ_INT(otaml_config_parse_applied("ml_interval_ms", &back), OTAML_ERR_PARSE);
    char tiny[8];
    CHECK_EQ_INT(otaml_config_format(&cfg, tiny, sizeof(tiny)), OTAML_ERR_TOO_LARGE);

    cJSON_Delete(root);
    free(text);
    free(pem);
    printf("config documents: %d vectors judged as expected\n", n);
    return test_summary();
}
