/*
 * POSIX port: the core's port over the emulated flash (sim_flash.c), libcurl and the process.
 * A reboot re-executes the process with its original arguments, so the "device" keeps its flash
 * file and loses its RAM, as a real reset does.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "otaml_port.h"
#include "otaml_protocol.h"
#include "sim_flash.h"
#include "sim_nvs.h"
#include "sim_port.h"

static const char *TAG = "port_posix";

static sim_port_config_t s_cfg = {.booted_slot = 0, .trusted_time = true};
static struct timespec s_start;
static CURL *s_curl;

void sim_port_configure(const sim_port_config_t *cfg)
{
    s_cfg = *cfg;
    clock_gettime(CLOCK_MONOTONIC, &s_start);
}

void sim_port_shutdown(void)
{
    sim_ml_shutdown();
    if (s_curl != NULL) {
        curl_easy_cleanup(s_curl);
        s_curl = NULL;
        curl_global_cleanup();
    }
}

/* ---- log, time, random ---- */

static uint32_t prv_millis(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint32_t)((now.tv_sec - s_start.tv_sec) * 1000 + (now.tv_nsec - s_start.tv_nsec) / 1000000);
}

void otaml_port_log(otaml_log_level_t level, const char *tag, const char *fmt, ...)
{
    if (level == OTAML_LOG_DEBUG && !s_cfg.verbose) return;
    static const char letters[] = {'E', 'W', 'I', 'D'};
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    FILE *out = s_cfg.log_stderr ? stderr : stdout;
    fprintf(out, "%c (%u) %s: %s\n", letters[level], prv_millis(), tag, msg);
    fflush(out);
}

int64_t otaml_port_trusted_time(void) { return s_cfg.trusted_time ? (int64_t)time(NULL) : 0; }

uint32_t otaml_port_random(void)
{
    uint32_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != sizeof(v)) v = (uint32_t)rand();
    return v;
}

otaml_status_t otaml_port_random_bytes(uint8_t *buf, size_t len)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = getrandom(buf + done, len - done, 0);
        if (n <= 0 && errno != EINTR) return OTAML_ERR_IO;
        if (n > 0) done += (size_t)n;
    }
    return OTAML_OK;
}

void otaml_port_delay_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- network: the simulated station has its address ip_after_ms after boot ---- */

static bool prv_has_ip(void) { return prv_millis() >= s_cfg.ip_after_ms; }

/* As xEventGroupWaitBits on the Wi-Fi task's GOT_IP bit: at once if set, else until set or timeout. */
otaml_status_t otaml_port_network_wait(uint32_t timeout_ms)
{
    uint32_t now = prv_millis();
    if (now >= s_cfg.ip_after_ms) return OTAML_OK;
    uint32_t until_ip = s_cfg.ip_after_ms - now;
    otaml_port_delay_ms(until_ip <= timeout_ms ? until_ip : timeout_ms);
    return until_ip <= timeout_ms ? OTAML_OK : OTAML_ERR_TRANSPORT;
}

/* ---- NVS: ESP-IDF's format in the nvs partition (sim_nvs.c), namespace "otaml" ---- */

#define NVS_NAMESPACE "otaml"

static bool s_nvs_mounted;

/* Mounted at first use, as nvs_flash_init at boot: a partition holding no NVS pages is used as erased. */
static otaml_status_t prv_nvs(void)
{
    if (s_nvs_mounted) return OTAML_OK;
    const sim_partition_t *p = sim_flash_partition("nvs");
    if (p == NULL) return OTAML_ERR_IO;
    otaml_status_t st = sim_nvs_mount(p->offset, p->size);
    if (st != OTAML_OK) {
        OTAML_LOGE(TAG, "cannot mount the nvs partition: %s", otaml_status_to_str(st));
        return OTAML_ERR_IO;
    }
    s_nvs_mounted = true;
    return OTAML_OK;
}

static otaml_status_t prv_nvs_write_result(otaml_status_t st)
{
    return st == OTAML_OK || st == OTAML_ERR_INVALID_ARG || st == OTAML_ERR_TOO_LARGE ? st : OTAML_ERR_IO;
}

otaml_status_t otaml_port_store_get_u64(const char *key, uint64_t *value)
{
    OTAML_RETURN_IF_ERROR(prv_nvs());
    otaml_status_t st = sim_nvs_get_int(NVS_NAMESPACE, key, value);
    return st == OTAML_ERR_INVALID_ARG ? OTAML_ERR_NOT_FOUND : st;
}

otaml_status_t otaml_port_store_set_u64(const char *key, uint64_t value)
{
    OTAML_RETURN_IF_ERROR(prv_nvs());
    return prv_nvs_write_result(sim_nvs_set_u64(NVS_NAMESPACE, key, value));
}

otaml_status_t otaml_port_store_get_str(const char *key, char *buf, size_t size)
{
    OTAML_RETURN_IF_ERROR(prv_nvs());
    otaml_status_t st = sim_nvs_get_str(NVS_NAMESPACE, key, buf, size);
    return st == OTAML_ERR_INVALID_ARG ? OTAML_ERR_NOT_FOUND : st;
}

otaml_status_t otaml_port_store_set_str(const char *key, const char *value)
{
    OTAML_RETURN_IF_ERROR(prv_nvs());
    return prv_nvs_write_result(sim_nvs_set_str(NVS_NAMESPACE, key, value));
}

otaml_status_t otaml_port_store_erase(const char *key)
{
    OTAML_RETURN_IF_ERROR(prv_nvs());
    return prv_nvs_write_result(sim_nvs_erase_key(NVS_NAMESPACE, key));
}

/* ---- HTTP over libcurl ---- */

typedef struct {
    otaml_http_response_t *resp;
    otaml_body_sink_t sink;
    void *sink_ctx;
    bool sink_failed;
    uint64_t body_bytes;
    uint32_t started_ms;
} prv_transfer_t;

/* Too long means not ours to parse: leave it empty rather than truncated. */
static void prv_copy_bounded(char *dst, size_t size, const char *value)
{
    if (strlen(value) < size) strcpy(dst, value);
}

static size_t prv_on_header(char *data, size_t size, size_t nitems, void *userdata)
{
    prv_transfer_t *t = userdata;
    size_t len = size * nitems;
    char line[2048]; /* X-Otaml-Keyset is up to 1368 characters; a longer line is cut, then refused */
    size_t n = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
    memcpy(line, data, n);
    line[n] = '\0';
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n')) line[--n] = '\0';
    if (strncmp(line, "HTTP/", 5) == 0) { /* a new response (after a redirect or 100): start over */
        const char *sp = strchr(line, ' ');
        otaml_http_response_reset(t->resp);
        t->resp->content_length = -1;
        t->resp->status = sp ? atoi(sp + 1) : 0;
        return len;
    }
    char *colon = strchr(line, ':');
    if (colon == NULL) return len;
    *colon = '\0';
    const char *value = colon + 1;
    while (*value == ' ') value++;
    if (strcasecmp(line, "ETag") == 0) snprintf(t->resp->etag, sizeof(t->resp->etag), "%s", value);
    else if (strcasecmp(line, OTAML_H_SIGNATURE) == 0) snprintf(t->resp->signature, sizeof(t->resp->signature), "%s", value);
    else if (strcasecmp(line, OTAML_H_POLL_INTERVAL) == 0) t->resp->poll_interval_s = (uint32_t)strtoul(value, NULL, 10);
    else if (strcasecmp(line, OTAML_H_CONFIG) == 0) prv_copy_bounded(t->resp->config, sizeof(t->resp->config), value);
    else if (strcasecmp(line, OTAML_H_CONFIG_SIGNATURE) == 0) {
        prv_copy_bounded(t->resp->config_signature, sizeof(t->resp->config_signature), value);
    }
    else if (strcasecmp(line, OTAML_H_NEW_TOKEN) == 0) prv_copy_bounded(t->resp->new_token, sizeof(t->resp->new_token), value);
    else if (strcasecmp(line, OTAML_H_KEYSET) == 0 && t->resp->keyset != NULL) {
        prv_copy_bounded(t->resp->keyset, t->resp->keyset_cap, value);
    } else if (strcasecmp(line, OTAML_H_KEYSET_SIGNATURE) == 0) {
        prv_copy_bounded(t->resp->keyset_signature, sizeof(t->resp->keyset_signature), value);
    }
    else if (strcasecmp(line, "Content-Length") == 0) t->resp->content_length = strtoll(value, NULL, 10);
    return len;
}

static size_t prv_on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    prv_transfer_t *t = userdata;
    size_t len = size * nmemb;
    if (t->resp->status < 200 || t->resp->status >= 300 || t->sink == NULL) return len;
    if (t->sink(t->sink_ctx, (const uint8_t *)data, len) != OTAML_OK) {
        t->sink_failed = true;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    t->body_bytes += len;
    if (s_cfg.download_rate > 0) { /* a slow radio: keep the average at the configured rate */
        uint64_t due_ms = t->body_bytes * 1000 / s_cfg.download_rate;
        uint32_t elapsed = prv_millis() - t->started_ms;
        if (due_ms > elapsed) usleep((useconds_t)((due_ms - elapsed) * 1000));
    }
    return len;
}

static CURL *prv_curl(void)
{
    if (s_curl == NULL) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        s_curl = curl_easy_init();
    } else {
        curl_easy_reset(s_curl); /* keeps the connection cache: polls reuse the TCP connection */
    }
    return s_curl;
}

static struct curl_slist *prv_headers(const otaml_header_t *headers, size_t n)
{
    struct curl_slist *list = NULL;
    char line[512];
    for (size_t i = 0; i < n; i++) {
        snprintf(line, sizeof(line), "%s: %s", headers[i].name, headers[i].value);
        struct curl_slist *next = curl_slist_append(list, line);
        if (next == NULL) {
            curl_slist_free_all(list);
            return NULL;
        }
        list = next;
    }
    return list;
}

static otaml_status_t prv_perform(CURL *curl, prv_transfer_t *t)
{
    if (!prv_has_ip()) {
        OTAML_LOGD(TAG, "no IP address yet");
        return OTAML_ERR_TRANSPORT;
    }
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, prv_on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, prv_on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a stalled server is a transport error */
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "otaml-sim");
    t->started_ms = prv_millis();
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK) return OTAML_OK;
    if (t->sink_failed) return OTAML_ERR_ABORTED;
    OTAML_LOGD(TAG, "curl: %s", curl_easy_strerror(rc));
    return OTAML_ERR_TRANSPORT;
}

otaml_status_t otaml_port_http_get(const char *url, const otaml_header_t *headers, size_t n_headers,
                                   otaml_body_sink_t sink, void *sink_ctx, otaml_http_response_t *resp)
{
    otaml_http_response_reset(resp);
    resp->content_length = -1;
    CURL *curl = prv_curl();
    if (curl == NULL) return OTAML_ERR_NO_MEM;
    struct curl_slist *list = prv_headers(headers, n_headers);
    if (n_headers > 0 && list == NULL) return OTAML_ERR_NO_MEM;
    prv_transfer_t t = {.resp = resp, .sink = sink, .sink_ctx = sink_ctx};
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    otaml_status_t st = prv_perform(curl, &t);
    curl_slist_free_all(list);
    return st;
}

otaml_status_t otaml_port_http_post(const char *url, const otaml_header_t *headers, size_t n_headers,
                                    const char *content_type, const char *body, size_t len, int *status)
{
    *status = 0;
    CURL *curl = prv_curl();
    if (curl == NULL) return OTAML_ERR_NO_MEM;
    struct curl_slist *list = prv_headers(headers, n_headers);
    char ct[96];
    snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
    struct curl_slist *with_ct = curl_slist_append(list, ct);
    if (with_ct == NULL) {
        curl_slist_free_all(list);
        return OTAML_ERR_NO_MEM;
    }
    otaml_http_response_t resp;
    memset(&resp, 0, sizeof(resp));
    prv_transfer_t t = {.resp = &resp};
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, with_ct);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)len);
    otaml_status_t st = prv_perform(curl, &t);
    curl_slist_free_all(with_ct);
    *status = resp.status;
    return st;
}

/* ---- firmware slots ---- */

static struct {
    bool open;
    int slot;
    uint32_t size;
    uint32_t written;
    uint32_t erased_to; /* sequential-write erase, as esp_ota_write with OTA_WITH_SEQUENTIAL_WRITES */
} s_update;

static void prv_slot_info(int slot, otaml_slot_info_t *out)
{
    memset(out, 0, sizeof(*out));
    const sim_partition_t *p = sim_flash_ota_partition(slot);
    if (p == NULL) return;
    snprintf(out->label, sizeof(out->label), "%s", p->label);
    sim_image_t img;
    sim_flash_image(p, &img);
    snprintf(out->version, sizeof(out->version), "%s", img.version);
    snprintf(out->project, sizeof(out->project), "%s", img.project);
    out->secure_version = img.secure_version;
    out->state = sim_otadata_state(slot);
}

otaml_status_t otaml_port_running_slot(otaml_slot_info_t *out)
{
    prv_slot_info(s_cfg.booted_slot, out);
    return out->label[0] ? OTAML_OK : OTAML_ERR_IO;
}

static int prv_passive_slot(void)
{
    int n = sim_flash_ota_count();
    return n < 2 ? -1 : (s_cfg.booted_slot + 1) % n;
}

otaml_status_t otaml_port_passive_slot_size(size_t *size)
{
    const sim_partition_t *p = sim_flash_ota_partition(prv_passive_slot());
    if (p == NULL) return OTAML_ERR_NOT_FOUND;
    *size = p->size;
    return OTAML_OK;
}

otaml_status_t otaml_port_update_begin(size_t image_size, size_t resume_offset)
{
    const sim_partition_t *p = sim_flash_ota_partition(prv_passive_slot());
    if (p == NULL) return OTAML_ERR_NOT_FOUND;
    if (s_update.open) return OTAML_ERR_STATE;
    if (sim_otadata_state(s_cfg.booted_slot) == OTAML_IMG_PENDING_VERIFY) return OTAML_ERR_STATE;
    if (image_size > p->size || resume_offset > image_size) return OTAML_ERR_TOO_LARGE;
    if (resume_offset == 0) OTAML_RETURN_IF_ERROR(sim_otadata_invalidate_inactive());
    s_update.open = true;
    s_update.slot = prv_passive_slot();
    s_update.size = (uint32_t)image_size;
    s_update.written = (uint32_t)resume_offset;
    /* Sectors up to the resume point were erased when writing first entered them. */
    s_update.erased_to = (uint32_t)((resume_offset + SIM_SECTOR - 1) / SIM_SECTOR * SIM_SECTOR);
    return OTAML_OK;
}

otaml_status_t otaml_port_update_write(const void *data, size_t len)
{
    if (!s_update.open) return OTAML_ERR_STATE;
    const sim_partition_t *p = sim_flash_ota_partition(s_update.slot);
    if (s_update.written == 0 && len > 0 && ((const uint8_t *)data)[0] != 0xE9) return OTAML_ERR_IMAGE;
    if ((uint64_t)s_update.written + len > p->size) return OTAML_ERR_TOO_LARGE;
    uint32_t end = s_update.written + (uint32_t)len;
    if (end > s_update.erased_to) {
        uint32_t new_to = (end + SIM_SECTOR - 1) / SIM_SECTOR * SIM_SECTOR;
        OTAML_RETURN_IF_ERROR(sim_flash_erase(p->offset + s_update.erased_to, new_to - s_update.erased_to));
        s_update.erased_to = new_to;
    }
    OTAML_RETURN_IF_ERROR(sim_flash_write(p->offset + s_update.written, data, len));
    s_update.written = end;
    return OTAML_OK;
}

otaml_status_t otaml_port_update_read(size_t offset, void *buf, size_t len)
{
    const sim_partition_t *p = sim_flash_ota_partition(s_update.open ? s_update.slot : prv_passive_slot());
    if (p == NULL || offset + len > p->size) return OTAML_ERR_INVALID_ARG;
    return sim_flash_read(p->offset + (uint32_t)offset, buf, len);
}

void otaml_port_update_abort(void) { s_update.open = false; }

otaml_status_t otaml_port_update_end(otaml_slot_info_t *info)
{
    if (!s_update.open) return OTAML_ERR_STATE;
    s_update.open = false;
    const sim_partition_t *p = sim_flash_ota_partition(s_update.slot);
    sim_image_t img;
    sim_flash_image(p, &img);
    if (!img.valid) return OTAML_ERR_IMAGE;
    prv_slot_info(s_update.slot, info);
    return OTAML_OK;
}

otaml_status_t otaml_port_update_activate(void) { return sim_otadata_set_boot(s_update.slot); }

otaml_status_t otaml_port_mark_valid(void) { return sim_otadata_set_state(s_cfg.booted_slot, OTAML_IMG_VALID); }

otaml_status_t otaml_port_mark_invalid_and_reboot(void)
{
    OTAML_RETURN_IF_ERROR(sim_otadata_set_state(s_cfg.booted_slot, OTAML_IMG_INVALID));
    otaml_port_reboot();
}

void otaml_port_reboot(void)
{
    OTAML_LOGI(TAG, "restarting");
    fflush(stdout);
    sim_port_shutdown();
    sim_flash_close();
    sim_health_prepare_reboot();
    execv("/proc/self/exe", s_cfg.argv);
    fprintf(stderr, "exec failed: %s\n", strerror(errno));
    _exit(70);
}
