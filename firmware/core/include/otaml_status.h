/*
 * Status codes of the otaml firmware core. Every core and port function returns one of these;
 * otaml_status_to_str() names it for logs (the ESP-IDF port maps esp_err_t onto them and logs
 * esp_err_to_name() alongside).
 */
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

#define OTAML_STATUS_LIST(X)                                                                  \
    X(OTAML_OK, "ok")                                                                         \
    X(OTAML_ERR_INVALID_ARG, "invalid argument")                                              \
    X(OTAML_ERR_NO_MEM, "out of memory")                                                      \
    X(OTAML_ERR_NOT_FOUND, "not found")                                                       \
    X(OTAML_ERR_IO, "storage or flash error")                                                 \
    X(OTAML_ERR_TRANSPORT, "network transport error")                                         \
    X(OTAML_ERR_HTTP_STATUS, "unexpected HTTP status")                                        \
    X(OTAML_ERR_ABORTED, "transfer stopped by the receiver")                                  \
    X(OTAML_ERR_TOO_LARGE, "larger than allowed")                                             \
    X(OTAML_ERR_SIGNATURE, "signature does not verify")                                       \
    X(OTAML_ERR_PARSE, "malformed input")                                                     \
    X(OTAML_ERR_SIZE, "size mismatch")                                                        \
    X(OTAML_ERR_HASH, "hash mismatch")                                                        \
    X(OTAML_ERR_IMAGE, "image does not validate")                                             \
    X(OTAML_ERR_STATE, "operation not allowed in this state")                                 \
    X(OTAML_ERR_STALE, "not newer than what is applied")                                      \
    X(OTAML_ERR_WRONG_DEVICE, "meant for another device")

typedef enum {
#define OTAML_X_ENUM(name, text) name,
    OTAML_STATUS_LIST(OTAML_X_ENUM)
#undef OTAML_X_ENUM
} otaml_status_t;

/** Human-readable name of a status; never NULL. */
const char *otaml_status_to_str(otaml_status_t status);

#define OTAML_RETURN_IF_ERROR(expr)          \
    do {                                     \
        otaml_status_t _st = (expr);         \
        if (_st != OTAML_OK) return _st;     \
    } while (0)

#ifdef __cplusplus
}
#endif
