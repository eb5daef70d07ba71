/*
 * The rollback gate: the first boot of a new image decides whether it stays (manifests/README.md,
 * "Rollback"). In order:
 *   1. the self-test, which needs no network: a failure rolls back at once (self_test_failed);
 *   2. the server: wait for an IP address, then ask, with exponential backoff and jitter, until it
 *      answers or the confirmation window closes. An answer confirms the image. The otaml server
 *      refusing this image's check-in (400, 401) rolls back at once (self_test_failed): an image that
 *      cannot check in could never be updated again. No answer rolls back as server_unreachable,
 *      which the previous image forgives up to unreachable_retakes times per version.
 *
 * Persistent writes, each safe against a power cut right after it:
 *   rolling back: inst_det, then inst_why (the verdict), then the slot is marked invalid. A reset
 *     before the verdict, anywhere in the window, leaves the image pending: the bootloader rolls it
 *     back and the previous image reads reset_while_pending. It cannot tell a power cut from a crash,
 *     so that counts as failed, as before the window existed: a crash-looping build is never retaken.
 *   settling it in the previous image: ur_ver/ur_count (n = inst_ur + 1, an assignment, so a repeat
 *     counts the same), failed_ver, mf_ver, the outbox; inst_ver is erased only after all of them, so
 *     an interrupted settlement is redone identically at the next boot.
 *   confirming: the slot is marked valid first, then inst_* and ur_* are erased.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otaml_agent_priv.h"
#include "otaml_manifest.h"

static const char *TAG = "otaml_gate";

typedef enum {
    PRV_NO_ANSWER, /* transport error, or a response that is not the release server's */
    PRV_ANSWERED,  /* the server, or a static host's signed manifest, answered the check-in */
    PRV_REFUSED,   /* the otaml server refused this image's check-in */
} prv_answer_t;

uint64_t otaml_agent_unreachable_count(const char *version)
{
    char counted[32];
    if (otaml_port_store_get_str("ur_ver", counted, sizeof(counted)) != OTAML_OK || strcmp(counted, version) != 0) {
        return 0;
    }
    return otaml_agent_store_u64_or_zero("ur_count");
}

static void prv_forget_install_record(void)
{
    otaml_port_store_erase("inst_ver"); /* first: without it the rest is never read */
    otaml_port_store_erase("inst_why");
    otaml_port_store_erase("inst_det");
    otaml_port_store_erase("inst_ur");
}

/* ---- asking the server ---- */

static bool prv_signed_manifest(otaml_agent_t *a, const otaml_http_response_t *resp, const otaml_buffer_t *body)
{
    char signature[OTAML_MAX_SIGNATURE_B64 + 2];
    otaml_agent_manifest_signature(a, resp, signature, sizeof(signature));
    return signature[0] != '\0' && otaml_manifest_verify(a->ring, body->buf, body->len, signature, NULL) == OTAML_OK;
}

/*
 * One attempt. Only the otaml server's own answers are judged: it marks every poll answer (200, 304,
 * 400, 401, 404) with X-Otaml-Poll-Interval, which a proxy's 502/503/504 or a captive portal's page
 * does not carry. A static host cannot set headers, so there an unmarked 200 counts only when its body
 * is a manifest signed with a pinned key. Everything else is no answer: it says nothing about this
 * image, so the gate asks again.
 */
static prv_answer_t prv_ask_server(otaml_agent_t *a, char *why, size_t size)
{
    otaml_checkin_t c;
    otaml_agent_checkin_headers(a, &c, false);
    otaml_buffer_t body = {.cap = OTAML_MAX_MANIFEST_BYTES};
    body.buf = malloc(body.cap);
    if (body.buf == NULL) {
        snprintf(why, size, "%s", otaml_status_to_str(OTAML_ERR_NO_MEM));
        return PRV_NO_ANSWER;
    }
    otaml_http_response_t resp = {0};
    otaml_status_t st = otaml_port_http_get(a->manifest_url, c.h, c.n, otaml_agent_buffer_sink, &body, &resp);
    bool from_server = resp.poll_interval_s > 0;
    int s = resp.status;
    prv_answer_t answer = PRV_NO_ANSWER;
    bool token_retry = st == OTAML_OK && otaml_agent_token_answer(a, &resp, from_server);
    if (st != OTAML_OK && !body.overflow) {
        snprintf(why, size, "%s", otaml_status_to_str(st));
    } else if (token_retry) {
        snprintf(why, size, "the rotated token was refused: asking again with the previous one");
    } else if (from_server && (s == 400 || s == 401)) {
        snprintf(why, size, "the server refused this image's check-in: HTTP %d (%s)", s,
                 s == 401 ? "device id or token" : "malformed check-in");
        answer = PRV_REFUSED;
    } else if (from_server && ((s >= 200 && s < 300) || s == 304 || s == 404)) {
        snprintf(why, size, "HTTP %d", s);
        answer = PRV_ANSWERED;
    } else if (from_server) {
        snprintf(why, size, "HTTP %d from the server", s); /* 5xx, 429: the server's trouble, not the image's */
    } else if (s == 200 && !body.overflow && prv_signed_manifest(a, &resp, &body)) {
        snprintf(why, size, "a signed manifest from a static host");
        answer = PRV_ANSWERED;
    } else {
        snprintf(why, size, "HTTP %d without %s", s, OTAML_H_POLL_INTERVAL);
    }
    free(body.buf);
    return answer;
}

static uint32_t prv_left_ms(uint64_t start_us, uint32_t window_ms)
{
    uint64_t elapsed_ms = (otaml_port_uptime_us() - start_us) / 1000u;
    return elapsed_ms >= window_ms ? 0 : (uint32_t)(window_ms - elapsed_ms);
}

/* Until the server answers or the window closes; detail says how it ended. */
static prv_answer_t prv_wait_for_server(otaml_agent_t *a, char *detail, size_t size)
{
    const otaml_agent_config_t *cfg = &a->cfg;
    uint32_t window_ms = cfg->confirm_window_s * 1000u;
    uint32_t min_ms = cfg->confirm_backoff_min_ms > 0 ? cfg->confirm_backoff_min_ms : 1;
    uint32_t max_ms = cfg->confirm_backoff_max_ms > min_ms ? cfg->confirm_backoff_max_ms : min_ms;
    uint32_t delay_ms = min_ms;
    uint64_t start = otaml_port_uptime_us();
    unsigned attempts = 0;
    char why[96] = "";
    for (;;) {
        uint32_t left = prv_left_ms(start, window_ms);
        if (otaml_port_network_wait(left) != OTAML_OK) {
            snprintf(why, sizeof(why), "no IP address"); /* nothing asked: not an attempt */
        } else {
            attempts++;
            prv_answer_t answer = prv_ask_server(a, why, sizeof(why));
            if (answer != PRV_NO_ANSWER) {
                snprintf(detail, size, "%s", why);
                OTAML_LOGI(TAG, "server answered (%s) at attempt %u, %u ms into the window", why, attempts,
                           window_ms - prv_left_ms(start, window_ms));
                return answer;
            }
        }
        left = prv_left_ms(start, window_ms);
        if (left == 0) break;
        /* Equal jitter: a fleet rebooting together after an outage does not return in lockstep. */
        uint32_t pause = delay_ms / 2u + otaml_port_random() % (delay_ms / 2u + 1u);
        if (pause > left) pause = left;
        OTAML_LOGW(TAG, "no answer from the server (%s): asking again in %u ms, %u ms of the window left", why,
                   (unsigned)pause, (unsigned)left);
        otaml_port_delay_ms(pause);
        delay_ms = delay_ms > max_ms / 2u ? max_ms : delay_ms * 2u;
    }
    snprintf(detail, size, "no answer from the server within %u s (%u attempt%s; last: %s)", (unsigned)cfg->confirm_window_s,
             attempts, attempts == 1 ? "" : "s", why);
    return PRV_NO_ANSWER;
}

/* ---- the verdict ---- */

static otaml_status_t prv_roll_back(otaml_agent_t *a, otaml_reason_t reason, const char *detail)
{
    otaml_port_store_set_str("inst_det", detail);
    otaml_port_store_set_str("inst_why", otaml_reason_to_str(reason)); /* the verdict, written last */
    otaml_status_t st = otaml_port_mark_invalid_and_reboot();
    OTAML_LOGE(TAG, "could not mark %s invalid: %s", a->running.version, otaml_status_to_str(st));
    return st;
}

static otaml_status_t prv_gate(otaml_agent_t *a)
{
    otaml_slot_info_t *r = &a->running;
    bool booted_sent = otaml_agent_post_event(a, OTAML_EVENT_BOOTED, r->version, OTAML_REASON_OK, r->label) == OTAML_OK;
    char selftest[OTAML_DETAIL_MAX] = "", detail[OTAML_DETAIL_MAX] = "";
    if (a->cfg.selftest != NULL && !a->cfg.selftest(a->cfg.selftest_ctx, selftest, sizeof(selftest))) {
        OTAML_LOGE(TAG, "self-test of %s failed (%s): rolling back", r->version, selftest);
        return prv_roll_back(a, OTAML_REASON_SELF_TEST_FAILED, selftest);
    }
    OTAML_LOGI(TAG, "self-test of %s passed (%s); asking the server for up to %u s", r->version, selftest,
               (unsigned)a->cfg.confirm_window_s);
    switch (prv_wait_for_server(a, detail, sizeof(detail))) {
    case PRV_REFUSED:
        OTAML_LOGE(TAG, "%s: rolling back %s", detail, r->version);
        return prv_roll_back(a, OTAML_REASON_SELF_TEST_FAILED, detail);
    case PRV_NO_ANSWER:
        OTAML_LOGE(TAG, "%s: rolling back %s", detail, r->version);
        return prv_roll_back(a, OTAML_REASON_SERVER_UNREACHABLE, detail);
    case PRV_ANSWERED:
        break;
    }
    OTAML_RETURN_IF_ERROR(otaml_port_mark_valid());
    r->state = OTAML_IMG_VALID;
    prv_forget_install_record();
    if (otaml_agent_unreachable_count(r->version) > 0) {
        otaml_port_store_erase("ur_ver");
        otaml_port_store_erase("ur_count");
    }
    OTAML_LOGI(TAG, "%s confirmed: rollback cancelled", r->version);
    if (!booted_sent) otaml_agent_post_event(a, OTAML_EVENT_BOOTED, r->version, OTAML_REASON_OK, r->label);
    otaml_agent_post_event(a, OTAML_EVENT_CONFIRMED, r->version, OTAML_REASON_OK, selftest);
    return OTAML_OK;
}

/* In the previous image, after the bootloader returned to it: what became of the install. */
static void prv_settle_install(otaml_agent_t *a)
{
    const otaml_slot_info_t *r = &a->running;
    char installed[32];
    if (otaml_port_store_get_str("inst_ver", installed, sizeof(installed)) != OTAML_OK) return;
    if (strcmp(installed, r->version) != 0) {
        char why[32], stored[OTAML_DETAIL_MAX], detail[OTAML_DETAIL_MAX + 40];
        otaml_agent_store_str_or_empty("inst_why", why, sizeof(why));
        otaml_agent_store_str_or_empty("inst_det", stored, sizeof(stored));
        otaml_reason_t reason = why[0] ? otaml_reason_from_str(why) : OTAML_REASON_RESET_WHILE_PENDING;
        bool retake = false;
        snprintf(detail, sizeof(detail), "%s", stored);
        if (reason == OTAML_REASON_SERVER_UNREACHABLE) {
            unsigned long long n = otaml_agent_store_u64_or_zero("inst_ur") + 1;
            retake = n <= a->cfg.unreachable_retakes;
            otaml_port_store_set_u64("ur_count", n);
            otaml_port_store_set_str("ur_ver", installed);
            size_t used = strlen(detail);
            if (retake) snprintf(detail + used, sizeof(detail) - used, "; retake %llu of %u", n, (unsigned)a->cfg.unreachable_retakes);
            else snprintf(detail + used, sizeof(detail) - used, "; no retake left (%u allowed)", (unsigned)a->cfg.unreachable_retakes);
        }
        if (retake) {
            OTAML_LOGW(TAG, "%s did not stick (%s): running %s again; it will be taken again", installed,
                       otaml_reason_to_str(reason), r->version);
        } else {
            OTAML_LOGW(TAG, "%s did not stick (%s): running %s again; it will not be retried", installed,
                       otaml_reason_to_str(reason), r->version);
            otaml_port_store_set_str("failed_ver", installed);
            snprintf(a->failed_version, sizeof(a->failed_version), "%s", installed);
        }
        /* The running image came from the manifest before; accept that manifest again. */
        uint64_t prev = 0;
        if (otaml_port_store_get_u64("mf_prev", &prev) == OTAML_OK && otaml_port_store_set_u64("mf_ver", prev) == OTAML_OK) {
            a->installed_manifest_version = prev;
        }
        detail[OTAML_DETAIL_MAX - 1] = '\0';
        otaml_agent_outbox_put(a, OTAML_EVENT_ROLLED_BACK, installed, reason, detail);
    }
    prv_forget_install_record();
}

otaml_status_t otaml_agent_boot(otaml_agent_t *a)
{
    otaml_slot_info_t *r = &a->running;
    OTAML_LOGI(TAG, "running %s %s from %s (%s)", r->project, r->version, r->label, otaml_img_state_to_str(r->state));
    if (r->state == OTAML_IMG_PENDING_VERIFY) return prv_gate(a);
    prv_settle_install(a);
    otaml_agent_outbox_flush(a);
    return OTAML_OK;
}
