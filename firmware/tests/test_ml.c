/* The model card and quantization math the firmware shares with the Python pipeline. */
#include "otaml_mbedtls_compat.h"
#include "otaml_ml.h"
#include "otaml_test.h"

int main(void)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/firmware/model/amp_health.card.json", OTAML_REPO_ROOT);
    size_t len;
    char *json = test_read_file(path, &len);
    otaml_model_card_t card;
    CHECK_EQ_INT(otaml_model_card_parse(json, len, &card), OTAML_OK);
    CHECK_EQ_INT(card.n_features, 5);
    CHECK_EQ_INT(card.n_labels, 4);
    CHECK_EQ_STR(card.labels[3], "failsoon");
    CHECK(card.n_golden >= 1);
    /* The C normalization + quantization reproduces the pipeline's int8 golden inputs bit for bit. */
    for (int g = 0; g < card.n_golden; g++) {
        int8_t q[OTAML_ML_MAX_FEATURES];
        otaml_ml_quantize(&card, card.golden_in[g], q);
        CHECK(memcmp(q, card.golden_q[g], (size_t)card.n_features) == 0);
    }
    /* A wrong normalization is visible in the quantized values. */
    otaml_model_card_t bad = card;
    bad.mean[0] += 5.0f;
    int8_t q[OTAML_ML_MAX_FEATURES];
    otaml_ml_quantize(&bad, bad.golden_in[0], q);
    CHECK(memcmp(q, card.golden_q[0], (size_t)card.n_features) != 0);
    CHECK_EQ_INT(otaml_model_card_parse("{\"name\": 1}", 11, &bad), OTAML_ERR_PARSE);

    /* The card names its model's length and digest; a card without them, or with a digest that is not
     * 64 lowercase hex digits, is refused. */
    char model_path[1024];
    snprintf(model_path, sizeof(model_path), "%s/firmware/model/amp_health.tflite", OTAML_REPO_ROOT);
    size_t model_len;
    uint8_t *model = (uint8_t *)test_read_file(model_path, &model_len), digest[32];
    otaml_sha256(model, model_len, digest);
    CHECK_EQ_INT(card.tflite_bytes, model_len);
    CHECK(memcmp(card.sha256, digest, 32) == 0);
    const char *edits[][2] = {{"\"sha256\"", "\"sha257\""}, {"\"tflite_bytes\"", "\"tflite_bytez\""},
                              {"\"sha256\": \"", "\"sha256\": \"A"}, {"\"sha256\": \"", "\"sha256\": \"g"},
                              {"\"tflite_bytes\": ", "\"tflite_bytes\": -"}, {"\"tflite_bytes\": ", "\"tflite_bytes\": 0.5"}};
    for (size_t e = 0; e < sizeof(edits) / sizeof(edits[0]); e++) {
        char *edited = malloc(len + 8);
        const char *at = strstr(json, edits[e][0]);
        CHECK(at != NULL);
        size_t head = (size_t)(at - json), old = strlen(edits[e][0]), neu = strlen(edits[e][1]);
        memcpy(edited, json, head);
        memcpy(edited + head, edits[e][1], neu);
        memcpy(edited + head + neu, at + old, len - head - old);
        size_t edited_len = len - old + neu;
        /* a digest with one more character is also one too long; a replaced one is not hex */
        if (strcmp(edits[e][1], "\"sha256\": \"A") == 0 || strcmp(edits[e][1], "\"sha256\": \"g") == 0) {
            memmove(edited + head + neu, edited + head + neu + 1, edited_len - head - neu - 1);
            edited_len--;
        }
        CHECK_EQ_INT(otaml_model_card_parse(edited, edited_len, &bad), OTAML_ERR_PARSE);
        free(edited);
    }

    /* The model is hashed before the interpreter sees it: bytes that are not the card's model are never
     * loaded, and the health check names the model and what differs. (Integrity failures return before
     * the port's interpreter is reached, so no TFLM worker runs here.) */
    static otaml_ml_t ml;
    char detail[160];
    model[model_len / 2] ^= 0x01; /* one bit in the middle of the weights */
    CHECK_EQ_INT(otaml_ml_init(&ml, &card, model, model_len), OTAML_ERR_HASH);
    CHECK(!ml.loaded);
    CHECK(!otaml_ml_health_check(&ml, detail, sizeof(detail)));
    CHECK(strncmp(detail, "ml: model amp_health/1 sha256 ", 30) == 0);
    CHECK(strstr(detail, "... differs from its card's ") != NULL);
    model[model_len / 2] ^= 0x01;
    CHECK_EQ_INT(otaml_ml_init(&ml, &card, model, model_len - 1), OTAML_ERR_SIZE);
    CHECK(!otaml_ml_health_check(&ml, detail, sizeof(detail)));
    CHECK_EQ_STR(detail, "ml: model amp_health/1 is 9207 bytes, its card says 9208");
    CHECK_EQ_INT(otaml_ml_init(&ml, &card, NULL, 0), OTAML_ERR_SIZE);
    free(model);
    free(json);

    snprintf(path, sizeof(path), "%s/firmware/model/samples.csv", OTAML_REPO_ROOT);
    char *csv = test_read_file(path, &len);
    otaml_samples_t s;
    CHECK_EQ_INT(otaml_samples_parse(csv, len, 5, &s), OTAML_OK);
    CHECK_EQ_INT(s.count, 256);
    CHECK(s.values[0] > 100.0f); /* plate voltage of the first sample */
    otaml_samples_free(&s);
    CHECK_EQ_INT(otaml_samples_parse("a,b\n", 4, 5, &s), OTAML_ERR_PARSE);
    free(csv);
    return test_summary();
}
