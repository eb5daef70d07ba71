/* Run-time knobs of the POSIX port, set by otaml-sim before the agent starts. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "otaml_protocol.h"

typedef struct {
    int booted_slot;             /* chosen by sim_bootloader_select() at "power on" */
    bool trusted_time;           /* false: the device has no SNTP time (expiry not judged) */
    uint32_t download_rate;      /* bytes/s cap on response bodies (a slow radio); 0 = unlimited */
    bool verbose;                /* D-level logs */
    uint32_t ip_after_ms;        /* the station gets its IP address this long after boot (Wi-Fi joining) */
    char *const *argv;           /* for a reboot: the process restarts itself with these */
    bool log_stderr;             /* logs to stderr (a command whose stdout is JSON) */
} sim_port_config_t;

void sim_port_configure(const sim_port_config_t *cfg);
/** Release libcurl (at exit, so leak checkers see a clean heap). */
void sim_port_shutdown(void);
/** Stop the TFLM worker process (at exit and before a reboot). */
void sim_ml_shutdown(void);
/* Device health (sim_health.c): call at boot with the simulated signal strength; name the reason of
 * the next reset (sw unless set); otaml_port_reboot hands it to the re-executed process. */
void sim_health_boot(int rssi_dbm);
void sim_health_next_reset(otaml_reset_reason_t reason);
void sim_health_prepare_reboot(void);
#include <stddef.h>
#include "otaml_status.h"
/** Load the recorded samples the sensor port replays. */
otaml_status_t sim_sensor_load(size_t n_features);
void sim_sensor_unload(void);
