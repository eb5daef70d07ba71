#include <string.h>

#include "otaml_port.h"
#include "otaml_protocol.h"
#include "otaml_status.h"

/* One switch per X-macro list: a name for every enumerator, a fallback for anything else. */
#define OTAML_X_CASE(name, text) \
    case name:                   \
        return text;
#define OTAML_DEFINE_TO_STR(fn, type, list, fallback) \
    const char *fn(type value)                        \
    {                                                 \
        switch (value) { list(OTAML_X_CASE) }         \
        return fallback;                              \
    }

OTAML_DEFINE_TO_STR(otaml_status_to_str, otaml_status_t, OTAML_STATUS_LIST, "unknown status")
OTAML_DEFINE_TO_STR(otaml_reason_to_str, otaml_reason_t, OTAML_REASON_LIST, "ok")
OTAML_DEFINE_TO_STR(otaml_event_to_str, otaml_event_t, OTAML_EVENT_LIST, "unknown")
OTAML_DEFINE_TO_STR(otaml_reset_reason_to_str, otaml_reset_reason_t, OTAML_RESET_REASON_LIST, "unknown")

otaml_reason_t otaml_reason_from_str(const char *name)
{
#define OTAML_X_IF(id, text) \
    if (strcmp(name, text) == 0) return id;
    OTAML_REASON_LIST(OTAML_X_IF)
#undef OTAML_X_IF
    return OTAML_REASON_OK;
}

const char *otaml_img_state_to_str(otaml_img_state_t state)
{
    switch (state) {
    case OTAML_IMG_NEW: return "new";
    case OTAML_IMG_PENDING_VERIFY: return "pending_verify";
    case OTAML_IMG_VALID: return "valid";
    case OTAML_IMG_INVALID: return "invalid";
    case OTAML_IMG_ABORTED: return "aborted";
    case OTAML_IMG_UNDEFINED: return "undefined";
    }
    return "undefined";
}
