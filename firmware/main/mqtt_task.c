#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "sdkconfig.h"

#include "mqtt_task.h"

#if CONFIG_OTAML_MQTT
#ifdef CONFIG_OTAML_MQTT_DEFAULT_ON /* a bool option set to n is not defined at all */
#define DEFAULT_ON true
#else
#define DEFAULT_ON false
#endif

static const char *TAG = "otaml_mqtt_task";
static otaml_mqtt_t s_mqtt;
static bool s_ready;

esp_err_t mqtt_task_init(const otaml_ml_t *ml, const char *device_id)
{
    otaml_status_t st = otaml_mqtt_init(&s_mqtt, ml, device_id, CONFIG_OTAML_MQTT_QUEUE_LEN, DEFAULT_ON,
                                        CONFIG_OTAML_MQTT_BROKER_URL, CONFIG_OTAML_MQTT_TOPIC_PREFIX);
    s_ready = st == OTAML_OK;
    return s_ready ? ESP_OK : ESP_ERR_INVALID_ARG;
}

void mqtt_task_configure(const otaml_config_t *config)
{
    if (s_ready) otaml_mqtt_configure(&s_mqtt, config);
}

void mqtt_task_offer(const otaml_prediction_t *prediction)
{
    if (s_ready) otaml_mqtt_offer(&s_mqtt, prediction);
}

static void prv_mqtt_task(void *arg)
{
    (void)arg;
    for (;;) {
        uint32_t wait_ms = otaml_mqtt_step(&s_mqtt);
        vTaskDelay(wait_ms ? pdMS_TO_TICKS(wait_ms) : 1); /* yield even while draining */
    }
}

esp_err_t mqtt_task_start(void)
{
    if (!s_ready) return ESP_ERR_INVALID_STATE;
    BaseType_t ok = xTaskCreate(prv_mqtt_task, "otaml_mqtt", CONFIG_OTAML_MQTT_TASK_STACK, NULL,
                                CONFIG_OTAML_MQTT_TASK_PRIORITY, NULL);
    if (ok != pdPASS) return ESP_ERR_NO_MEM;
    ESP_LOGI(TAG, "publisher started (queue of %d)", CONFIG_OTAML_MQTT_QUEUE_LEN);
    return ESP_OK;
}

#else /* CONFIG_OTAML_MQTT off: nothing is queued or published */

esp_err_t mqtt_task_init(const otaml_ml_t *ml, const char *device_id)
{
    (void)ml, (void)device_id;
    return ESP_OK;
}

void mqtt_task_configure(const otaml_config_t *config) { (void)config; }

void mqtt_task_offer(const otaml_prediction_t *prediction) { (void)prediction; }

esp_err_t mqtt_task_start(void) { return ESP_OK; }

#endif
