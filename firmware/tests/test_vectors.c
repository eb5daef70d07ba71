/* Every signed vector in manifests/vectors/, judged by the device's full check order. The same files
 * are judged by the Python suite (tests/server/test_vectors.py). */
#include <cJSON.h>

#include "otaml_policy.h"
#include "otaml_test.h"

static char s_path[1024];

static const char *vec_path(const char *name, const char *suffix)
{
    snprintf(s_path, sizeof(s_path), "%s/manifests/vectors/%s%s", OTAML_REPO_ROOT, name, suffix);
    return s_path;
}

static const char *expected_name(otaml_decision_t d, otaml_reason_t r)
{
    if (d == OTAML_DECISION_UPDATE) return "update";
    if (d == OTAML_DECISION_NO_UPDATE) return "no_update";
    return otaml_reason_to_str(r);
}

int main(void)
{
    char *index_text = test_read_file(vec_path("index", ".json"), NULL);
    cJSON *index = cJSON_Parse(index_text);
    CHECK(index != NULL);
    const cJSON *c = cJSON_GetObjectItem(index, "context");

    char key_path[1024];
    snprintf(key_path, sizeof(key_path), "%s/manifests/%s", OTAML_REPO_ROOT, cJSON_GetObjectItem(index, "key")->valuestring);
    char *pem = test_read_file(key_path, NULL);
    const char *pems[] = {pem};
    otaml_keyring_t ring;
    CHECK_EQ_INT(otaml_keyring_init(&ring, pems, 1), OTAML_OK);
    CHECK_EQ_STR(ring.key_id[0], cJSON_GetObjectItem(index, "key_id")->valuestring);

    otaml_policy_ctx_t ctx = {
        .now = (int64_t)cJSON_GetObjectItem(c, "now")->valuedouble,
        .project = cJSON_GetObjectItem(c, "project")->valuestring,
        .chip = cJSON_GetObjectItem(c, "chip")->valuestring,
        .channel = cJSON_GetObjectItem(c, "channel")->valuestring,
        .secure_version = (uint32_t)cJSON_GetObjectItem(c, "secure_version")->valuedouble,
        .last_manifest_version = (uint64_t)cJSON_GetObjectItem(c, "last_manifest_version")->valuedouble,
        .failed_version = cJSON_GetObjectItem(c, "failed_version")->valuestring,
        .slot_size = (size_t)cJSON_GetObjectItem(c, "slot_size")->valuedouble,
    };
    CHECK(otaml_version_parse(cJSON_GetObjectItem(c, "running_version")->valuestring, &ctx.running_version));

    int count = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(index, "vectors"))
    {
        const char *name = cJSON_GetObjectItem(v, "name")->valuestring;
        const char *expect = cJSON_GetObjectItem(v, "expect")->valuestring;
        size_t len;
        char *body = test_read_file(vec_path(name, ".json"), &len);
        char *sig = test_read_file(vec_path(name, ".json.sig"), NULL);
        for (size_t n = strlen(sig); n > 0 && (sig[n - 1] == '\n' || sig[n - 1] == '\r'); n--) sig[n - 1] = '\0';
        otaml_manifest_t m;
        otaml_reason_t reason;
        otaml_decision_t d = otaml_policy_evaluate(&ring, (const uint8_t *)body, len, sig, &ctx, &m, &reason);
        const char *got = expected_name(d, reason);
        if (strcmp(got, expect) != 0) fprintf(stderr, "vector %s: expected %s, got %s\n", name, expect, got);
        CHECK_EQ_STR(got, expect);
        free(body);
        free(sig);
        count++;
    }
    CHECK(count >= 25);

    /* Without trusted time the expired vector is judged by the other rules (it is a valid update). */
    otaml_policy_ctx_t no_time = ctx;
    no_time.now = 0;
    size_t len;
    char *body = test_read_file(vec_path("expired", ".json"), &len);
    char *sig = test_read_file(vec_path("expired", ".json.sig"), NULL);
    sig[strcspn(sig, "\n")] = '\0';
    otaml_manifest_t m;
    otaml_reason_t reason;
    CHECK_EQ_INT(otaml_policy_evaluate(&ring, (const uint8_t *)body, len, sig, &no_time, &m, &reason), OTAML_DECISION_UPDATE);
    free(body);
    free(sig);

    /* Parsed fields of the valid vector. */
    body = test_read_file(vec_path("valid_update", ".json"), &len);
    CHECK_EQ_INT(otaml_manifest_parse((const uint8_t *)body, len, &m), OTAML_OK);
    CHECK_EQ_STR(m.semver, "1.2");
    CHECK_EQ_INT(m.size, 1048576);
    CHECK_EQ_INT(m.manifest_version, 6);
    CHECK_EQ_INT(m.sha256[0], 0xab);
    CHECK(m.legacy_version > 1.19 && m.legacy_version < 1.21);
    free(body);

    free(pem);
    cJSON_Delete(index);
    free(index_text);
    return test_summary();
}
