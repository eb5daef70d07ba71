/*
 * The ESP-IDF port's ML interpreter: TensorFlow Lite Micro (espressif/esp-tflite-micro, pinned in
 * main/idf_component.yml). The op resolver registers exactly the ops the model package may use:
 * otaml.ml.package.FIRMWARE_OPS lists the same set, and a test keeps the two in step.
 */
#include <cstring>
#include <new>

#include "esp_log.h"
#include "esp_timer.h"
#include "sdkconfig.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

#include "otaml_port.h"

static const char *TAG = "ml_tflm";

namespace {
constexpr int kOpCount = 6;
alignas(16) uint8_t s_arena[CONFIG_OTAML_ML_ARENA_BYTES];
alignas(tflite::MicroInterpreter) uint8_t s_interpreter_buf[sizeof(tflite::MicroInterpreter)];
tflite::MicroInterpreter *s_interpreter = nullptr;
tflite::MicroMutableOpResolver<kOpCount> *s_resolver = nullptr;
alignas(tflite::MicroMutableOpResolver<kOpCount>) uint8_t s_resolver_buf[sizeof(tflite::MicroMutableOpResolver<kOpCount>)];

tflite::MicroMutableOpResolver<kOpCount> &resolver()
{
    if (s_resolver == nullptr) {
        s_resolver = new (s_resolver_buf) tflite::MicroMutableOpResolver<kOpCount>();
        s_resolver->AddFullyConnected();
        s_resolver->AddSoftmax();
        s_resolver->AddRelu();
        s_resolver->AddQuantize();
        s_resolver->AddDequantize();
        s_resolver->AddReshape();
    }
    return *s_resolver;
}
}  // namespace

extern "C" uint64_t otaml_port_uptime_us(void) { return (uint64_t)esp_timer_get_time(); }

extern "C" otaml_status_t otaml_port_ml_load(const uint8_t *model_data, size_t len, size_t arena_bytes, size_t *n_in,
                                             size_t *n_out)
{
    (void)len; /* a flatbuffer carries its own offsets; the golden check catches a damaged one */
    if (s_interpreter != nullptr) {
        s_interpreter->~MicroInterpreter();
        s_interpreter = nullptr;
    }
    if (arena_bytes > sizeof(s_arena)) {
        ESP_LOGE(TAG, "model needs a %u-byte arena, CONFIG_OTAML_ML_ARENA_BYTES reserves %u", (unsigned)arena_bytes,
                 (unsigned)sizeof(s_arena));
        return OTAML_ERR_NO_MEM;
    }
    const tflite::Model *model = tflite::GetModel(model_data);
    if (model == nullptr || model->version() != TFLITE_SCHEMA_VERSION) {
        ESP_LOGE(TAG, "model schema version %u, expected %d", model ? (unsigned)model->version() : 0u, TFLITE_SCHEMA_VERSION);
        return OTAML_ERR_PARSE;
    }
    s_interpreter = new (s_interpreter_buf) tflite::MicroInterpreter(model, resolver(), s_arena, sizeof(s_arena));
    if (s_interpreter->AllocateTensors() != kTfLiteOk) {
        ESP_LOGE(TAG, "AllocateTensors failed (arena %u bytes)", (unsigned)sizeof(s_arena));
        s_interpreter->~MicroInterpreter();
        s_interpreter = nullptr;
        return OTAML_ERR_PARSE;
    }
    TfLiteTensor *in = s_interpreter->input(0), *out = s_interpreter->output(0);
    if (in->type != kTfLiteInt8 || out->type != kTfLiteInt8) return OTAML_ERR_PARSE;
    *n_in = in->bytes;
    *n_out = out->bytes;
    ESP_LOGI(TAG, "arena used %u of %u bytes", (unsigned)s_interpreter->arena_used_bytes(), (unsigned)sizeof(s_arena));
    return OTAML_OK;
}

extern "C" otaml_status_t otaml_port_ml_invoke(const int8_t *in, size_t n_in, int8_t *out, size_t n_out)
{
    if (s_interpreter == nullptr) return OTAML_ERR_STATE;
    TfLiteTensor *input = s_interpreter->input(0), *output = s_interpreter->output(0);
    if (input->bytes != n_in || output->bytes != n_out) return OTAML_ERR_STATE;
    memcpy(input->data.int8, in, n_in);
    if (s_interpreter->Invoke() != kTfLiteOk) return OTAML_ERR_IO;
    memcpy(out, output->data.int8, n_out);
    return OTAML_OK;
}
