#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "sdkconfig.h"

#include "ota_task.h"

static const char *TAG = "otaml_ota_task";

static void prv_ota_task(void *arg)
{
    otaml_agent_t *agent = arg;
    for (;;) {
        otaml_poll_outcome_t outcome;
        otaml_status_t st = otaml_agent_poll(agent, &outcome); /* reboots after an install */
        if (st != OTAML_OK) ESP_LOGW(TAG, "poll: %s", otaml_status_to_str(st));
        vTaskDelay(pdMS_TO_TICKS(otaml_agent_next_delay_ms(agent)));
    }
}

esp_err_t ota_task_start(otaml_agent_t *agent)
{
    /* Below the ML task's priority: downloads and flash writes yield to inference. */
    BaseType_t ok = xTaskCreate(prv_ota_task, "otaml_ota", CONFIG_OTAML_OTA_TASK_STACK, agent,
                                CONFIG_OTAML_OTA_TASK_PRIORITY, NULL);
    return ok == pdPASS ? ESP_OK : ESP_ERR_NO_MEM;
}
