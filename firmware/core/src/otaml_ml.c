#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "otaml_mbedtls_compat.h"
#include "otaml_ml.h"

static const char *TAG = "otaml_ml";

/* ---- model card ---- */

static bool prv_floats(const cJSON *arr, float *out, int n)
{
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) return false;
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(arr, i);
        if (!cJSON_IsNumber(v)) return false;
        out[i] = (float)v->valuedouble; /* the card holds float32 values printed exactly */
    }
    return true;
}

static bool prv_int8s(const cJSON *arr, int8_t *out, int n)
{
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) return false;
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(arr, i);
        if (!cJSON_IsNumber(v) || v->valuedouble < -128 || v->valuedouble > 127) return false;
        out[i] = (int8_t)v->valuedouble;
    }
    return true;
}

static bool prv_sha256_hex(const cJSON *v, uint8_t out[32])
{
    if (!cJSON_IsString(v) || strlen(v->valuestring) != 64) return false;
    for (int i = 0; i < 32; i++) {
        unsigned byte = 0;
        for (int k = 0; k < 2; k++) {
            char ch = v->valuestring[2 * i + k];
            unsigned nib = (ch >= '0' && ch <= '9') ? (unsigned)(ch - '0') : (ch >= 'a' && ch <= 'f') ? (unsigned)(ch - 'a' + 10) : 16u;
            if (nib > 15) return false;
            byte = byte << 4 | nib;
        }
        out[i] = (uint8_t)byte;
    }
    return true;
}

static otaml_status_t prv_card_fail(const char *what)
{
    OTAML_LOGE(TAG, "model card: %s", what);
    return OTAML_ERR_PARSE;
}

static otaml_status_t prv_card(const cJSON *root, otaml_model_card_t *c)
{
    const cJSON *name = cJSON_GetObjectItem(root, "name"), *ver = cJSON_GetObjectItem(root, "model_version");
    if (!cJSON_IsString(name) || !cJSON_IsString(ver)) return prv_card_fail("name/model_version");
    snprintf(c->name, sizeof(c->name), "%s", name->valuestring);
    snprintf(c->model_version, sizeof(c->model_version), "%s", ver->valuestring);

    const cJSON *labels = cJSON_GetObjectItem(root, "labels"), *features = cJSON_GetObjectItem(root, "features");
    c->n_labels = cJSON_GetArraySize(labels);
    c->n_features = cJSON_GetArraySize(features);
    if (c->n_labels < 1 || c->n_labels > OTAML_ML_MAX_LABELS || c->n_features < 1 || c->n_features > OTAML_ML_MAX_FEATURES) {
        return prv_card_fail("labels/features count");
    }
    for (int i = 0; i < c->n_labels; i++) {
        const cJSON *l = cJSON_GetArrayItem(labels, i);
        if (!cJSON_IsString(l)) return prv_card_fail("labels");
        snprintf(c->labels[i], sizeof(c->labels[i]), "%s", l->valuestring);
    }
    const cJSON *norm = cJSON_GetObjectItem(root, "normalization");
    if (!prv_floats(cJSON_GetObjectItem(norm, "mean"), c->mean, c->n_features) ||
        !prv_floats(cJSON_GetObjectItem(norm, "std"), c->std, c->n_features)) {
        return prv_card_fail("normalization");
    }
    for (int i = 0; i < c->n_features; i++) {
        if (!(c->std[i] > 0)) return prv_card_fail("normalization std must be positive");
    }
    const cJSON *in = cJSON_GetObjectItem(root, "input");
    const cJSON *scale = cJSON_GetObjectItem(in, "scale"), *zp = cJSON_GetObjectItem(in, "zero_point");
    if (!cJSON_IsNumber(scale) || !(scale->valuedouble > 0) || !cJSON_IsNumber(zp)) return prv_card_fail("input quantization");
    c->in_scale = (float)scale->valuedouble;
    c->in_zero_point = (int)zp->valuedouble;
    const cJSON *arena = cJSON_GetObjectItem(root, "arena_bytes");
    if (!cJSON_IsNumber(arena) || arena->valuedouble <= 0) return prv_card_fail("arena_bytes");
    c->arena_bytes = (size_t)arena->valuedouble;
    const cJSON *bytes = cJSON_GetObjectItem(root, "tflite_bytes");
    if (!cJSON_IsNumber(bytes) || !(bytes->valuedouble >= 1 && bytes->valuedouble <= (double)UINT32_MAX) ||
        bytes->valuedouble != (double)(uint32_t)bytes->valuedouble) {
        return prv_card_fail("tflite_bytes");
    }
    c->tflite_bytes = (uint32_t)bytes->valuedouble;
    if (!prv_sha256_hex(cJSON_GetObjectItem(root, "sha256"), c->sha256)) return prv_card_fail("sha256");

    const cJSON *golden = cJSON_GetObjectItem(root, "golden"), *g;
    c->n_golden = 0;
    cJSON_ArrayForEach(g, golden)
    {
        if (c->n_golden == OTAML_ML_MAX_GOLDEN) break;
        int k = c->n_golden;
        if (!prv_floats(cJSON_GetObjectItem(g, "input"), c->golden_in[k], c->n_features) ||
            !prv_int8s(cJSON_GetObjectItem(g, "input_int8"), c->golden_q[k], c->n_features) ||
            !prv_int8s(cJSON_GetObjectItem(g, "output_int8"), c->golden_out[k], c->n_labels)) {
            return prv_card_fail("golden");
        }
        c->n_golden++;
    }
    if (c->n_golden == 0) return prv_card_fail("no golden inputs");
    return OTAML_OK;
}

otaml_status_t otaml_model_card_parse(const char *json, size_t len, otaml_model_card_t *out)
{
    memset(out, 0, sizeof(*out));
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (root == NULL) return prv_card_fail("not JSON");
    otaml_status_t st = prv_card(root, out);
    cJSON_Delete(root);
    return st;
}

/* ---- inference ---- */

void otaml_ml_quantize(const otaml_model_card_t *c, const float *x, int8_t *q)
{
    for (int i = 0; i < c->n_features; i++) {
        float v = (x[i] - c->mean[i]) / c->std[i];
        float r = floorf(v / c->in_scale + 0.5f) + (float)c->in_zero_point;
        q[i] = (int8_t)(r < -128.0f ? -128 : (r > 127.0f ? 127 : (int)r));
    }
}

/* "ml: model amp_health/1 ..." naming the first difference between the bytes and the card; "" if none. */
static bool prv_integrity(const otaml_ml_t *ml, char *detail, size_t size)
{
    const otaml_model_card_t *c = &ml->card;
    char got[17], want[17];
    if (ml->model_len != c->tflite_bytes) {
        snprintf(detail, size, "ml: model %s is %u bytes, its card says %u", ml->model_id, (unsigned)ml->model_len,
                 (unsigned)c->tflite_bytes);
        return false;
    }
    if (memcmp(ml->model_sha256, c->sha256, 32) != 0) {
        for (int i = 0; i < 8; i++) {
            snprintf(got + 2 * i, 3, "%02x", ml->model_sha256[i]);
            snprintf(want + 2 * i, 3, "%02x", c->sha256[i]);
        }
        snprintf(detail, size, "ml: model %s sha256 %s... differs from its card's %s...", ml->model_id, got, want);
        return false;
    }
    return true;
}

otaml_status_t otaml_ml_init(otaml_ml_t *ml, const otaml_model_card_t *card, const uint8_t *model, size_t len)
{
    memset(ml, 0, sizeof(*ml));
    atomic_store(&ml->alert_threshold, -1);
    ml->card = *card;
    snprintf(ml->model_id, sizeof(ml->model_id), "%s/%s", card->name, card->model_version);
    ml->model_len = model != NULL ? len : 0;
    static const uint8_t nothing[1] = {0};
    otaml_sha256(model != NULL ? model : nothing, ml->model_len, ml->model_sha256);
    char why[128];
    if (!prv_integrity(ml, why, sizeof(why))) {
        OTAML_LOGE(TAG, "%s: not loaded", why);
        return ml->model_len != card->tflite_bytes ? OTAML_ERR_SIZE : OTAML_ERR_HASH;
    }
    size_t n_in = 0, n_out = 0;
    otaml_status_t st = otaml_port_ml_load(model, len, card->arena_bytes, &n_in, &n_out);
    if (st != OTAML_OK) {
        OTAML_LOGE(TAG, "model %s does not load: %s", ml->model_id, otaml_status_to_str(st));
        return st;
    }
    if (n_in != (size_t)card->n_features || n_out != (size_t)card->n_labels) {
        OTAML_LOGE(TAG, "model %s has %u inputs and %u outputs, the card says %d and %d", ml->model_id,
                   (unsigned)n_in, (unsigned)n_out, card->n_features, card->n_labels);
        return OTAML_ERR_PARSE;
    }
    ml->loaded = true;
    OTAML_LOGI(TAG, "model %s loaded (%u-byte model, %u-byte arena)", ml->model_id, (unsigned)len, (unsigned)card->arena_bytes);
    return OTAML_OK;
}

bool otaml_ml_health_check(otaml_ml_t *ml, char *detail, size_t size)
{
    const otaml_model_card_t *c = &ml->card;
    if (!prv_integrity(ml, detail, size)) return false;
    if (!ml->loaded) {
        snprintf(detail, size, "ml: model %s did not load", ml->model_id);
        return false;
    }
    for (int g = 0; g < c->n_golden; g++) {
        int8_t q[OTAML_ML_MAX_FEATURES], out[OTAML_ML_MAX_LABELS];
        otaml_ml_quantize(c, c->golden_in[g], q);
        if (memcmp(q, c->golden_q[g], (size_t)c->n_features) != 0) {
            snprintf(detail, size, "ml: golden %d normalizes to other int8 values than the card's (normalization)", g);
            return false;
        }
        if (otaml_port_ml_invoke(q, (size_t)c->n_features, out, (size_t)c->n_labels) != OTAML_OK) {
            snprintf(detail, size, "ml: golden %d: invoke failed", g);
            return false;
        }
        if (memcmp(out, c->golden_out[g], (size_t)c->n_labels) != 0) {
            snprintf(detail, size, "ml: golden %d output differs from the card (model)", g);
            return false;
        }
    }
    char digest[17];
    for (int i = 0; i < 8; i++) snprintf(digest + 2 * i, 3, "%02x", ml->model_sha256[i]);
    snprintf(detail, size, "ml: model %s (%u bytes, sha256 %s...) matches its card; %d golden inputs pass", ml->model_id,
             (unsigned)ml->model_len, digest, c->n_golden);
    return true;
}

int otaml_ml_step(otaml_ml_t *ml, const float *sample) { return otaml_ml_step_scores(ml, sample, NULL, NULL, NULL); }

int otaml_ml_step_scores(otaml_ml_t *ml, const float *sample, int8_t *scores, uint32_t *seq, uint32_t *latency_us)
{
    if (!ml->loaded) return -1;
    const otaml_model_card_t *c = &ml->card;
    int8_t q[OTAML_ML_MAX_FEATURES], out[OTAML_ML_MAX_LABELS];
    otaml_ml_quantize(c, sample, q);
    uint64_t t0 = otaml_port_uptime_us();
    if (otaml_port_ml_invoke(q, (size_t)c->n_features, out, (size_t)c->n_labels) != OTAML_OK) return -1;
    unsigned latency = (unsigned)(otaml_port_uptime_us() - t0);
    atomic_store(&ml->last_latency_us, latency);
    int best = 0;
    for (int i = 1; i < c->n_labels; i++) {
        if (out[i] > out[best]) best = i;
    }
    atomic_fetch_add(&ml->counts[best], 1);
    unsigned n = atomic_fetch_add(&ml->inferences, 1);
    if (scores != NULL) memcpy(scores, out, (size_t)c->n_labels);
    if (seq != NULL) *seq = n;
    if (latency_us != NULL) *latency_us = latency;
    int threshold = atomic_load(&ml->alert_threshold);
    if (best != 0 && threshold >= 0 && (out[best] + 128) * 100 >= threshold * 256) {
        atomic_fetch_add(&ml->alerts, 1);
    }
    return best;
}

size_t otaml_ml_checkin_headers(void *ctx, otaml_header_t *headers, size_t max)
{
    otaml_ml_t *ml = ctx;
    if (!ml->loaded || max < 3) return 0;
    size_t pos = 0;
    ml->header_buf[1][0] = '\0';
    for (int i = 0; i < ml->card.n_labels; i++) {
        int n = snprintf(ml->header_buf[1] + pos, sizeof(ml->header_buf[1]) - pos, "%s%s=%u", i ? "," : "",
                         ml->card.labels[i], atomic_load(&ml->counts[i]));
        if (n < 0 || (size_t)n >= sizeof(ml->header_buf[1]) - pos) break;
        pos += (size_t)n;
    }
    if (atomic_load(&ml->alert_threshold) >= 0) {
        snprintf(ml->header_buf[1] + pos, sizeof(ml->header_buf[1]) - pos, ",alerts=%u", atomic_load(&ml->alerts));
    }
    snprintf(ml->header_buf[0], sizeof(ml->header_buf[0]), "%s", ml->model_id);
    snprintf(ml->header_buf[2], sizeof(ml->header_buf[2]), "%u", atomic_load(&ml->last_latency_us));
    headers[0] = (otaml_header_t){OTAML_H_MODEL, ml->header_buf[0]};
    headers[1] = (otaml_header_t){OTAML_H_ML_COUNTERS, ml->header_buf[1]};
    headers[2] = (otaml_header_t){OTAML_H_ML_LATENCY_US, ml->header_buf[2]};
    return 3;
}

/* ---- samples ---- */

otaml_status_t otaml_samples_parse(const char *csv, size_t len, size_t n_features, otaml_samples_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += csv[i] == '\n';
    out->values = calloc(lines + 1, n_features * sizeof(float));
    if (out->values == NULL) return OTAML_ERR_NO_MEM;
    out->n_features = n_features;
    const char *p = memchr(csv, '\n', len); /* skip the header row */
    const char *end = csv + len;
    while (p != NULL && ++p < end) {
        float *row = out->values + out->count * n_features;
        size_t f = 0;
        for (; f < n_features && p < end; f++) {
            char *next;
            row[f] = strtof(p, &next);
            if (next == p) break;
            p = next + (next < end && *next == ',');
        }
        if (f == n_features) out->count++;
        p = memchr(p, '\n', (size_t)(end - p));
    }
    if (out->count == 0) {
        otaml_samples_free(out);
        return OTAML_ERR_PARSE;
    }
    return OTAML_OK;
}

void otaml_samples_free(otaml_samples_t *s)
{
    free(s->values);
    memset(s, 0, sizeof(*s));
}
