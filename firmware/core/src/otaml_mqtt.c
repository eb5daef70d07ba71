/*
 * Predictions on MQTT: the queue between the ML task and the publisher task, and the publisher's
 * rounds. The ML task only ever pushes (a copy and two atomic stores); everything that can wait on a
 * network (connecting, publishing) happens in the publisher task, through the port.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otaml_mqtt.h"
#include "otaml_port.h"

static const char *TAG = "otaml_mqtt";

#define IDLE_MS 50          /* publisher's wait when the queue is empty */
#define AWAY_MS 250         /* and while the broker is away (the port reconnects meanwhile) */
#define BATCH 32            /* predictions per round, so a changed target is followed soon */
#define DROP_LOG_ROUNDS 20  /* about 5 s while the broker is away */

/* ---- the queue ---- */

void otaml_pred_queue_init(otaml_pred_queue_t *q, uint32_t capacity)
{
    memset(q, 0, sizeof(*q));
    if (capacity < 1) capacity = 1;
    if (capacity > OTAML_MQTT_QUEUE_MAX) capacity = OTAML_MQTT_QUEUE_MAX;
    /* a power of two, so slot indexes stay continuous when the counters wrap at 2^32 */
    uint32_t pow2 = 1;
    while (pow2 * 2 <= capacity) pow2 *= 2;
    q->capacity = pow2;
}

/*
 * Drop-oldest without a lock: when full, the producer moves `tail` past the oldest entry with a
 * compare-and-set before it overwrites that slot. A consumer copies a slot first and claims it with a
 * compare-and-set on the same `tail`, so a copy that raced with an overwrite is never returned: its
 * claim fails and it tries the next oldest.
 */
void otaml_pred_queue_push(otaml_pred_queue_t *q, const otaml_prediction_t *p)
{
    unsigned h = atomic_load_explicit(&q->head, memory_order_relaxed); /* only the producer writes head */
    for (;;) {
        unsigned t = atomic_load(&q->tail);
        if (h - t < q->capacity) break;
        if (atomic_compare_exchange_weak(&q->tail, &t, t + 1)) {
            atomic_fetch_add(&q->dropped, 1);
            break;
        }
    }
    q->slot[h & (q->capacity - 1)] = *p;
    atomic_store_explicit(&q->head, h + 1, memory_order_release);
}

bool otaml_pred_queue_pop(otaml_pred_queue_t *q, otaml_prediction_t *out)
{
    for (;;) {
        unsigned t = atomic_load(&q->tail);
        unsigned h = atomic_load_explicit(&q->head, memory_order_acquire);
        if (t == h) return false;
        otaml_prediction_t copy = q->slot[t & (q->capacity - 1)];
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_compare_exchange_strong(&q->tail, &t, t + 1)) {
            *out = copy;
            return true;
        }
    }
}

uint32_t otaml_pred_queue_len(otaml_pred_queue_t *q)
{
    unsigned h = atomic_load(&q->head), t = atomic_load(&q->tail);
    return h - t > q->capacity ? q->capacity : h - t;
}

/* ---- the publisher ---- */

static void prv_copy(char *dst, size_t size, const char *src) { snprintf(dst, size, "%s", src ? src : ""); }

otaml_status_t otaml_mqtt_init(otaml_mqtt_t *m, const otaml_ml_t *ml, const char *device_id, uint32_t queue_len,
                               bool default_enabled, const char *default_url, const char *default_prefix)
{
    memset(m, 0, sizeof(*m));
    otaml_pred_queue_init(&m->queue, queue_len);
    m->ml = ml;
    prv_copy(m->device_id, sizeof(m->device_id), device_id);
    const char *url = default_url ? default_url : "", *prefix = default_prefix ? default_prefix : "";
    if ((url[0] && !otaml_config_mqtt_url_ok(url, strlen(url))) || !otaml_config_mqtt_prefix_ok(prefix, strlen(prefix))) {
        OTAML_LOGE(TAG, "default broker URL %.40s or topic prefix %.40s breaks the configuration rules", url, prefix);
        return OTAML_ERR_INVALID_ARG;
    }
    m->defaults.enabled = default_enabled;
    prv_copy(m->defaults.url, sizeof(m->defaults.url), url);
    prv_copy(m->defaults.prefix, sizeof(m->defaults.prefix), prefix);
    m->posted[0] = m->defaults;
    m->active_generation = (unsigned)-1; /* the first round starts (or not) the client */
    atomic_store(&m->enabled, default_enabled && url[0] != '\0');
    return OTAML_OK;
}

void otaml_mqtt_configure(otaml_mqtt_t *m, const otaml_config_t *cfg)
{
    otaml_mqtt_target_t t = m->defaults;
    if (cfg->mqtt_enabled >= 0) t.enabled = cfg->mqtt_enabled == 1;
    if (cfg->mqtt_url[0]) prv_copy(t.url, sizeof(t.url), cfg->mqtt_url);
    if (cfg->mqtt_prefix[0]) prv_copy(t.prefix, sizeof(t.prefix), cfg->mqtt_prefix);
    /* the OTA task is the only writer: fill the buffer the reader is not told about, then flip */
    unsigned next = atomic_load(&m->generation) + 1;
    m->posted[next & 1] = t;
    atomic_store(&m->generation, next);
    atomic_store(&m->enabled, t.enabled && t.url[0] != '\0');
}

void otaml_mqtt_offer(otaml_mqtt_t *m, const otaml_prediction_t *p)
{
    if (atomic_load(&m->enabled)) otaml_pred_queue_push(&m->queue, p);
}

/* Labels and model ids come from the signed image's card; still, nothing but these characters goes
 * into a payload unescaped. */
static void prv_safe(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < size; i++) {
        char c = src[i];
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' ||
                  c == '-' || c == ':' || c == '/';
        dst[i] = ok ? c : '?';
    }
    dst[i] = '\0';
}

otaml_status_t otaml_mqtt_format(otaml_mqtt_t *m, const otaml_prediction_t *p)
{
    const otaml_model_card_t *card = &m->ml->card;
    int n = snprintf(m->topic, sizeof(m->topic), "%s/%s/inference", m->active.prefix, m->device_id);
    if (n < 0 || (size_t)n >= sizeof(m->topic)) return OTAML_ERR_TOO_LARGE;
    char label[sizeof(card->labels[0])], model[sizeof(m->ml->model_id)];
    prv_safe(label, sizeof(label), p->label >= 0 && p->label < card->n_labels ? card->labels[p->label] : "?");
    prv_safe(model, sizeof(model), m->ml->model_id);
    size_t pos = 0, size = sizeof(m->payload);
    n = snprintf(m->payload, size, "{\"device_id\":\"%s\",\"model\":\"%s\",\"seq\":%lu,\"label\":\"%s\",\"class\":%d,\"scores\":[",
                 m->device_id, model, (unsigned long)p->seq, label, (int)p->label);
    if (n < 0 || (size_t)n >= size) return OTAML_ERR_TOO_LARGE;
    pos = (size_t)n;
    for (int i = 0; i < card->n_labels; i++) {
        n = snprintf(m->payload + pos, size - pos, "%s%d", i ? "," : "", (int)p->scores[i]);
        if (n < 0 || (size_t)n >= size - pos) return OTAML_ERR_TOO_LARGE;
        pos += (size_t)n;
    }
    n = snprintf(m->payload + pos, size - pos, "],\"latency_us\":%lu,\"uptime_ms\":%llu,\"dropped\":%u}",
                 (unsigned long)p->latency_us, (unsigned long long)p->uptime_ms, atomic_load(&m->queue.dropped));
    if (n < 0 || (size_t)n >= size - pos) return OTAML_ERR_TOO_LARGE;
    return OTAML_OK;
}

/* A changed target: stop what runs, start what is wanted. Credentials are NVS's (provisioned beside the
 * device token), never the configuration's: the server does not hold them. */
static void prv_follow(otaml_mqtt_t *m)
{
    unsigned gen = atomic_load(&m->generation);
    if (gen == m->active_generation) return;
    otaml_mqtt_target_t want = m->posted[gen & 1];
    if (atomic_load(&m->generation) != gen) return; /* posted again meanwhile: next round */
    m->active_generation = gen;
    bool run = want.enabled && want.url[0] != '\0';
    if (m->started && (!run || strcmp(want.url, m->active.url) != 0)) {
        otaml_port_mqtt_stop();
        m->started = false;
        m->was_connected = false;
        OTAML_LOGI(TAG, "stopped publishing to %s", m->active.url);
    }
    m->active = want;
    if (!run || m->started) return;
    static char user[65], pass[129];
    if (otaml_port_store_get_str("mqtt_user", user, sizeof(user)) != OTAML_OK) user[0] = '\0';
    if (otaml_port_store_get_str("mqtt_pass", pass, sizeof(pass)) != OTAML_OK) pass[0] = '\0';
    otaml_mqtt_conn_t conn = {.url = want.url, .client_id = m->device_id, .username = user[0] ? user : NULL,
                              .password = pass[0] ? pass : NULL};
    otaml_status_t st = otaml_port_mqtt_start(&conn);
    memset(pass, 0, sizeof(pass));
    if (st != OTAML_OK) {
        OTAML_LOGW(TAG, "cannot start an MQTT client for %s: %s (predictions are dropped)", want.url, otaml_status_to_str(st));
        return;
    }
    m->started = true;
    OTAML_LOGI(TAG, "publishing predictions to %s, topic %s/%s/inference (queue of %u)", want.url, want.prefix,
               m->device_id, (unsigned)m->queue.capacity);
}

uint32_t otaml_mqtt_step(otaml_mqtt_t *m)
{
    prv_follow(m);
    uint32_t dropped = atomic_load(&m->queue.dropped);
    m->rounds++;
    /* the first drop at once, then at most one line every DROP_LOG_ROUNDS rounds (seconds, not floods) */
    if (dropped != m->logged_drops && (m->logged_drops == 0 || m->rounds - m->logged_round >= DROP_LOG_ROUNDS)) {
        m->logged_round = m->rounds;
        OTAML_LOGW(TAG, "%u predictions dropped so far (queue of %u full: broker away or slow)", (unsigned)dropped,
                   (unsigned)m->queue.capacity);
        m->logged_drops = dropped;
    }
    if (!m->started) {
        otaml_prediction_t stale;
        while (otaml_pred_queue_pop(&m->queue, &stale)) {} /* switched off: nothing waits for a broker */
        return AWAY_MS;
    }
    bool connected = otaml_port_mqtt_connected();
    if (connected != m->was_connected) {
        if (connected) OTAML_LOGI(TAG, "connected to %s", m->active.url);
        else OTAML_LOGW(TAG, "broker %s away: predictions queue (at most %u, oldest dropped)", m->active.url,
                        (unsigned)m->queue.capacity);
        m->was_connected = connected;
    }
    if (!connected) return AWAY_MS;
    otaml_prediction_t p;
    for (int i = 0; i < BATCH; i++) {
        if (!otaml_pred_queue_pop(&m->queue, &p)) return IDLE_MS;
        if (otaml_mqtt_format(m, &p) != OTAML_OK) continue;
        if (otaml_port_mqtt_publish(m->topic, m->payload, strlen(m->payload)) == OTAML_OK) {
            atomic_fetch_add(&m->published, 1);
        } else {
            atomic_fetch_add(&m->failed, 1);
        }
    }
    return 0;
}

otaml_status_t otaml_mqtt_url_split(const char *url, char *host, size_t host_size, int *port, bool *tls)
{
    if (url == NULL || !otaml_config_mqtt_url_ok(url, strlen(url))) return OTAML_ERR_INVALID_ARG;
    *tls = strncmp(url, "mqtts://", 8) == 0;
    const char *h = url + (*tls ? 8 : 7), *end;
    if (*h == '[') {
        end = strchr(h, ']');
        h++;
    } else {
        end = strchr(h, ':');
        if (end == NULL) end = h + strlen(h);
    }
    if ((size_t)(end - h) + 1 > host_size) return OTAML_ERR_INVALID_ARG;
    memcpy(host, h, (size_t)(end - h));
    host[end - h] = '\0';
    const char *colon = strchr(end, ':');
    *port = colon ? atoi(colon + 1) : (*tls ? 8883 : 1883);
    return OTAML_OK;
}

void otaml_mqtt_stop(otaml_mqtt_t *m)
{
    if (m->started) otaml_port_mqtt_stop();
    m->started = false;
    OTAML_LOGI(TAG, "published %u predictions, dropped %u, failed %u", atomic_load(&m->published),
               atomic_load(&m->queue.dropped), atomic_load(&m->failed));
}
