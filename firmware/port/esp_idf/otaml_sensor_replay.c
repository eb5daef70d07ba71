/* The ESP-IDF sensor port: replays the recorded samples linked into the image (firmware/model/
 * samples.csv). Replace this file with an ADC or Modbus driver to read a real amplifier. */
#include <string.h>

#include "otaml_ml.h"
#include "otaml_port.h"

extern const char samples_start[] asm("_binary_samples_csv_start");
extern const char samples_end[] asm("_binary_samples_csv_end");

static otaml_samples_t s_samples;
static size_t s_next;

otaml_status_t otaml_port_sensor_read(float *values, size_t n)
{
    if (s_samples.count == 0) {
        /* EMBED_TXTFILES appends a NUL that is not part of the CSV. */
        otaml_status_t st = otaml_samples_parse(samples_start, (size_t)(samples_end - samples_start) - 1, n, &s_samples);
        if (st != OTAML_OK) return st == OTAML_ERR_PARSE ? OTAML_ERR_STATE : st;
    }
    if (n != s_samples.n_features) return OTAML_ERR_INVALID_ARG;
    memcpy(values, s_samples.values + (s_next++ % s_samples.count) * n, n * sizeof(float));
    return OTAML_OK;
}
