/*
 * otaml-sim: an ESP32 running the otaml firmware, on the host. Same core as the device, POSIX port.
 *
 *   otaml-sim --flash FILE flash IMAGE.bin      first USB flash: partition table, image in ota_0, otadata reset
 *   otaml-sim --flash FILE run --server URL --device-id ID [--token T] [options]
 *   otaml-sim --flash FILE info                 JSON: booted slot, each slot's state and app version, NVS
 *
 * Simulation directives are strings inside an image (firmware/README.md, "otaml-sim"), so a test can publish a
 * build that "fails its self-test" or "crashes before confirming" as a genuine, signed image.
 */
#define _GNU_SOURCE /* memmem, mallinfo2 */
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "otaml_agent.h"
#include "otaml_sim_config.h"
#include "otaml_manifest.h"
#include "otaml_ml.h"
#include "otaml_mqtt.h"
#include "otaml_port.h"
#include "sim_flash.h"
#include "sim_image.h"
#include "sim_nvs.h"
#include "sim_port.h"
#include "otaml_mbedtls_compat.h"

static const char *TAG = "otaml_sim";

#define DIRECTIVE_SELFTEST_FAIL "OTAML-SIM:selftest=fail"
#define DIRECTIVE_CRASH_ON_BOOT "OTAML-SIM:crash-on-boot"
#define DIRECTIVE_LOSE_TOKEN "OTAML-SIM:lose-token"
/* The model ships inside the image, linked in as on the device (ml_task.c: _binary_amp_health_tflite_start
 * and friends), resolved through the image's simulator symbol table (sim_image.h). */
#define SYMBOL_MODEL "amp_health_tflite"
#define SYMBOL_CARD "amp_health_card_json"

typedef struct {
    const char *flash;
    const char *partitions;
    const char *nvs;
    const char *server;
    const char *device_id;
    const char *token;
    const char *channel;
    const char *chip;
    long polls;
    long interval_ms;
    long download_rate;
    bool no_trusted_time;
    bool verbose;
    bool heap_report;
    long ml_interval_ms;
    long confirm_window_s;
    long confirm_backoff_min_ms;
    long confirm_backoff_max_ms;
    long unreachable_retakes;
    long ip_after_ms;
    long rssi;
    long progress_min_bytes;
    const char *mqtt_url;
    const char *mqtt_user;
    const char *mqtt_pass;
    long mqtt_queue;
} options_t;

static int usage(void)
{
    fprintf(stderr,
            "usage: otaml-sim --flash FILE flash IMAGE.bin [--partitions CSV] [--nvs NVS.bin]\n"
            "       otaml-sim --flash FILE run [--server URL] [--device-id ID] [--token T] [--channel C]\n"
            "                 [--chip esp32] [--polls N] [--interval-ms MS] [--download-rate BYTES_PER_S]\n"
            "                 [--no-trusted-time] [--verbose] [--heap-report] [--ml-interval-ms MS]\n"
            "                 [--confirm-window-s S] [--confirm-backoff-min-ms MS] [--confirm-backoff-max-ms MS]\n"
            "                 [--unreachable-retakes N] [--ip-after-ms MS] [--rssi DBM] [--progress-min-bytes N]\n"
            "                 [--mqtt-url URL] [--mqtt-user U] [--mqtt-pass P] [--mqtt-queue N]\n"
            "       otaml-sim --flash FILE info\n");
    return 2;
}

/* ---- the ML task ---- */

typedef struct {
    int slot;
    bool has_model;
    bool has_sensors;
    otaml_ml_t ml;
    atomic_long interval_ms;
    atomic_bool stop;
    pthread_t thread;
    otaml_mqtt_t mqtt; /* predictions to MQTT: a device built with CONFIG_OTAML_MQTT */
    bool mqtt_ready;
    atomic_bool mqtt_stop;
    pthread_t mqtt_thread;
} sim_app_t;

static void *prv_ml_task(void *arg)
{
    sim_app_t *app = arg;
    float sample[OTAML_ML_MAX_FEATURES];
    while (!atomic_load(&app->stop)) {
        otaml_prediction_t p = {0};
        if (otaml_port_sensor_read(sample, (size_t)app->ml.card.n_features) == OTAML_OK) {
            int label = otaml_ml_step_scores(&app->ml, sample, p.scores, &p.seq, &p.latency_us);
            if (label >= 0 && app->mqtt_ready) {
                p.label = (int8_t)label;
                p.uptime_ms = otaml_port_uptime_us() / 1000u;
                otaml_mqtt_offer(&app->mqtt, &p); /* never waits for the broker */
            }
        }
        usleep((useconds_t)atomic_load(&app->interval_ms) * 1000u);
    }
    return NULL;
}

/* Desired configuration from the server, as the device's ML task takes it. */
static bool prv_config_apply(void *ctx, const otaml_config_t *config)
{
    sim_app_t *app = ctx;
    if (config->ml_interval_ms > 0) atomic_store(&app->interval_ms, config->ml_interval_ms);
    atomic_store(&app->ml.alert_threshold, config->alert_threshold);
    if (app->mqtt_ready) otaml_mqtt_configure(&app->mqtt, config);
    OTAML_LOGI(TAG, "config revision %llu: ML every %ld ms, alert threshold %d%%", (unsigned long long)config->revision,
               atomic_load(&app->interval_ms), (int)config->alert_threshold);
    return true;
}

/* Load the model and card the running image carries, as ml_task_init does on the device; the sensor
 * port replays recorded samples. */
static void prv_ml_setup(sim_app_t *app)
{
    size_t len = 0;
    uint8_t *img = sim_image_bytes(app->slot, &len);
    uint32_t model_len = 0, card_len = 0;
    const uint8_t *model = img ? sim_image_symbol(img, len, SYMBOL_MODEL, &model_len) : NULL;
    const uint8_t *card_json = img ? sim_image_symbol(img, len, SYMBOL_CARD, &card_len) : NULL;
    if (model == NULL && card_json == NULL) {
        OTAML_LOGI(TAG, "this image carries no model: ML task not started");
        free(img);
        return;
    }
    app->has_model = true;
    otaml_model_card_t card;
    if (card_json != NULL && otaml_model_card_parse((const char *)card_json, card_len, &card) == OTAML_OK) {
        otaml_ml_init(&app->ml, &card, model, model_len);
    } else {
        snprintf(app->ml.model_id, sizeof(app->ml.model_id), "(no usable model card)");
    }
    free(img);
    if (!app->ml.loaded) return;
    app->has_sensors = sim_sensor_load((size_t)app->ml.card.n_features) == OTAML_OK;
    if (!app->has_sensors) OTAML_LOGE(TAG, "no sensor samples at %s: ML task not started", OTAML_DEFAULT_SAMPLES_CSV);
}

/* The publisher task: below the ML and OTA work, it alone waits on the broker. */
static void *prv_mqtt_task(void *arg)
{
    sim_app_t *app = arg;
    while (!atomic_load(&app->mqtt_stop)) {
        uint32_t wait_ms = otaml_mqtt_step(&app->mqtt);
        usleep((useconds_t)(wait_ms ? wait_ms : 1) * 1000u);
    }
    /* shutting down: what the queue still holds goes out if the broker is there (at most 2 s) */
    for (int i = 0; i < 200 && otaml_pred_queue_len(&app->mqtt.queue) > 0 && otaml_port_mqtt_connected(); i++) {
        otaml_mqtt_step(&app->mqtt);
        usleep(10000);
    }
    otaml_mqtt_stop(&app->mqtt);
    return NULL;
}

static bool prv_selftest(void *ctx, char *detail, size_t size)
{
    sim_app_t *app = ctx;
    if (sim_image_has(app->slot, DIRECTIVE_SELFTEST_FAIL)) {
        snprintf(detail, size, "simulated self-test failure (%s)", DIRECTIVE_SELFTEST_FAIL);
        return false;
    }
    if (app->has_model) return otaml_ml_health_check(&app->ml, detail, size);
    snprintf(detail, size, "ok (no model in this image)");
    return true;
}

/* ---- commands ---- */

/* An NVS partition image (esp-idf-nvs-partition-gen, `release provision`) into the nvs partition, as
`esptool write-flash 0x9000 nvs.bin` does: the rest of the partition reads erased. */
static int prv_flash_nvs(const char *path)
{
    const sim_partition_t *p = sim_flash_partition("nvs");
    FILE *f = fopen(path, "rb");
    if (p == NULL || f == NULL) {
        fprintf(stderr, "otaml-sim: cannot read %s%s\n", path, p == NULL ? " (no nvs partition)" : "");
        if (f) fclose(f);
        return 1;
    }
    uint8_t *data = malloc(p->size + 1);
    size_t n = data ? fread(data, 1, p->size + 1, f) : 0;
    fclose(f);
    int rc = 1;
    if (data == NULL || n == 0 || n > p->size || n % SIM_SECTOR != 0) {
        fprintf(stderr, "otaml-sim: %s is %zu bytes; expected a multiple of 4096 of at most the nvs partition's %u\n", path, n,
                (unsigned)p->size);
    } else if (sim_flash_erase(p->offset, p->size) == OTAML_OK && sim_flash_write(p->offset, data, n) == OTAML_OK) {
        printf("flashed NVS %s (%zu bytes) into nvs at 0x%x\n", path, n, (unsigned)p->offset);
        rc = 0;
    }
    free(data);
    return rc;
}

static int cmd_flash(const options_t *o, const char *image_path)
{
    FILE *f = fopen(image_path, "rb");
    if (f == NULL) {
        fprintf(stderr, "otaml-sim: cannot read %s\n", image_path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc(size > 0 ? (size_t)size : 1);
    bool read_ok = data && fread(data, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    if (!read_ok) {
        free(data);
        fprintf(stderr, "otaml-sim: cannot read %s\n", image_path);
        return 1;
    }
    int rc = 1;
    const sim_partition_t *ota0;
    sim_image_t img;
    if (sim_flash_write_partition_table(o->partitions) != OTAML_OK || sim_flash_reset_otadata() != OTAML_OK) goto out;
    ota0 = sim_flash_ota_partition(0);
    if (ota0 == NULL || (uint32_t)size > ota0->size) {
        fprintf(stderr, "otaml-sim: %s does not fit ota_0\n", image_path);
        goto out;
    }
    if (sim_flash_erase(ota0->offset, ((uint32_t)size + SIM_SECTOR - 1) / SIM_SECTOR * SIM_SECTOR) != OTAML_OK ||
        sim_flash_write(ota0->offset, data, (size_t)size) != OTAML_OK) {
        goto out;
    }
    sim_flash_image(ota0, &img);
    if (!img.valid) {
        fprintf(stderr, "otaml-sim: %s is not a valid app image (header, checksum or SHA-256)\n", image_path);
        goto out;
    }
    printf("flashed %s %s (%ld bytes) into ota_0 at 0x%x\n", img.project, img.version, size, ota0->offset);
    if (o->nvs != NULL && prv_flash_nvs(o->nvs) != 0) goto out;
    rc = 0;
out:
    free(data);
    return rc;
}

/* Secrets are shown by fingerprint only: enough for a test or an operator to see that one changed. */
static bool prv_secret(const char *key)
{
    static const char *const secrets[] = {"token", "token_nx", "claim", "claim_new", "wifi_pass", "mqtt_pass"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        if (strcmp(key, secrets[i]) == 0) return true;
    }
    return false;
}

static void prv_nvs_item(void *ctx, const char *key, sim_nvs_type_t type, uint64_t integer, const char *text)
{
    cJSON *obj = ctx;
    if (type != SIM_NVS_STR) {
        cJSON_AddNumberToObject(obj, key, (double)integer);
    } else if (prv_secret(key)) {
        uint8_t digest[32];
        char shown[8 + 17] = "sha256:";
        mbedtls_sha256_context sha;
        mbedtls_sha256_init(&sha);
        otaml_sha256_starts(&sha);
        otaml_sha256_update(&sha, (const uint8_t *)text, strlen(text));
        otaml_sha256_finish(&sha, digest);
        mbedtls_sha256_free(&sha);
        for (int i = 0; i < 8; i++) snprintf(shown + 7 + 2 * i, 3, "%02x", digest[i]);
        cJSON_AddStringToObject(obj, key, shown);
    } else {
        cJSON_AddStringToObject(obj, key, text);
    }
}

static int cmd_info(void)
{
    cJSON *root = cJSON_CreateObject();
    int boot = sim_bootloader_select(false);
    const sim_partition_t *bp = boot >= 0 ? sim_flash_ota_partition(boot) : NULL;
    cJSON_AddStringToObject(root, "boot_slot", bp ? bp->label : "none");
    cJSON *slots = cJSON_AddArrayToObject(root, "slots");
    for (int s = 0; s < sim_flash_ota_count(); s++) {
        const sim_partition_t *p = sim_flash_ota_partition(s);
        sim_image_t img;
        sim_flash_image(p, &img);
        cJSON *slot = cJSON_CreateObject();
        cJSON_AddStringToObject(slot, "label", p->label);
        cJSON_AddStringToObject(slot, "state", otaml_img_state_to_str(sim_otadata_state(s)));
        cJSON_AddStringToObject(slot, "version", img.valid ? img.version : "");
        cJSON_AddBoolToObject(slot, "valid_image", img.valid);
        cJSON_AddItemToArray(slots, slot);
    }
    sim_port_config_t cfg = {.booted_slot = boot < 0 ? 0 : boot, .log_stderr = true};
    sim_port_configure(&cfg);
    cJSON *nvs = cJSON_AddObjectToObject(root, "nvs");
    const sim_partition_t *np = sim_flash_partition("nvs");
    if (np != NULL && sim_nvs_mount_readonly(np->offset, np->size) == OTAML_OK) {
        sim_nvs_foreach("otaml", prv_nvs_item, nvs);
        sim_nvs_unmount();
    }
    char *text = cJSON_Print(root);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(root);
    return 0;
}

/* An option, else the NVS value, else the fallback (NULL: leave empty). */
static void prv_setting(const char *option, const char *key, const char *fallback, char *out, size_t size)
{
    out[0] = '\0';
    if (option != NULL) snprintf(out, size, "%s", option);
    else if (otaml_port_store_get_str(key, out, size) != OTAML_OK) snprintf(out, size, "%s", fallback ? fallback : "");
}

/* A device without a provisioned id is named after its MAC, as firmware/main does with esp_read_mac;
 * the simulated chip's MAC is derived from its flash file's path (locally administered). */
static void prv_default_device_id(const char *flash, char *out, size_t size)
{
    char *path = realpath(flash, NULL);
    uint8_t digest[32];
    mbedtls_sha256_context sha;
    mbedtls_sha256_init(&sha);
    otaml_sha256_starts(&sha);
    otaml_sha256_update(&sha, (const uint8_t *)(path ? path : flash), strlen(path ? path : flash));
    otaml_sha256_finish(&sha, digest);
    mbedtls_sha256_free(&sha);
    free(path);
    digest[0] = (uint8_t)((digest[0] | 0x02) & 0xFE);
    snprintf(out, size, "otaml-%02x%02x%02x%02x%02x%02x", digest[0], digest[1], digest[2], digest[3], digest[4], digest[5]);
}

static size_t prv_heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    return mallinfo2().uordblks;
#else
    return 0;
#endif
}

static int cmd_run(const options_t *o, char **argv)
{
    int slot = sim_bootloader_select(true);
    if (slot < 0) {
        OTAML_LOGE("boot", "no bootable app image in any slot");
        return 3;
    }
    const sim_partition_t *part = sim_flash_ota_partition(slot);
    sim_port_config_t cfg = {
        .booted_slot = slot,
        .trusted_time = !o->no_trusted_time,
        .download_rate = (uint32_t)o->download_rate,
        .verbose = o->verbose,
        .ip_after_ms = (uint32_t)o->ip_after_ms,
        .argv = argv,
    };
    sim_port_configure(&cfg);
    sim_health_boot((int)o->rssi);
    OTAML_LOGI("boot", "Loaded app from partition at offset 0x%x (%s)", part->offset, part->label);

    /* Identity and server come from NVS (provisioned by `release provision`), options override them, as
     * Kconfig values are the fallbacks on the device (firmware/main/identity.c). */
    static char device_id[OTAML_MAX_DEVICE_ID + 1], token[OTAML_MAX_TOKEN + 1], claim[OTAML_MAX_TOKEN + 1];
    static char server[OTAML_MAX_URL + 1], channel[33];
    if (o->token != NULL) otaml_port_store_set_str("token", o->token); /* kept in NVS, as before */
    prv_setting(o->device_id, "device_id", NULL, device_id, sizeof(device_id));
    prv_setting(o->token, "token", "", token, sizeof(token));
    prv_setting(NULL, "claim", "", claim, sizeof(claim));
    prv_setting(o->server, "server_url", "", server, sizeof(server));
    prv_setting(o->channel, "channel", "stable", channel, sizeof(channel));
    if (device_id[0] == '\0') prv_default_device_id(o->flash, device_id, sizeof(device_id));
    if (server[0] == '\0') {
        OTAML_LOGE(TAG, "no server: pass --server or provision server_url into NVS (release provision)");
        return 2;
    }
    if (token[0] == '\0' && claim[0] == '\0') {
        OTAML_LOGE(TAG, "no device token: pass --token once (it is kept in NVS), or provision one (release provision)");
        return 2;
    }
    OTAML_LOGI(TAG, "device %s on %s, channel %s%s", device_id, server, channel,
               token[0] ? "" : " (no token yet: claiming one with the fleet claim token)");
    if (sim_image_has(slot, DIRECTIVE_LOSE_TOKEN)) {
        OTAML_LOGW(TAG, "simulated build that lost its credentials (%s)", DIRECTIVE_LOSE_TOKEN);
        snprintf(token, sizeof(token), "lost-token");
        claim[0] = '\0';
    }

    if (sim_otadata_state(slot) == OTAML_IMG_PENDING_VERIFY && sim_image_has(slot, DIRECTIVE_CRASH_ON_BOOT)) {
        OTAML_LOGE(TAG, "simulated crash before the image confirmed itself (%s)", DIRECTIVE_CRASH_ON_BOOT);
        sim_health_next_reset(OTAML_RESET_PANIC);
        otaml_port_reboot();
    }

    const char *pems[] = {OTAML_MANIFEST_PUBKEY_PEM};
    otaml_keyring_t ring;
    otaml_status_t st = otaml_keyring_init(&ring, pems, 1);
    if (st != OTAML_OK) {
        OTAML_LOGE(TAG, "compiled-in manifest key is unusable: %s", otaml_status_to_str(st));
        return 1;
    }
    static sim_app_t app; /* outlives the agent; static so a reboot's exec leaves nothing behind */
    app.slot = slot;
    atomic_store(&app.interval_ms, o->ml_interval_ms > 0 ? o->ml_interval_ms : 200);
    prv_ml_setup(&app);
    /* MQTT credentials are provisioned like the token: an option stores them in NVS, which the publisher reads */
    if (o->mqtt_user != NULL) otaml_port_store_set_str("mqtt_user", o->mqtt_user);
    if (o->mqtt_pass != NULL) otaml_port_store_set_str("mqtt_pass", o->mqtt_pass);
    if (app.ml.loaded) {
        /* --mqtt-url plays a build with CONFIG_OTAML_MQTT_BROKER_URL set and publishing on by default */
        app.mqtt_ready = otaml_mqtt_init(&app.mqtt, &app.ml, device_id, (uint32_t)o->mqtt_queue, o->mqtt_url != NULL,
                                         o->mqtt_url, "otaml/devices") == OTAML_OK;
        if (!app.mqtt_ready) return 2;
    }
    const char *config_pems[] = {OTAML_CONFIG_PUBKEY_PEM};
    otaml_keyring_t config_ring;
    if (otaml_keyring_init(&config_ring, config_pems, 1) != OTAML_OK) {
        OTAML_LOGE(TAG, "compiled-in config key is unusable");
        return 1;
    }
    otaml_agent_config_t acfg = {
        .server_url = server,
        .channel = channel,
        .device_id = device_id,
        .token = token,
        .claim_token = claim[0] ? claim : NULL,
        .project = OTAML_PROJECT_NAME,
        .chip = o->chip,
        .keyring = &ring,
        .selftest = prv_selftest,
        .selftest_ctx = &app,
        .checkin_extra = app.ml.loaded ? otaml_ml_checkin_headers : NULL,
        .checkin_extra_ctx = &app.ml,
        .config_keyring = &config_ring,
        .config_apply = prv_config_apply,
        .config_apply_ctx = &app,
        .default_poll_interval_s = 60,
        .min_poll_interval_s = 1,
        .confirm_window_s = (uint32_t)o->confirm_window_s,
        .confirm_backoff_min_ms = (uint32_t)o->confirm_backoff_min_ms,
        .confirm_backoff_max_ms = (uint32_t)o->confirm_backoff_max_ms,
        .unreachable_retakes = (uint32_t)o->unreachable_retakes,
        .progress_min_bytes = (uint32_t)o->progress_min_bytes,
    };
    otaml_agent_t agent;
    st = otaml_agent_init(&agent, &acfg);
    if (st == OTAML_OK) st = otaml_agent_boot(&agent);
    if (st != OTAML_OK) {
        OTAML_LOGE(TAG, "OTA agent failed to start: %s", otaml_status_to_str(st));
        sim_sensor_unload();
        sim_port_shutdown();
        return 1;
    }
    bool ml_running = app.ml.loaded && app.has_sensors;
    if (ml_running) pthread_create(&app.thread, NULL, prv_ml_task, &app);
    if (ml_running && app.mqtt_ready) pthread_create(&app.mqtt_thread, NULL, prv_mqtt_task, &app);
    size_t heap_after_warmup = 0;
    for (long i = 0; o->polls <= 0 || i < o->polls; i++) {
        otaml_poll_outcome_t outcome;
        otaml_agent_poll(&agent, &outcome);
        if (o->heap_report && i == 9) heap_after_warmup = prv_heap_in_use();
        uint32_t delay = o->interval_ms > 0 ? (uint32_t)o->interval_ms : otaml_agent_next_delay_ms(&agent);
        if (o->polls <= 0 || i + 1 < o->polls) usleep(delay * 1000u);
    }
    if (ml_running) {
        atomic_store(&app.stop, true);
        pthread_join(app.thread, NULL);
        if (app.mqtt_ready) {
            atomic_store(&app.mqtt_stop, true);
            pthread_join(app.mqtt_thread, NULL);
        }
    }
    if (o->heap_report) {
        printf("heap in use after 10 polls: %zu bytes, after %ld polls: %zu bytes\n", heap_after_warmup, o->polls,
               prv_heap_in_use());
    }
    sim_sensor_unload();
    sim_port_shutdown();
    return 0;
}

static const struct option LONGOPTS[] = {
    {"flash", required_argument, 0, 'f'},       {"partitions", required_argument, 0, 'p'},
    {"nvs", required_argument, 0, 'N'},
    {"server", required_argument, 0, 's'},      {"device-id", required_argument, 0, 'd'},
    {"token", required_argument, 0, 't'},       {"channel", required_argument, 0, 'c'},
    {"chip", required_argument, 0, 'C'},        {"polls", required_argument, 0, 'n'},
    {"interval-ms", required_argument, 0, 'i'}, {"download-rate", required_argument, 0, 'r'},
    {"no-trusted-time", no_argument, 0, 'T'},   {"verbose", no_argument, 0, 'v'},
    {"heap-report", no_argument, 0, 'H'},       {"ml-interval-ms", required_argument, 0, 'm'},
    {"confirm-window-s", required_argument, 0, 'W'},
    {"confirm-backoff-min-ms", required_argument, 0, 'b'},
    {"confirm-backoff-max-ms", required_argument, 0, 'B'},
    {"unreachable-retakes", required_argument, 0, 'R'},
    {"ip-after-ms", required_argument, 0, 'I'},
    {"rssi", required_argument, 0, 'S'},
    {"progress-min-bytes", required_argument, 0, 'P'},
    {"mqtt-url", required_argument, 0, 'U'},
    {"mqtt-user", required_argument, 0, 'u'},
    {"mqtt-pass", required_argument, 0, 'w'},
    {"mqtt-queue", required_argument, 0, 'Q'},
    {0, 0, 0, 0},
};

/* The rollback gate's tunables mirror Kconfig ranges (main/Kconfig.projbuild), except that a window
 * may be 0 (one attempt) so tests can be short. */
static bool prv_number(const char *text, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* Options may come before and after the command word; "+" stops at the first non-option. */
static bool prv_parse_options(int argc, char **argv, options_t *o)
{
    int c, index = 0;
    while ((c = getopt_long(argc, argv, "+", LONGOPTS, &index)) != -1) {
        bool ok = true;
        switch (c) {
        case 'f': o->flash = optarg; break;
        case 'p': o->partitions = optarg; break;
        case 'N': o->nvs = optarg; break;
        case 's': o->server = optarg; break;
        case 'd': o->device_id = optarg; break;
        case 't': o->token = optarg; break;
        case 'c': o->channel = optarg; break;
        case 'C': o->chip = optarg; break;
        case 'n': o->polls = strtol(optarg, NULL, 10); break;
        case 'i': o->interval_ms = strtol(optarg, NULL, 10); break;
        case 'r': o->download_rate = strtol(optarg, NULL, 10); break;
        case 'T': o->no_trusted_time = true; break;
        case 'v': o->verbose = true; break;
        case 'H': o->heap_report = true; break;
        case 'm': o->ml_interval_ms = strtol(optarg, NULL, 10); break;
        case 'W': ok = prv_number(optarg, 0, 3600, &o->confirm_window_s); break;
        case 'b': ok = prv_number(optarg, 1, 300000, &o->confirm_backoff_min_ms); break;
        case 'B': ok = prv_number(optarg, 1, 300000, &o->confirm_backoff_max_ms); break;
        case 'R': ok = prv_number(optarg, 0, 10, &o->unreachable_retakes); break;
        case 'I': ok = prv_number(optarg, 0, 3600000, &o->ip_after_ms); break;
        case 'S': ok = prv_number(optarg, -127, 0, &o->rssi); break;
        case 'P': ok = prv_number(optarg, 0, 16777216, &o->progress_min_bytes); break;
        case 'U': o->mqtt_url = optarg; break;
        case 'u': o->mqtt_user = optarg; break;
        case 'w': o->mqtt_pass = optarg; break;
        case 'Q': ok = prv_number(optarg, 1, OTAML_MQTT_QUEUE_MAX, &o->mqtt_queue); break;
        default: return false;
        }
        if (!ok) {
            fprintf(stderr, "otaml-sim: --%s: expected a whole number in range, got %s\n", LONGOPTS[index].name, optarg);
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    /* The gate's defaults are Kconfig's (OTAML_CONFIRM_WINDOW_S and friends). */
    options_t o = {.partitions = OTAML_DEFAULT_PARTITIONS_CSV, .chip = "esp32",
                   .confirm_window_s = 300, .confirm_backoff_min_ms = 1000, .confirm_backoff_max_ms = 30000,
                   .unreachable_retakes = 3, .rssi = -55, .progress_min_bytes = 262144, .mqtt_queue = 32};
    if (!prv_parse_options(argc, argv, &o) || o.flash == NULL || optind >= argc) return usage();
    const char *cmd = argv[optind++];
    const char *image = NULL;
    if (strcmp(cmd, "flash") == 0) {
        if (optind >= argc) return usage();
        image = argv[optind++];
    }
    if (!prv_parse_options(argc, argv, &o) || optind != argc) return usage();
    if (sim_flash_open(o.flash) != OTAML_OK) return 1;
    int rc;
    if (strcmp(cmd, "flash") == 0) {
        rc = cmd_flash(&o, image);
    } else if (sim_flash_ota_count() < 2) {
        fprintf(stderr, "otaml-sim: %s holds no partition table with two OTA slots; run `flash` first\n", o.flash);
        rc = 1;
    } else if (strcmp(cmd, "run") == 0) {
        rc = cmd_run(&o, argv);
    } else if (strcmp(cmd, "info") == 0) {
        rc = cmd_info();
    } else {
        rc = usage();
    }
    sim_flash_close();
    return rc;
}
