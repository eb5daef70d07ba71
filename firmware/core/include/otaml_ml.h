/*
 * The on-device model around the interpreter: the model card (manifests nothing: it ships inside the
 * signed image), the model's integrity against its card (length and SHA-256), input normalization and
 * quantization, the golden health check, per-class counters reported with check-ins. The interpreter itself is behind the port (TFLM on the device, the TFLM
 * wheel in a worker process on the host).
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otaml_port.h"
#include "otaml_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTAML_ML_MAX_FEATURES 8
#define OTAML_ML_MAX_LABELS 8
#define OTAML_ML_MAX_GOLDEN 4

typedef struct {
    char name[32];
    char model_version[16];
    int n_features;
    int n_labels;
    char labels[OTAML_ML_MAX_LABELS][16];
    float mean[OTAML_ML_MAX_FEATURES];
    float std[OTAML_ML_MAX_FEATURES];
    float in_scale;
    int in_zero_point;
    size_t arena_bytes;
    uint32_t tflite_bytes; /* the model's length and SHA-256: what the card was made for */
    uint8_t sha256[32];
    int n_golden;
    float golden_in[OTAML_ML_MAX_GOLDEN][OTAML_ML_MAX_FEATURES];
    int8_t golden_q[OTAML_ML_MAX_GOLDEN][OTAML_ML_MAX_FEATURES];
    int8_t golden_out[OTAML_ML_MAX_GOLDEN][OTAML_ML_MAX_LABELS];
} otaml_model_card_t;

/** Parse a model card (firmware/model/<name>.card.json); name, model_version, tflite_bytes, sha256 (64
 * lowercase hex digits), labels, features, normalization, input quantization, arena_bytes and at least
 * one golden input are required. @return OTAML_OK, OTAML_ERR_PARSE, OTAML_ERR_NO_MEM. */
otaml_status_t otaml_model_card_parse(const char *json, size_t len, otaml_model_card_t *out);

/** Normalize with the card's mean/std and quantize to int8, in float32 exactly as the Python
 * pipeline does (otaml.ml.package.quantize_input): q = floor(v / scale + 0.5) + zero_point, clamped. */
void otaml_ml_quantize(const otaml_model_card_t *card, const float *x, int8_t *q);

typedef struct {
    otaml_model_card_t card;
    bool loaded;
    char model_id[48];             /* "name/version", the X-Otaml-Model check-in header */
    size_t model_len;              /* the model bytes the image carries, as found */
    uint8_t model_sha256[32];      /* and their SHA-256, compared with the card's */
    atomic_uint counts[OTAML_ML_MAX_LABELS];
    atomic_uint inferences;
    atomic_uint last_latency_us;
    atomic_int alert_threshold;    /* percent; -1: alerts off (desired config alert_threshold) */
    atomic_uint alerts;            /* inferences of a non-healthy class at or above the threshold */
    char header_buf[3][160];       /* check-in header values, owned here */
} otaml_ml_t;

/**
 * Hash the model, and only if its length and SHA-256 equal the card's, load it into the interpreter
 * with the card's arena (a corrupted flatbuffer is never parsed). model may be NULL with len 0 (the
 * image carries a card but no model).
 * @return OTAML_OK; OTAML_ERR_SIZE / OTAML_ERR_HASH (the bytes are not the model the card describes:
 *         not loaded); OTAML_ERR_PARSE (interpreter refused the model, or its input/output sizes differ
 *         from the card); OTAML_ERR_NO_MEM (arena).
 */
otaml_status_t otaml_ml_init(otaml_ml_t *ml, const otaml_model_card_t *card, const uint8_t *model, size_t len);

/** The rollback gate's ML check, in order: the model's length and SHA-256 equal the card's, the model
 * loaded, and every golden input normalizes, quantizes and infers to exactly the card's values. Says
 * which step failed in detail, naming the model ("ml: model amp_health/1 sha256 3f2a... differs from its
 * card's 9c1b..."); on success the detail names the length and digest that were checked. */
bool otaml_ml_health_check(otaml_ml_t *ml, char *detail, size_t detail_size);

/** One inference on raw sensor values; counts the predicted class, and an alert when a class other
 * than the card's first (healthy) wins with at least alert_threshold percent confidence (int8 softmax
 * outputs use TFLite's fixed scale 1/256 and zero point -128). @return the class index, or -1. */
int otaml_ml_step(otaml_ml_t *ml, const float *sample);

/** otaml_ml_step, also handing out what the MQTT stream publishes: the model's int8 outputs (card.n_labels
 * of them, into scores), this inference's number since boot (seq) and its latency. Any may be NULL. */
int otaml_ml_step_scores(otaml_ml_t *ml, const float *sample, int8_t *scores, uint32_t *seq, uint32_t *latency_us);

/** Check-in headers: X-Otaml-Model, X-Otaml-Ml-Counters ("healthy=12,unstable=0,...", plus
 * "alerts=N" while alerts are on),
 * X-Otaml-Ml-Latency-Us. Matches otaml_checkin_extra_fn (ctx is the otaml_ml_t). */
size_t otaml_ml_checkin_headers(void *ctx, otaml_header_t *headers, size_t max);

/* ---- recorded sensor samples (the sensor port replays them) ---- */

typedef struct {
    size_t count;
    size_t n_features;
    float *values; /* count x n_features */
} otaml_samples_t;

/** Parse a CSV with a header row and n_features numeric columns first. @return OTAML_OK, OTAML_ERR_PARSE, OTAML_ERR_NO_MEM. */
otaml_status_t otaml_samples_parse(const char *csv, size_t len, size_t n_features, otaml_samples_t *out);
void otaml_samples_free(otaml_samples_t *s);

#ifdef __cplusplus
}
#endif
