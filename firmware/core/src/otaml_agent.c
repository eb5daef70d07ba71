/*
 * The OTA agent: events and the outbox, desired configuration, check-ins, the poll, download and
 * install. The rollback gate at boot is otaml_gate.c. The order of persistent writes is what makes an
 * update safe to interrupt anywhere:
 *   download: dl_sha/dl_off are saved only after bytes are in flash, so a resume never skips bytes;
 *   install:  mf_ver, inst_ur and inst_ver are saved before the boot partition switches, so after the
 *             reboot the gate knows what it is verifying, and if the image never confirms, what failed
 *             and how many of its server_unreachable rollbacks came before.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "otaml_agent.h"
#include "otaml_agent_priv.h"
#include "otaml_download.h"
#include "otaml_policy.h"

static const char *TAG = "otaml_ota";

#define PERSIST_EVERY_BYTES (64u * 1024u) /* dl_off writes: bounded flash wear, bounded re-download */
#define READBACK_CHUNK 4096

/* ---- small helpers ---- */

void otaml_agent_store_str_or_empty(const char *key, char *buf, size_t size)
{
    if (otaml_port_store_get_str(key, buf, size) != OTAML_OK) buf[0] = '\0';
}

uint64_t otaml_agent_store_u64_or_zero(const char *key)
{
    uint64_t v = 0;
    return otaml_port_store_get_u64(key, &v) == OTAML_OK ? v : 0;
}

static void prv_hex(const uint8_t *bytes, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

static bool prv_is_2xx(int status) { return status >= 200 && status < 300; }

/* ---- events ---- */

otaml_status_t otaml_agent_post_event(otaml_agent_t *a, otaml_event_t kind, const char *version,
                                     otaml_reason_t reason, const char *detail)
{
    cJSON *obj = cJSON_CreateObject();
    if (obj == NULL) return OTAML_ERR_NO_MEM;
    cJSON_AddStringToObject(obj, "kind", otaml_event_to_str(kind));
    if (version != NULL && version[0] != '\0') cJSON_AddStringToObject(obj, "version", version);
    cJSON_AddStringToObject(obj, "reason", otaml_reason_to_str(reason));
    char clipped[256];
    snprintf(clipped, sizeof(clipped), "%s", detail ? detail : "");
    cJSON_AddStringToObject(obj, "detail", clipped);
    char *body = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (body == NULL) return OTAML_ERR_NO_MEM;

    char auth[160];
    snprintf(auth, sizeof(auth), "Bearer %s", otaml_agent_auth_token(a));
    const otaml_header_t headers[] = {{"Authorization", auth}};
    int status = 0;
    otaml_status_t st = otaml_port_http_post(a->events_url, headers, 1, "application/json", body, strlen(body), &status);
    free(body);
    /* 5xx and 429 mean "not now" (a proxy before a restarting server): as good as no connection. */
    if (st == OTAML_OK && (status >= 500 || status == 429)) st = OTAML_ERR_TRANSPORT;
    else if (st == OTAML_OK && !prv_is_2xx(status)) st = OTAML_ERR_HTTP_STATUS;
    if (st != OTAML_OK) {
        OTAML_LOGW(TAG, "event %s not delivered: %s (HTTP %d)", otaml_event_to_str(kind), otaml_status_to_str(st), status);
    } else {
        OTAML_LOGI(TAG, "event %s %s reason=%s%s%s", otaml_event_to_str(kind), version ? version : "",
                   otaml_reason_to_str(reason), detail && detail[0] ? " detail=" : "", detail ? detail : "");
    }
    return st;
}

/* The outbox holds one event that must survive a reboot; it is retried before every poll. */
void otaml_agent_outbox_put(otaml_agent_t *a, otaml_event_t kind, const char *version, otaml_reason_t reason,
                            const char *detail)
{
    a->outbox_pending = true;
    otaml_port_store_set_str("ob_ver", version);
    otaml_port_store_set_str("ob_why", otaml_reason_to_str(reason));
    otaml_port_store_set_str("ob_det", detail ? detail : "");
    otaml_port_store_set_str("ob_kind", otaml_event_to_str(kind)); /* written last: marks it complete */
}

otaml_status_t otaml_agent_outbox_flush(otaml_agent_t *a)
{
    char kind[24], version[32], why[32], detail[OTAML_DETAIL_MAX];
    if (!a->outbox_pending) return OTAML_OK;
    if (otaml_port_store_get_str("ob_kind", kind, sizeof(kind)) != OTAML_OK) {
        a->outbox_pending = false;
        return OTAML_OK;
    }
    otaml_agent_store_str_or_empty("ob_ver", version, sizeof(version));
    otaml_agent_store_str_or_empty("ob_why", why, sizeof(why));
    otaml_agent_store_str_or_empty("ob_det", detail, sizeof(detail));
    otaml_event_t ev = OTAML_EVENT_ROLLED_BACK;
#define OTAML_X_MATCH(id, text) \
    if (strcmp(kind, text) == 0) ev = id;
    OTAML_EVENT_LIST(OTAML_X_MATCH)
#undef OTAML_X_MATCH
    otaml_status_t st = otaml_agent_post_event(a, ev, version, otaml_reason_from_str(why), detail);
    if (st == OTAML_OK) {
        otaml_port_store_erase("ob_kind");
        a->outbox_pending = false;
    }
    return st;
}

/* ---- desired configuration ---- */

static void prv_config_load(otaml_agent_t *a)
{
    otaml_config_init(&a->config);
    if (a->cfg.config_keyring == NULL) return;
    char stored[sizeof(a->config_applied)];
    otaml_agent_store_str_or_empty("cfg", stored, sizeof(stored));
    a->config.revision = otaml_agent_store_u64_or_zero("cfg_rev");
    if (otaml_config_parse_applied(stored, &a->config) != OTAML_OK) {
        OTAML_LOGW(TAG, "stored configuration unreadable: running defaults until the server sends one");
        otaml_config_init(&a->config);
    }
    otaml_config_format(&a->config, a->config_applied, sizeof(a->config_applied));
    if (a->config.revision > 0 && a->cfg.config_apply != NULL) a->cfg.config_apply(a->cfg.config_apply_ctx, &a->config);
}

/* A document rides on any poll answer (200, 304, 404). Refusals are logged, not reported as update
 * events: the server sees the stale revision in the next check-in (drift) and keeps offering. */
static void prv_config_take(otaml_agent_t *a, const otaml_http_response_t *resp)
{
    if (a->cfg.config_keyring == NULL || resp->config[0] == '\0') return;
    otaml_config_t next;
    otaml_status_t st = otaml_config_verify(a->cfg.config_keyring, resp->config, resp->config_signature,
                                            a->cfg.device_id, a->config.revision, &next);
    if (st != OTAML_OK) {
        OTAML_LOGW(TAG, "config document refused: %s", otaml_status_to_str(st));
        return;
    }
    if (a->cfg.config_apply != NULL && !a->cfg.config_apply(a->cfg.config_apply_ctx, &next)) {
        OTAML_LOGW(TAG, "config revision %llu not applied by the application", (unsigned long long)next.revision);
        return;
    }
    char applied[sizeof(a->config_applied)];
    if (otaml_config_format(&next, applied, sizeof(applied)) != OTAML_OK ||
        otaml_port_store_set_str("cfg", applied) != OTAML_OK || otaml_port_store_set_u64("cfg_rev", next.revision) != OTAML_OK) {
        OTAML_LOGE(TAG, "cannot persist config revision %llu", (unsigned long long)next.revision);
        return;
    }
    a->config = next;
    snprintf(a->config_applied, sizeof(a->config_applied), "%s", applied);
    OTAML_LOGI(TAG, "config revision %llu applied: %s", (unsigned long long)next.revision, applied[0] ? applied : "(defaults)");
}

/* ---- init and the boot gate ---- */

otaml_status_t otaml_agent_init(otaml_agent_t *a, const otaml_agent_config_t *cfg)
{
    memset(a, 0, sizeof(*a));
    if (cfg == NULL || cfg->server_url == NULL || cfg->channel == NULL || cfg->device_id == NULL ||
        cfg->token == NULL || cfg->project == NULL || cfg->chip == NULL || cfg->keyring == NULL) {
        return OTAML_ERR_INVALID_ARG;
    }
    if (strlen(cfg->token) > OTAML_MAX_TOKEN || (cfg->token[0] == '\0' && cfg->claim_token == NULL)) {
        return OTAML_ERR_INVALID_ARG;
    }
    a->cfg = *cfg;
    snprintf(a->token, sizeof(a->token), "%s", cfg->token);
    /* A rotated token stored before a reset is tried first (otaml_token.c). */
    if (otaml_port_store_get_str("token_nx", a->token_next, sizeof(a->token_next)) != OTAML_OK ||
        !otaml_token_valid(a->token_next) || a->token[0] == '\0') {
        a->token_next[0] = '\0';
    }
    a->ring = cfg->keyring;
    a->keyset_version = cfg->keyset_version;
    otaml_agent_keyset_load(a);
    int n1 = snprintf(a->manifest_url, sizeof(a->manifest_url), "%s/channels/%s/firmware.json", cfg->server_url, cfg->channel);
    int n2 = snprintf(a->events_url, sizeof(a->events_url), "%s/api/devices/%s/events", cfg->server_url, cfg->device_id);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(a->manifest_url) || (size_t)n2 >= sizeof(a->events_url)) {
        return OTAML_ERR_INVALID_ARG;
    }
    a->poll_interval_s = cfg->default_poll_interval_s ? cfg->default_poll_interval_s : 60;
    a->installed_manifest_version = otaml_agent_store_u64_or_zero("mf_ver");
    otaml_agent_store_str_or_empty("failed_ver", a->failed_version, sizeof(a->failed_version));
    char kind[24];
    a->outbox_pending = otaml_port_store_get_str("ob_kind", kind, sizeof(kind)) == OTAML_OK;
    prv_config_load(a);
    return otaml_port_running_slot(&a->running);
}

/* ---- check-in headers ---- */

void otaml_agent_checkin_headers(otaml_agent_t *a, otaml_checkin_t *c, bool with_etag)
{
    c->n = 0;
    snprintf(c->auth, sizeof(c->auth), "Bearer %s", otaml_agent_auth_token(a));
    snprintf(c->mv, sizeof(c->mv), "%llu", (unsigned long long)a->installed_manifest_version);
    snprintf(c->sv, sizeof(c->sv), "%u", (unsigned)a->running.secure_version);
    c->h[c->n++] = (otaml_header_t){OTAML_H_DEVICE_ID, a->cfg.device_id};
    c->h[c->n++] = (otaml_header_t){"Authorization", c->auth};
    c->h[c->n++] = (otaml_header_t){OTAML_H_VERSION, a->running.version};
    c->h[c->n++] = (otaml_header_t){OTAML_H_PARTITION, a->running.label};
    c->h[c->n++] = (otaml_header_t){OTAML_H_OTA_STATE, otaml_img_state_to_str(a->running.state)};
    c->h[c->n++] = (otaml_header_t){OTAML_H_MANIFEST_VERSION, c->mv};
    c->h[c->n++] = (otaml_header_t){OTAML_H_SECURE_VERSION, c->sv};
    snprintf(c->ks_ver, sizeof(c->ks_ver), "%llu", (unsigned long long)a->keyset_version);
    c->h[c->n++] = (otaml_header_t){OTAML_H_KEYSET_VERSION, c->ks_ver};
    if (with_etag && a->etag[0]) c->h[c->n++] = (otaml_header_t){"If-None-Match", a->etag};
    if (a->cfg.config_keyring != NULL) {
        snprintf(c->cfg_rev, sizeof(c->cfg_rev), "%llu", (unsigned long long)a->config.revision);
        c->h[c->n++] = (otaml_header_t){OTAML_H_CONFIG_REVISION, c->cfg_rev};
        if (a->config_applied[0]) c->h[c->n++] = (otaml_header_t){OTAML_H_CONFIG_APPLIED, a->config_applied};
    }
    otaml_health_t health;
    otaml_port_health(&health);
    if (health.has_rssi) {
        snprintf(c->rssi, sizeof(c->rssi), "%d", (int)health.rssi);
        c->h[c->n++] = (otaml_header_t){OTAML_H_RSSI, c->rssi};
    }
    if (health.free_heap > 0) {
        snprintf(c->heap, sizeof(c->heap), "%u", (unsigned)health.free_heap);
        c->h[c->n++] = (otaml_header_t){OTAML_H_FREE_HEAP, c->heap};
    }
    if (health.min_free_heap > 0) {
        snprintf(c->min_heap, sizeof(c->min_heap), "%u", (unsigned)health.min_free_heap);
        c->h[c->n++] = (otaml_header_t){OTAML_H_MIN_FREE_HEAP, c->min_heap};
    }
    snprintf(c->uptime, sizeof(c->uptime), "%llu", (unsigned long long)health.uptime_s);
    c->h[c->n++] = (otaml_header_t){OTAML_H_UPTIME_S, c->uptime};
    c->h[c->n++] = (otaml_header_t){OTAML_H_RESET_REASON, otaml_reset_reason_to_str(health.reset_reason)};
    if (a->cfg.checkin_extra != NULL) {
        c->n += a->cfg.checkin_extra(a->cfg.checkin_extra_ctx, &c->h[c->n], sizeof(c->h) / sizeof(c->h[0]) - c->n);
    }
}

/* ---- responses, bounded body buffer, manifest signature ---- */

void otaml_http_response_reset(otaml_http_response_t *resp)
{
    char *keyset = resp->keyset;
    size_t cap = resp->keyset_cap;
    memset(resp, 0, sizeof(*resp));
    resp->keyset = keyset;
    resp->keyset_cap = cap;
    if (keyset != NULL && cap > 0) keyset[0] = '\0';
}

otaml_status_t otaml_agent_buffer_sink(void *ctx, const uint8_t *data, size_t len)
{
    otaml_buffer_t *b = ctx;
    if (len > b->cap - b->len) {
        b->overflow = true;
        return OTAML_ERR_TOO_LARGE;
    }
    memcpy(b->buf + b->len, data, len);
    b->len += len;
    return OTAML_OK;
}

void otaml_agent_manifest_signature(otaml_agent_t *a, const otaml_http_response_t *resp, char *out, size_t size)
{
    snprintf(out, size, "%s", resp->signature);
    if (out[0] != '\0') return;
    /* A static host cannot set headers: the signature sits beside the manifest. */
    char sig_url[272];
    uint8_t sig_buf[OTAML_MAX_SIGNATURE_B64 + 2];
    otaml_buffer_t sb = {.buf = sig_buf, .cap = sizeof(sig_buf) - 1};
    otaml_http_response_t sresp = {0};
    snprintf(sig_url, sizeof(sig_url), "%s.sig", a->manifest_url);
    if (otaml_port_http_get(sig_url, NULL, 0, otaml_agent_buffer_sink, &sb, &sresp) == OTAML_OK && sresp.status == 200) {
        while (sb.len > 0 && (sig_buf[sb.len - 1] == '\n' || sig_buf[sb.len - 1] == '\r')) sb.len--;
        sig_buf[sb.len] = '\0';
        snprintf(out, size, "%s", (char *)sig_buf);
    }
}

/* ---- download and install ---- */

typedef struct {
    otaml_download_t guard;
    const otaml_http_response_t *resp;
    size_t resume_offset; /* where this request's body starts (Range); 0 for the whole image */
    size_t since_persist;
    uint32_t stop_at;     /* a progress milestone: stop the transfer once this many bytes are in flash (0: none) */
    bool milestone;       /* the transfer stopped at stop_at */
    bool started;
    bool oversize;
    otaml_status_t flash_error;
} prv_image_sink_t;

static otaml_status_t prv_image_sink(void *ctx, const uint8_t *data, size_t len)
{
    prv_image_sink_t *s = ctx;
    if (!s->started) {
        s->started = true;
        if (s->resume_offset > 0 && s->resp->status == 200) {
            /* The server ignored Range (a static host without it): start over from byte 0, in one
             * transfer (progress milestones need Range, so there are none from here on). */
            OTAML_LOGW(TAG, "server sent the whole image instead of a range: restarting the download");
            s->stop_at = 0;
            uint32_t size = s->guard.expected_size;
            otaml_port_update_abort();
            otaml_download_free(&s->guard);
            otaml_status_t st = otaml_port_update_begin(size, 0);
            if (st == OTAML_OK) st = otaml_download_start(&s->guard, size);
            if (st != OTAML_OK) {
                s->flash_error = st;
                return st;
            }
            s->resume_offset = 0;
        }
    }
    if (otaml_download_feed(&s->guard, data, len) != OTAML_OK) {
        s->oversize = true; /* the endless-data attack stops here: not a byte past the declared size */
        return OTAML_ERR_SIZE;
    }
    otaml_status_t st = otaml_port_update_write(data, len);
    if (st != OTAML_OK) {
        s->flash_error = st;
        return st;
    }
    s->since_persist += len;
    if (s->since_persist >= PERSIST_EVERY_BYTES) {
        s->since_persist = 0;
        otaml_port_store_set_u64("dl_off", s->guard.received);
    }
    if (s->stop_at > 0 && s->guard.received >= s->stop_at && s->guard.received < s->guard.expected_size) {
        s->milestone = true; /* the bytes are in flash; the next request resumes after them */
        return OTAML_ERR_ABORTED;
    }
    return OTAML_OK;
}

/* download_progress milestones: the first one above `received`, as its index into pct (n when none). */
static const unsigned s_progress_pct[] = OTAML_DOWNLOAD_PROGRESS_PCT;
#define PROGRESS_STEPS (sizeof(s_progress_pct) / sizeof(s_progress_pct[0]))

static size_t prv_next_milestone(uint32_t received, uint32_t size, size_t from)
{
    while (from < PROGRESS_STEPS && received >= (uint32_t)((uint64_t)size * s_progress_pct[from] / 100u)) from++;
    return from;
}

static uint32_t prv_milestone_bytes(size_t step, uint32_t size)
{
    return step < PROGRESS_STEPS ? (uint32_t)((uint64_t)size * s_progress_pct[step] / 100u) : 0;
}

static void prv_forget_download(void)
{
    otaml_port_store_erase("dl_sha");
    otaml_port_store_erase("dl_off");
}

/* Re-hash what a previous attempt wrote, so the final digest covers the whole image. */
static size_t prv_prepare_resume(otaml_download_t *guard, const char *sha_hex, uint32_t size)
{
    char saved[65];
    if (otaml_port_store_get_str("dl_sha", saved, sizeof(saved)) != OTAML_OK || strcmp(saved, sha_hex) != 0) return 0;
    uint64_t offset = otaml_agent_store_u64_or_zero("dl_off");
    if (offset == 0 || offset >= size) return 0;
    uint8_t *chunk = malloc(READBACK_CHUNK);
    if (chunk == NULL) return 0;
    for (uint64_t done = 0; done < offset;) {
        size_t n = (size_t)(offset - done < READBACK_CHUNK ? offset - done : READBACK_CHUNK);
        if (otaml_port_update_read((size_t)done, chunk, n) != OTAML_OK ||
            otaml_download_feed(guard, chunk, n) != OTAML_OK) {
            free(chunk);
            otaml_download_free(guard);
            otaml_download_start(guard, size);
            return 0;
        }
        done += n;
    }
    free(chunk);
    return (size_t)offset;
}

static otaml_poll_outcome_t prv_reject(otaml_agent_t *a, const otaml_manifest_t *m, otaml_reason_t reason,
                                       const char *detail)
{
    OTAML_LOGW(TAG, "refused %s: %s%s%s", m->semver[0] ? m->semver : "manifest", otaml_reason_to_str(reason),
               detail[0] ? ": " : "", detail);
    otaml_agent_post_event(a, OTAML_EVENT_REJECTED, m->semver, reason, detail);
    return OTAML_POLL_REJECTED;
}

static otaml_poll_outcome_t prv_install(otaml_agent_t *a, const otaml_manifest_t *m)
{
    char sha_hex[65], detail[128] = "";
    prv_hex(m->sha256, 32, sha_hex);

    prv_image_sink_t s = {0};
    if (otaml_download_start(&s.guard, m->size) != OTAML_OK) return OTAML_POLL_RETRY;
    s.resume_offset = prv_prepare_resume(&s.guard, sha_hex, m->size);
    otaml_status_t st = otaml_port_update_begin(m->size, s.resume_offset);
    if (st != OTAML_OK) {
        otaml_download_free(&s.guard);
        snprintf(detail, sizeof(detail), "update_begin: %s", otaml_status_to_str(st));
        return prv_reject(a, m, OTAML_REASON_FLASH_ERROR, detail);
    }
    if (s.resume_offset == 0) {
        otaml_port_store_set_str("dl_sha", sha_hex);
        otaml_port_store_set_u64("dl_off", 0);
        OTAML_LOGI(TAG, "downloading %s (%u bytes) into the passive slot", m->semver, (unsigned)m->size);
    } else {
        snprintf(detail, sizeof(detail), "resuming at %u of %u", (unsigned)s.resume_offset, (unsigned)m->size);
        OTAML_LOGI(TAG, "downloading %s: %s", m->semver, detail);
    }
    otaml_agent_post_event(a, OTAML_EVENT_DOWNLOAD_STARTED, m->semver, OTAML_REASON_OK, detail);

    /* An image of at least progress_min_bytes reports download_progress at fixed fractions: the
     * transfer stops at each one, the event goes out, and the next request resumes with Range (an
     * event cannot be posted while the image's connection is open: one TLS session at a time). */
    bool report = a->cfg.progress_min_bytes > 0 && m->size >= a->cfg.progress_min_bytes;
    size_t step = prv_next_milestone(s.guard.received, m->size, 0);
    s.stop_at = report ? prv_milestone_bytes(step, m->size) : 0;
    char range[48];
    otaml_http_response_t resp = {0};
    s.resp = &resp;
    for (;;) {
        otaml_header_t headers[1];
        size_t n_headers = 0;
        s.resume_offset = s.guard.received;
        s.started = s.milestone = false;
        if (s.resume_offset > 0) {
            snprintf(range, sizeof(range), "bytes=%u-", (unsigned)s.resume_offset);
            headers[n_headers++] = (otaml_header_t){"Range", range};
        }
        st = otaml_port_http_get(m->file, headers, n_headers, prv_image_sink, &s, &resp);
        if (!s.milestone || s.oversize || s.flash_error != OTAML_OK) break;
        otaml_port_store_set_u64("dl_off", s.guard.received);
        snprintf(detail, sizeof(detail), "%u%% (%u of %u bytes)", s_progress_pct[step], (unsigned)s.guard.received,
                 (unsigned)m->size);
        otaml_agent_post_event(a, OTAML_EVENT_DOWNLOAD_PROGRESS, m->semver, OTAML_REASON_OK, detail);
        step = prv_next_milestone(s.guard.received, m->size, step + 1);
        s.stop_at = prv_milestone_bytes(step, m->size);
    }

    if (s.oversize) {
        otaml_port_update_abort();
        otaml_download_free(&s.guard);
        prv_forget_download();
        snprintf(detail, sizeof(detail), "server sent more than the declared %u bytes", (unsigned)m->size);
        return prv_reject(a, m, OTAML_REASON_SIZE_MISMATCH, detail);
    }
    if (s.flash_error != OTAML_OK) {
        otaml_port_update_abort();
        otaml_download_free(&s.guard);
        prv_forget_download();
        snprintf(detail, sizeof(detail), "writing the passive slot: %s", otaml_status_to_str(s.flash_error));
        return prv_reject(a, m, s.flash_error == OTAML_ERR_IMAGE ? OTAML_REASON_IMAGE_INVALID : OTAML_REASON_FLASH_ERROR,
                          detail);
    }
    bool wanted = resp.status == 200 || (resp.status == 206 && s.resume_offset > 0);
    if (st != OTAML_OK || !wanted || s.guard.received < m->size) {
        /* Keep what is in flash: the next poll resumes from here. */
        otaml_port_store_set_u64("dl_off", s.guard.received);
        otaml_port_update_abort();
        snprintf(detail, sizeof(detail), "%s, HTTP %d, %u of %u bytes", otaml_status_to_str(st), resp.status,
                 (unsigned)s.guard.received, (unsigned)m->size);
        otaml_download_free(&s.guard);
        OTAML_LOGW(TAG, "download of %s interrupted: %s", m->semver, detail);
        otaml_agent_post_event(a, OTAML_EVENT_DOWNLOAD_FAILED, m->semver, OTAML_REASON_DOWNLOAD_ERROR, detail);
        return OTAML_POLL_RETRY;
    }
    if (otaml_download_finish(&s.guard, m->sha256) != OTAML_OK) {
        otaml_port_update_abort();
        prv_forget_download();
        return prv_reject(a, m, OTAML_REASON_HASH_MISMATCH, "sha256 of the downloaded image differs from the manifest");
    }
    otaml_slot_info_t written;
    st = otaml_port_update_end(&written);
    prv_forget_download();
    if (st != OTAML_OK) {
        snprintf(detail, sizeof(detail), "image validation: %s", otaml_status_to_str(st));
        return prv_reject(a, m, OTAML_REASON_IMAGE_INVALID, detail);
    }
    if (strcmp(written.version, m->semver) != 0 || strcmp(written.project, a->cfg.project) != 0) {
        snprintf(detail, sizeof(detail), "image says %s %s, manifest says %s %s", written.project, written.version,
                 a->cfg.project, m->semver);
        return prv_reject(a, m, OTAML_REASON_IMAGE_INVALID, detail);
    }
    otaml_agent_post_event(a, OTAML_EVENT_VERIFIED, m->semver, OTAML_REASON_OK, "");

    /* inst_ver goes last: it makes the record count. A stale inst_why from an interrupted earlier
     * record would otherwise be read as this install's verdict. */
    otaml_port_store_erase("inst_why");
    otaml_port_store_erase("inst_det");
    if (otaml_port_store_set_u64("mf_prev", a->installed_manifest_version) != OTAML_OK ||
        otaml_port_store_set_u64("mf_ver", m->manifest_version) != OTAML_OK ||
        otaml_port_store_set_u64("inst_ur", otaml_agent_unreachable_count(m->semver)) != OTAML_OK ||
        otaml_port_store_set_str("inst_ver", m->semver) != OTAML_OK) {
        return prv_reject(a, m, OTAML_REASON_FLASH_ERROR, "cannot persist the install record");
    }
    a->installed_manifest_version = m->manifest_version;
    st = otaml_port_update_activate();
    if (st != OTAML_OK) {
        otaml_port_store_erase("inst_ver");
        snprintf(detail, sizeof(detail), "set boot partition: %s", otaml_status_to_str(st));
        return prv_reject(a, m, OTAML_REASON_FLASH_ERROR, detail);
    }
    otaml_agent_post_event(a, OTAML_EVENT_INSTALLED, m->semver, OTAML_REASON_OK, "");
    OTAML_LOGI(TAG, "%s installed; rebooting into it", m->semver);
    otaml_port_reboot();
}

/* ---- the poll ---- */

otaml_status_t otaml_agent_poll(otaml_agent_t *a, otaml_poll_outcome_t *outcome)
{
    *outcome = OTAML_POLL_IDLE;
    if (a->token[0] == '\0') {
        otaml_status_t claimed = otaml_agent_claim(a);
        if (claimed != OTAML_OK) return claimed == OTAML_ERR_TRANSPORT ? claimed : OTAML_OK;
    }
    otaml_agent_outbox_flush(a);

    otaml_checkin_t c;
    otaml_agent_checkin_headers(a, &c, true);
    otaml_buffer_t body = {.cap = OTAML_MAX_MANIFEST_BYTES};
    body.buf = malloc(body.cap);
    if (body.buf == NULL) return OTAML_ERR_NO_MEM;
    otaml_http_response_t resp = {0};
    resp.keyset = malloc(OTAML_MAX_KEYSET_B64 + 1); /* released right after the request */
    resp.keyset_cap = resp.keyset != NULL ? OTAML_MAX_KEYSET_B64 + 1 : 0;
    otaml_status_t st = otaml_port_http_get(a->manifest_url, c.h, c.n, otaml_agent_buffer_sink, &body, &resp);
    if ((st == OTAML_OK || body.overflow) && resp.poll_interval_s > 0) otaml_agent_keyset_take(a, &resp);
    free(resp.keyset);
    resp.keyset = NULL;
    resp.keyset_cap = 0;
    if (st == OTAML_OK || body.overflow) prv_config_take(a, &resp);
    if (st == OTAML_OK && otaml_agent_token_answer(a, &resp, resp.poll_interval_s > 0)) {
        free(body.buf);
        return OTAML_OK; /* the next poll asks again with the previous token */
    }

    if (resp.poll_interval_s > 0) {
        uint32_t floor_s = a->cfg.min_poll_interval_s;
        a->poll_interval_s = resp.poll_interval_s < floor_s ? floor_s : resp.poll_interval_s;
    }
    otaml_manifest_t m = {0};
    if (body.overflow) {
        free(body.buf);
        if (strcmp(a->rejected_etag, resp.etag) != 0 || !resp.etag[0]) {
            snprintf(a->rejected_etag, sizeof(a->rejected_etag), "%s", resp.etag);
            *outcome = prv_reject(a, &m, OTAML_REASON_MANIFEST_TOO_LARGE, "");
        }
        return OTAML_OK;
    }
    if (st != OTAML_OK) {
        free(body.buf);
        OTAML_LOGW(TAG, "poll failed: %s", otaml_status_to_str(st));
        return st;
    }
    if (resp.status != 200) {
        free(body.buf);
        if (resp.status == 401) OTAML_LOGE(TAG, "server refused device %s: check its id and token", a->cfg.device_id);
        else if (resp.status == 403) OTAML_LOGW(TAG, "device %s waits for an operator to accept it", a->cfg.device_id);
        else if (resp.status != 304 && resp.status != 404) OTAML_LOGW(TAG, "poll answered HTTP %d", resp.status);
        else OTAML_LOGD(TAG, "poll: HTTP %d", resp.status);
        return OTAML_OK;
    }

    char signature[OTAML_MAX_SIGNATURE_B64 + 2];
    otaml_agent_manifest_signature(a, &resp, signature, sizeof(signature));

    size_t slot_size = 0;
    otaml_port_passive_slot_size(&slot_size);
    otaml_policy_ctx_t ctx = {
        .now = otaml_port_trusted_time(),
        .project = a->cfg.project,
        .chip = a->cfg.chip,
        .channel = a->cfg.channel,
        .secure_version = a->running.secure_version,
        .last_manifest_version = a->installed_manifest_version,
        .failed_version = a->failed_version,
        .slot_size = slot_size,
    };
    otaml_version_parse(a->running.version, &ctx.running_version);
    otaml_reason_t reason;
    otaml_decision_t d = otaml_policy_evaluate(a->ring, body.buf, body.len, signature, &ctx, &m, &reason);
    free(body.buf);

    switch (d) {
    case OTAML_DECISION_NO_UPDATE:
        snprintf(a->etag, sizeof(a->etag), "%s", resp.etag);
        OTAML_LOGD(TAG, "manifest %s (#%llu): no update", m.semver, (unsigned long long)m.manifest_version);
        return OTAML_OK;
    case OTAML_DECISION_REJECT:
        snprintf(a->etag, sizeof(a->etag), "%s", resp.etag);
        if (strcmp(a->rejected_etag, resp.etag) != 0 || !resp.etag[0]) {
            snprintf(a->rejected_etag, sizeof(a->rejected_etag), "%s", resp.etag);
            *outcome = prv_reject(a, &m, reason, "");
        }
        return OTAML_OK;
    case OTAML_DECISION_UPDATE:
        break;
    }
    otaml_status_t queued = otaml_agent_outbox_flush(a);
    if (queued == OTAML_ERR_TRANSPORT || queued == OTAML_ERR_NO_MEM) {
        /* The server hears a rollback before the same version's retake starts. A server that answers
         * and refuses the event (4xx: a static host) never blocks updates. */
        OTAML_LOGW(TAG, "update to %s waits until the server takes the queued event", m.semver);
        *outcome = OTAML_POLL_RETRY;
        return OTAML_OK;
    }
    OTAML_LOGI(TAG, "update offered: %s -> %s (manifest #%llu)", a->running.version, m.semver,
               (unsigned long long)m.manifest_version);
    a->etag[0] = '\0'; /* until it is installed, keep fetching the manifest in full */
    *outcome = prv_install(a, &m);
    if (*outcome == OTAML_POLL_REJECTED) snprintf(a->etag, sizeof(a->etag), "%s", resp.etag);
    return OTAML_OK;
}

uint32_t otaml_agent_next_delay_ms(const otaml_agent_t *a)
{
    uint32_t base_ms = a->poll_interval_s * 1000u;
    uint32_t jitter = base_ms / 10u;
    return base_ms - jitter / 2u + (jitter ? otaml_port_random() % (jitter + 1u) : 0u);
}
