/* The prediction queue between the ML task and the MQTT publisher: bounded, drop-oldest, counted,
 * lock-free under a real producer and consumer thread; the payload and topic a prediction becomes. */
#include <pthread.h>
#include <stdatomic.h>

#include "otaml_mqtt.h"
#include "otaml_test.h"

#define PUSHES 200000

typedef struct {
    otaml_pred_queue_t *q;
    atomic_bool done;
    uint32_t popped, last_seq, out_of_order, torn;
} consumer_t;

static void *prv_consume(void *arg)
{
    consumer_t *c = arg;
    otaml_prediction_t p;
    bool first = true;
    for (;;) {
        bool done = atomic_load(&c->done);
        while (otaml_pred_queue_pop(c->q, &p)) {
            if (!first && p.seq <= c->last_seq) c->out_of_order++;
            /* every field of an entry was written from the same seq: a torn copy would mix two */
            if (p.latency_us != p.seq * 3u || p.uptime_ms != (uint64_t)p.seq * 7u || p.scores[3] != (int8_t)p.seq) c->torn++;
            c->last_seq = p.seq;
            first = false;
            c->popped++;
        }
        if (done) return NULL;
    }
}

static otaml_prediction_t prv_prediction(uint32_t seq)
{
    otaml_prediction_t p = {.seq = seq, .label = (int8_t)(seq % 4), .latency_us = seq * 3u, .uptime_ms = (uint64_t)seq * 7u};
    for (int i = 0; i < OTAML_ML_MAX_LABELS; i++) p.scores[i] = (int8_t)seq;
    return p;
}

int main(void)
{
    static otaml_pred_queue_t q;
    otaml_prediction_t p;

    /* Capacity: clamped, and a power of two. */
    otaml_pred_queue_init(&q, 0);
    CHECK_EQ_INT(q.capacity, 1);
    otaml_pred_queue_init(&q, 1000);
    CHECK_EQ_INT(q.capacity, OTAML_MQTT_QUEUE_MAX);
    otaml_pred_queue_init(&q, 24);
    CHECK_EQ_INT(q.capacity, 16);

    /* Full: the oldest go, the newest stay, in order, and each drop is counted. */
    otaml_pred_queue_init(&q, 8);
    CHECK(!otaml_pred_queue_pop(&q, &p));
    for (uint32_t i = 0; i < 20; i++) {
        otaml_prediction_t in = prv_prediction(i);
        otaml_pred_queue_push(&q, &in);
    }
    CHECK_EQ_INT(otaml_pred_queue_len(&q), 8);
    CHECK_EQ_INT(atomic_load(&q.dropped), 12);
    for (uint32_t want = 12; want < 20; want++) {
        CHECK(otaml_pred_queue_pop(&q, &p));
        CHECK_EQ_INT(p.seq, want);
    }
    CHECK(!otaml_pred_queue_pop(&q, &p));

    /* The counters wrap at 2^32 without losing the order (slot indexes stay continuous). */
    otaml_pred_queue_init(&q, 4);
    atomic_store(&q.head, UINT32_MAX - 2);
    atomic_store(&q.tail, UINT32_MAX - 2);
    for (uint32_t i = 0; i < 6; i++) {
        otaml_prediction_t in = prv_prediction(i);
        otaml_pred_queue_push(&q, &in);
    }
    CHECK_EQ_INT(otaml_pred_queue_len(&q), 4);
    for (uint32_t want = 2; want < 6; want++) {
        CHECK(otaml_pred_queue_pop(&q, &p));
        CHECK_EQ_INT(p.seq, want);
    }

    /* A producer that never waits and a consumer racing it: every prediction is either taken once, in
     * order and whole, or counted as dropped. */
    otaml_pred_queue_init(&q, 16);
    consumer_t c = {.q = &q};
    pthread_t t;
    pthread_create(&t, NULL, prv_consume, &c);
    for (uint32_t i = 0; i < PUSHES; i++) {
        otaml_prediction_t in = prv_prediction(i);
        otaml_pred_queue_push(&q, &in);
    }
    atomic_store(&c.done, true);
    pthread_join(t, NULL);
    CHECK_EQ_INT(c.out_of_order, 0);
    CHECK_EQ_INT(c.torn, 0);
    CHECK_EQ_INT(c.popped + atomic_load(&q.dropped), PUSHES);
    CHECK_EQ_INT(c.last_seq, PUSHES - 1);
    printf("threaded: %u taken, %u dropped\n", c.popped, atomic_load(&q.dropped));

    /* The URL rule's parts, as a port needs them. */
    char host[101];
    int port;
    bool tls;
    CHECK_EQ_INT(otaml_mqtt_url_split("mqtts://[::1]:8883", host, sizeof(host), &port, &tls), OTAML_OK);
    CHECK_EQ_STR(host, "::1");
    CHECK(tls && port == 8883);
    CHECK_EQ_INT(otaml_mqtt_url_split("mqtt://broker.local", host, sizeof(host), &port, &tls), OTAML_OK);
    CHECK(!tls && port == 1883 && strcmp(host, "broker.local") == 0);
    CHECK_EQ_INT(otaml_mqtt_url_split("mqtt://u:p@broker", host, sizeof(host), &port, &tls), OTAML_ERR_INVALID_ARG);

    /* Topic and payload of one prediction. */
    static otaml_ml_t ml;
    ml.card.n_labels = 4;
    snprintf(ml.card.labels[0], sizeof(ml.card.labels[0]), "healthy");
    snprintf(ml.card.labels[2], sizeof(ml.card.labels[2]), "over\"driven");
    snprintf(ml.model_id, sizeof(ml.model_id), "amp_health/1");
    static otaml_mqtt_t m;
    CHECK_EQ_INT(otaml_mqtt_init(&m, &ml, "dev-1", 8, false, "", "plant/amp"), OTAML_OK);
    CHECK_EQ_INT(otaml_mqtt_init(&m, &ml, "dev-1", 8, false, "", "plant/#"), OTAML_ERR_INVALID_ARG);
    CHECK_EQ_INT(otaml_mqtt_init(&m, &ml, "dev-1", 8, true, "mqtt://broker:1883", "plant/amp"), OTAML_OK);
    m.active = m.defaults;
    otaml_prediction_t pr = {.seq = 41, .label = 2, .scores = {-128, -100, 127, -128}, .latency_us = 530, .uptime_ms = 9000};
    CHECK_EQ_INT(otaml_mqtt_format(&m, &pr), OTAML_OK);
    CHECK_EQ_STR(m.topic, "plant/amp/dev-1/inference");
    CHECK_EQ_STR(m.payload, "{\"device_id\":\"dev-1\",\"model\":\"amp_health/1\",\"seq\":41,\"label\":\"over?driven\",\"class\":2,"
                            "\"scores\":[-128,-100,127,-128],\"latency_us\":530,\"uptime_ms\":9000,\"dropped\":0}");

    /* Switched off by the configuration: nothing is queued, so nothing is counted as dropped. */
    otaml_config_t cfg;
    otaml_config_init(&cfg);
    cfg.mqtt_enabled = 0;
    otaml_mqtt_configure(&m, &cfg);
    otaml_mqtt_offer(&m, &pr);
    CHECK_EQ_INT(otaml_pred_queue_len(&m.queue), 0);
    cfg.mqtt_enabled = 1;
    otaml_mqtt_configure(&m, &cfg);
    otaml_mqtt_offer(&m, &pr);
    CHECK_EQ_INT(otaml_pred_queue_len(&m.queue), 1);
    CHECK_EQ_STR(m.posted[atomic_load(&m.generation) & 1].url, "mqtt://broker:1883"); /* the build's default stays */

    return test_summary();
}
