#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "sdkconfig.h"

#include "ml_task.h"
#include "mqtt_task.h"

static const char *TAG = "otaml_ml_task";

extern const uint8_t model_tflite_start[] asm("_binary_amp_health_tflite_start");
extern const uint8_t model_tflite_end[] asm("_binary_amp_health_tflite_end");
extern const char model_card_start[] asm("_binary_amp_health_card_json_start");
extern const char model_card_end[] asm("_binary_amp_health_card_json_end");
static otaml_ml_t s_ml;
/* Milliseconds between inferences: Kconfig's default until the server's desired config sets it. */
static atomic_int s_interval_ms = CONFIG_OTAML_ML_INTERVAL_MS;

esp_err_t ml_task_init(void)
{
    otaml_model_card_t card;
    /* EMBED_TXTFILES appends a NUL that is not part of the JSON or CSV. */
    if (otaml_model_card_parse(model_card_start, (size_t)(model_card_end - model_card_start) - 1, &card) != OTAML_OK) {
        return ESP_ERR_INVALID_STATE;
    }
    if (otaml_ml_init(&s_ml, &card, model_tflite_start, (size_t)(model_tflite_end - model_tflite_start)) != OTAML_OK) {
        return ESP_ERR_INVALID_STATE;
    }
    float probe[OTAML_ML_MAX_FEATURES];
    if (otaml_port_sensor_read(probe, (size_t)card.n_features) != OTAML_OK) {
        ESP_LOGE(TAG, "the sensor port gives no %d-value readings", card.n_features);
        return ESP_ERR_INVALID_STATE;
    }
    return ESP_OK;
}

bool ml_health_check(char *detail, size_t detail_size) { return otaml_ml_health_check(&s_ml, detail, detail_size); }

otaml_ml_t *ml_task_state(void) { return &s_ml; }

bool ml_task_apply_config(void *ctx, const otaml_config_t *config)
{
    (void)ctx;
    if (config->ml_interval_ms > 0) atomic_store(&s_interval_ms, config->ml_interval_ms);
    else atomic_store(&s_interval_ms, CONFIG_OTAML_ML_INTERVAL_MS);
    atomic_store(&s_ml.alert_threshold, config->alert_threshold);
    mqtt_task_configure(config); /* posts the broker settings; the publisher task (re)connects */
    ESP_LOGI(TAG, "config revision %llu: inferring every %d ms, alert threshold %d%%",
             (unsigned long long)config->revision, atomic_load(&s_interval_ms), (int)config->alert_threshold);
    return true;
}

static void prv_ml_task(void *arg)
{
    (void)arg;
    TickType_t last = xTaskGetTickCount();
    float sample[OTAML_ML_MAX_FEATURES];
    ESP_LOGI(TAG, "%s inferring every %d ms", s_ml.model_id, atomic_load(&s_interval_ms));
    for (;;) {
        if (otaml_port_sensor_read(sample, (size_t)s_ml.card.n_features) != OTAML_OK) {
            ESP_LOGW(TAG, "sensor read failed");
            vTaskDelayUntil(&last, pdMS_TO_TICKS(atomic_load(&s_interval_ms)));
            continue;
        }
        otaml_prediction_t p = {0};
        int label = otaml_ml_step_scores(&s_ml, sample, p.scores, &p.seq, &p.latency_us);
        if (label < 0) {
            ESP_LOGW(TAG, "inference failed");
        } else {
            ESP_LOGD(TAG, "%s (%u us)", s_ml.card.labels[label], (unsigned)p.latency_us);
            p.label = (int8_t)label;
            p.uptime_ms = otaml_port_uptime_us() / 1000u;
            mqtt_task_offer(&p); /* a copy into a bounded queue: never waits for the broker */
        }
        vTaskDelayUntil(&last, pdMS_TO_TICKS(atomic_load(&s_interval_ms)));
    }
}

esp_err_t ml_task_start(void)
{
    if (!s_ml.loaded) return ESP_ERR_INVALID_STATE;
    BaseType_t ok = xTaskCreate(prv_ml_task, "otaml_ml", CONFIG_OTAML_ML_TASK_STACK, NULL,
                                CONFIG_OTAML_ML_TASK_PRIORITY, NULL);
    return ok == pdPASS ? ESP_OK : ESP_ERR_NO_MEM;
}
