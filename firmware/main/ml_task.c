#include <stdio.h>

#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "sdkconfig.h"

#include "ml_task.h"

static const char *TAG = "otaml_ml";

bool ml_health_check(char *detail, size_t detail_size)
{
    /* No model is linked into this build yet: nothing can fail to load. */
    snprintf(detail, detail_size, "no model in this build");
    return true;
}

static void prv_ml_task(void *arg)
{
    (void)arg;
    TickType_t last = xTaskGetTickCount();
    ESP_LOGI(TAG, "ML task running every %d ms", CONFIG_OTAML_ML_INTERVAL_MS);
    for (;;) {
        vTaskDelayUntil(&last, pdMS_TO_TICKS(CONFIG_OTAML_ML_INTERVAL_MS));
    }
}

esp_err_t ml_task_start(void)
{
    BaseType_t ok = xTaskCreate(prv_ml_task, "otaml_ml", CONFIG_OTAML_ML_TASK_STACK, NULL,
                                CONFIG_OTAML_ML_TASK_PRIORITY, NULL);
    return ok == pdPASS ? ESP_OK : ESP_ERR_NO_MEM;
}
