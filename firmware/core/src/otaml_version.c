#include <string.h>

#include "otaml_version.h"

bool otaml_version_parse(const char *text, otaml_version_t *out)
{
    uint32_t parts[3] = {0, 0, 0};
    int n = 0;
    const char *p = text;
    memset(out, 0, sizeof(*out));
    if (text == NULL || *p == '\0') return false;
    for (;;) {
        if (n == 3 || *p < '0' || *p > '9') return false;
        if (*p == '0' && p[1] >= '0' && p[1] <= '9') return false; /* one spelling per version */
        uint32_t v = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (uint32_t)(*p++ - '0');
            if (++digits > 5 || v > 65535) return false;
        }
        parts[n++] = v;
        if (*p == '\0') break;
        if (*p++ != '.') return false;
    }
    out->major = (uint16_t)parts[0];
    out->minor = (uint16_t)parts[1];
    out->patch = (uint16_t)parts[2];
    return true;
}

int otaml_version_compare(const otaml_version_t *a, const otaml_version_t *b)
{
    if (a->major != b->major) return a->major < b->major ? -1 : 1;
    if (a->minor != b->minor) return a->minor < b->minor ? -1 : 1;
    if (a->patch != b->patch) return a->patch < b->patch ? -1 : 1;
    return 0;
}
