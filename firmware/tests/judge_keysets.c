/* The device core's verdict on every key set of manifests/vectors/keysets.jsonl (otaml_keyset_verify with
 * the key the header names as the keys in use). Prints "= <id>\t<verdict>" per entry; with --check also
 * compares with each entry's "expect" (the Python reference) and exits 1 on a difference.
 *
 *   judge_keysets [--check] [CORPUS] */
#include <cJSON.h>

#include "otaml_keyset.h"
#include "otaml_test.h"

static const char *prv_str(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsString(item)) {
        fprintf(stderr, "key-set corpus entry lacks string %s\n", name);
        exit(2);
    }
    return item->valuestring;
}

int main(int argc, char **argv)
{
    bool check = argc > 1 && strcmp(argv[1], "--check") == 0;
    char default_path[1024];
    snprintf(default_path, sizeof(default_path), "%s/manifests/vectors/keysets.jsonl", OTAML_REPO_ROOT);
    int first = check ? 2 : 1;
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
    char key_path[1024];
    snprintf(key_path, sizeof(key_path), "%s/manifests/%s", OTAML_REPO_ROOT, prv_str(header, "trusted"));
    char *pem = test_read_file(key_path, NULL);
    const char *pems[] = {pem};
    otaml_keyring_t ring;
    if (otaml_keyring_init(&ring, pems, 1) != OTAML_OK) return 2;
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(header, "current_version");
    if (!cJSON_IsNumber(cur)) return 2;
    const char *project = prv_str(header, "project");

    int judged = 0, differ = 0, accepted = 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *e = cJSON_Parse(line);
        if (e == NULL) return 2;
        otaml_keyset_t set;
        memset(&set, 0xA5, sizeof(set));
        otaml_keyset_verdict_t v = otaml_keyset_verify(&ring, prv_str(e, "doc"), prv_str(e, "sig"), project,
                                                       (uint64_t)cur->valuedouble, &set);
        const char *got = otaml_keyset_verdict_to_str(v);
        printf("= %s\t%s\n", prv_str(e, "id"), got);
        if (v == OTAML_KEYSET_OK) {
            /* What is accepted is usable: a keyring of its keys, every id its key's. */
            otaml_keyring_t next;
            CHECK_EQ_INT(otaml_keyset_keyring(&set, &next), OTAML_OK);
            for (size_t i = 0; i < set.count; i++) CHECK_EQ_STR(next.key_id[i], set.key_id[i]);
            CHECK(set.version > (uint64_t)cur->valuedouble);
            accepted++;
        }
        if (check && strcmp(got, prv_str(e, "expect")) != 0) {
            fprintf(stderr, "%s (%s): expected %s, the core says %s\n", prv_str(e, "id"), prv_str(e, "family"),
                    prv_str(e, "expect"), got);
            differ++;
        }
        judged++;
        cJSON_Delete(e);
    }
    free(line);
    fclose(f);
    free(pem);
    cJSON_Delete(header);
    fprintf(stderr, "judged %d key sets, %d accepted, %d differ from the Python reference\n", judged, accepted, differ);
    if (check) {
        CHECK_EQ_INT(differ, 0);
        CHECK(judged > 200);
        printf("%d passed, %d failed\n", s_checks_passed, s_checks_failed);
    }
    return (differ || s_checks_failed) ? 1 : 0;
}
