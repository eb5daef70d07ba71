/*
 * The simulator's device health: what otaml_port_health reports on the host. The figures are the
 * simulator's own, not an ESP32's:
 *   rssi        the --rssi the simulated station was given (default -55 dBm), moved by up to 4 dB per
 *               reading, as a real link wanders;
 *   free heap   a simulated heap of SIM_HEAP_BUDGET bytes less what this process has allocated
 *               (glibc's mallinfo2), and its lowest value since boot; none in a sanitizer build,
 *               whose allocator glibc cannot count;
 *   uptime      since the process started (a reboot re-executes it);
 *   reset       why the last "boot" happened: poweron for a fresh start (or after a kill, the
 *               simulator's power cut), sw after otaml_port_reboot, panic when a simulation directive
 *               crashed the image; handed to the re-executed process in OTAML_SIM_RESET_REASON.
 */
#define _GNU_SOURCE /* mallinfo2 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "otaml_port.h"
#include "sim_port.h"

#define SIM_HEAP_BUDGET (320u * 1024u) /* about what an ESP32 app has left after Wi-Fi and TLS start */
#define RESET_ENV "OTAML_SIM_RESET_REASON"

static otaml_reset_reason_t s_reason = OTAML_RESET_POWERON;
static otaml_reset_reason_t s_next = OTAML_RESET_SW;
static int s_rssi = -55;
static uint32_t s_min_free;
static struct timespec s_boot;

static size_t prv_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    return mallinfo2().uordblks;
#else
    return 0;
#endif
}

void sim_health_boot(int rssi_dbm)
{
    clock_gettime(CLOCK_MONOTONIC, &s_boot);
    s_rssi = rssi_dbm;
    s_min_free = 0;
    s_reason = OTAML_RESET_POWERON;
    const char *why = getenv(RESET_ENV);
    if (why != NULL) {
#define OTAML_X_MATCH(id, text) \
    if (strcmp(why, text) == 0) s_reason = id;
        OTAML_RESET_REASON_LIST(OTAML_X_MATCH)
#undef OTAML_X_MATCH
        unsetenv(RESET_ENV); /* a later fresh start of this process tree is a power-on again */
    }
}

void sim_health_next_reset(otaml_reset_reason_t reason) { s_next = reason; }

void sim_health_prepare_reboot(void) { setenv(RESET_ENV, otaml_reset_reason_to_str(s_next), 1); }

void otaml_port_health(otaml_health_t *out)
{
    memset(out, 0, sizeof(*out));
    out->has_rssi = true;
    int rssi = s_rssi - (int)(otaml_port_random() % 5u);
    out->rssi = (int8_t)(rssi < -127 ? -127 : rssi > 0 ? 0 : rssi);
    size_t used = prv_in_use();
    if (used > 0) { /* 0: the allocator keeps no count (a sanitizer build): no heap figures, not invented ones */
        out->free_heap = used < SIM_HEAP_BUDGET ? (uint32_t)(SIM_HEAP_BUDGET - used) : 1u;
        if (s_min_free == 0 || out->free_heap < s_min_free) s_min_free = out->free_heap;
        out->min_free_heap = s_min_free;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    out->uptime_s = (uint64_t)(now.tv_sec - s_boot.tv_sec);
    out->reset_reason = s_reason;
}
