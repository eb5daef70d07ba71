/* The model card and quantization math the firmware shares with the Python pipeline. */
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
