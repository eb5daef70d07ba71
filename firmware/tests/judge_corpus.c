/* The device core's verdict on every entry of manifests/vectors/adversarial.jsonl: manifests through
 * otaml_policy_evaluate (size, signature, strict parse, key id, policy), config documents through
 * otaml_config_verify. Prints "= <id>\t<verdict>" per entry ("= <id>\t<status>\t<applied>" for config
 * documents; the core's own log lines go to stdout too); tests/firmware/test_corpus.py compares every
 * verdict with the Python reference.
 *
 *   judge_corpus [CORPUS]            print the verdicts
 *   judge_corpus --check [CORPUS]    also compare with each entry's "expect"; exit 1 on a difference
 *   judge_corpus --verified CORPUS   manifests only, as if each signature verified with the pinned key
 *                                    (otaml_policy_evaluate_verified): a fast differential of the parser */
#include <cJSON.h>
#include <mbedtls/base64.h>

#include "otaml_config.h"
#include "otaml_policy.h"
#include "otaml_test.h"

static const char *prv_config_status(otaml_status_t st)
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

static const char *prv_str(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsString(item)) {
        fprintf(stderr, "corpus entry lacks string %s\n", name);
        exit(2);
    }
    return item->valuestring;
}

static double prv_num(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsNumber(item)) {
        fprintf(stderr, "corpus header lacks number %s\n", name);
        exit(2);
    }
    return item->valuedouble;
}

static void prv_keyring(otaml_keyring_t *ring, char **pem, const char *relative)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/manifests/%s", OTAML_REPO_ROOT, relative);
    *pem = test_read_file(path, NULL);
    const char *pems[] = {*pem};
    if (otaml_keyring_init(ring, pems, 1) != OTAML_OK) exit(2);
}

int main(int argc, char **argv)
{
    bool check = argc > 1 && strcmp(argv[1], "--check") == 0;
    bool verified = argc > 1 && strcmp(argv[1], "--verified") == 0;
    char default_path[1024];
    snprintf(default_path, sizeof(default_path), "%s/manifests/vectors/adversarial.jsonl", OTAML_REPO_ROOT);
    int first = (check || verified) ? 2 : 1;
    const char *path = argc > first ? argv[first] : default_path;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        return 2;
    }

    char *line = NULL;
    size_t cap = 0;
    if (getline(&line, &cap, f) < 0) return 2;
    cJSON *header = cJSON_Parse(line);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(header, "context");
    if (c == NULL) return 2;
    char *release_pem, *config_pem;
    otaml_keyring_t ring, config_ring;
    prv_keyring(&ring, &release_pem, prv_str(header, "key"));
    prv_keyring(&config_ring, &config_pem, prv_str(header, "config_key"));
    otaml_policy_ctx_t ctx = {
        .now = (int64_t)prv_num(c, "now"),
        .project = prv_str(c, "project"),
        .chip = prv_str(c, "chip"),
        .channel = prv_str(c, "channel"),
        .secure_version = (uint32_t)prv_num(c, "secure_version"),
        .last_manifest_version = (uint64_t)prv_num(c, "last_manifest_version"),
        .failed_version = prv_str(c, "failed_version"),
        .slot_size = (size_t)prv_num(c, "slot_size"),
    };
    if (!otaml_version_parse(prv_str(c, "running_version"), &ctx.running_version)) return 2;
    const char *device_id = prv_str(header, "device_id");
    uint64_t applied_revision = (uint64_t)prv_num(header, "applied_revision");

    int judged = 0, differ = 0;
    uint8_t *body = malloc(65536);
    while (getline(&line, &cap, f) > 0) {
        cJSON *e = cJSON_Parse(line);
        if (e == NULL) return 2;
        const char *id = prv_str(e, "id"), *kind = prv_str(e, "kind"), *expect = prv_str(e, "expect");
        char got[128];
        if (strcmp(kind, "manifest") == 0) {
            const char *b64 = prv_str(e, "body");
            size_t len = 0;
            if (mbedtls_base64_decode(body, 65536, &len, (const unsigned char *)b64, strlen(b64)) != 0) return 2;
            otaml_manifest_t m;
            otaml_reason_t reason;
            otaml_decision_t d = verified ? otaml_policy_evaluate_verified(body, len, ring.key_id[0], &ctx, &m, &reason)
                                          : otaml_policy_evaluate(&ring, body, len, prv_str(e, "sig"), &ctx, &m, &reason);
            snprintf(got, sizeof(got), "%s", d == OTAML_DECISION_REJECT ? otaml_reason_to_str(reason) : otaml_decision_to_str(d));
            printf("= %s\t%s\n", id, got);
            if (check && strcmp(got, expect) != 0) {
                fprintf(stderr, "%s (%s): expected %s, the core says %s\n", id, prv_str(e, "family"), expect, got);
                differ++;
            }
        } else {
            otaml_config_t cfg;
            otaml_status_t st = otaml_config_verify(&config_ring, prv_str(e, "doc"), prv_str(e, "sig"), device_id,
                                                    applied_revision, &cfg);
            char applied[OTAML_CONFIG_MAX_APPLIED];
            if (otaml_config_format(&cfg, applied, sizeof(applied)) != OTAML_OK) return 2;
            printf("= %s\t%s\t%s\n", id, prv_config_status(st), applied);
            if (check && (strcmp(prv_config_status(st), expect) != 0 || strcmp(applied, prv_str(e, "applied")) != 0)) {
                fprintf(stderr, "%s (%s): expected %s [%s], the core says %s [%s]\n", id, prv_str(e, "family"), expect,
                        prv_str(e, "applied"), prv_config_status(st), applied);
                differ++;
            }
        }
        judged++;
        cJSON_Delete(e);
    }
    free(body);
    free(line);
    fclose(f);
    free(release_pem);
    free(config_pem);
    cJSON_Delete(header);
    fprintf(stderr, "judged %d entries, %d differ from the corpus\n", judged, differ);
    return differ || (check && judged < 1000) ? 1 : 0;
}
