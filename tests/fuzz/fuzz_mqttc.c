/* fuzz_mqttc.c — libFuzzer harness for the MQTT client's input path
 * (src/mqttc/client.c): whatever a server sends, the client either handles
 * it or closes with a reason, once, and its bookkeeping holds.
 *
 * Input: byte 0 picks the level (bit 0: 5.0), whether the client is put up
 * by a valid CONNACK first (bit 1: else the fuzz bytes must bring their
 * own), and the read size (bits 2-7: 1..64 bytes at a time, so packets are
 * cut everywhere and go through the carry and the heap buffer). Before the
 * fuzz bytes an up client has 3 QoS 1 and 3 QoS 2 publishes in flight, so
 * acks find something to match. No socket: vg_mqttc_input is fed directly
 * and nothing is flushed. */
#include "core/err.h"
#include "mqtt/codec.h"
#include "mqttc/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "check failed %s:%d: %s\n", __FILE__, __LINE__, #cond);                                    \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static int closes, acks;

static void on_close(vg_mqttc_t *c, vg_mqttc_reason_t why, int detail)
{
    closes++;
    CHECK(why != VG_MQTTC_R_NONE);
}

static void on_ack(vg_mqttc_t *c, const vg_mqttc_ack_t *a)
{
    acks++;
    CHECK(a->qos == 1 || a->qos == 2);
}

static void on_message(vg_mqttc_t *c, const vg_mqtt_publish_t *m)
{
    CHECK(m->qos <= 2);
    CHECK(m->payload.len <= 4096);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    uint8_t level = mode & 1 ? VG_MQTT_V5 : VG_MQTT_V311;
    size_t chunk = (size_t)(mode >> 2) + 1;
    static uint8_t scratch[256];
    vg_mqttc_cfg_t cfg = {
        .level = level,
        .keepalive_s = 30,
        .max_packet = 4096,
        .out_max = 1u << 16,
        .scratch = scratch,
        .scratch_len = sizeof scratch,
        .on_ack = on_ack,
        .on_message = on_message,
        .on_close = on_close,
    };
    vg_mqttc_flight_t ring[8];
    vg_mqttc_t c;
    closes = acks = 0;
    vg_mqttc_init(&c, &cfg, ring, 8);
    CHECK(vg_mqttc_start(&c, -1, false, "fuzz", 4, 1000) == VG_OK);
    if (mode & 2) {
        uint8_t ack[16];
        int n = vg_mqtt_encode_connack(ack, sizeof ack, level, false, 0, NULL);
        CHECK(n > 0 && vg_mqttc_input(&c, ack, (size_t)n, 2000) == VG_OK);
        CHECK(vg_mqttc_up(&c));
        vg_mqtt_publish_t m = {.topic = {(const uint8_t *)"t", 1}, .payload = {(const uint8_t *)"p", 1}};
        for (int k = 0; k < 6; k++) {
            m.qos = k < 3 ? 1 : 2;
            CHECK(vg_mqttc_publish(&c, &m, 3000) == VG_OK);
        }
        CHECK(vg_mqttc_inflight(&c) == 6);
    }
    size_t off = 1;
    uint64_t now = 4000;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        int rc = vg_mqttc_input(&c, data + off, n, now);
        off += n;
        now += 1000;
        int st = vg_mqttc_state(&c);
        CHECK(st == VG_MQTTC_CONNACK || st == VG_MQTTC_UP || st == VG_MQTTC_CLOSED);
        CHECK(vg_mqttc_inflight(&c) <= 8);
        if (st == VG_MQTTC_CLOSED) {
            CHECK(rc < 0 && closes == 1 && vg_mqttc_reason(&c) != VG_MQTTC_R_NONE);
            break;
        }
        CHECK(rc == VG_OK && closes == 0);
        /* Acks queued for the server stay within the buffer limit. */
        CHECK(vg_mqttc_pending(&c) <= cfg.out_max);
        if (vg_mqttc_pending(&c) > 4096)
            vg_mqttc_consume(&c, vg_mqttc_pending(&c)); /* as if written */
        CHECK(vg_mqttc_tick(&c, now) == VG_OK);
    }
    CHECK(acks <= 6);
    vg_mqttc_deinit(&c);
    return 0;
}
