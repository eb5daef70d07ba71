/* The POSIX sensor port: replays firmware/model/samples.csv in a loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otaml_ml.h"
#include "otaml_port.h"
#include "otaml_sim_config.h"
#include "sim_port.h"

static otaml_samples_t s_samples;
static size_t s_next;

otaml_status_t sim_sensor_load(size_t n_features)
{
    FILE *f = fopen(OTAML_DEFAULT_SAMPLES_CSV, "rb");
    if (f == NULL) return OTAML_ERR_NOT_FOUND;
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *csv = malloc(len + 1);
    otaml_status_t st = OTAML_ERR_NO_MEM;
    if (csv != NULL) {
        st = fread(csv, 1, len, f) == len ? otaml_samples_parse(csv, len, n_features, &s_samples) : OTAML_ERR_IO;
        free(csv);
    }
    fclose(f);
    return st;
}

void sim_sensor_unload(void) { otaml_samples_free(&s_samples); }

otaml_status_t otaml_port_sensor_read(float *values, size_t n)
{
    if (s_samples.count == 0) return OTAML_ERR_STATE;
    if (n != s_samples.n_features) return OTAML_ERR_INVALID_ARG;
    memcpy(values, s_samples.values + (s_next++ % s_samples.count) * n, n * sizeof(float));
    return OTAML_OK;
}
