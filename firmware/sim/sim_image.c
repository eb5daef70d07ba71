#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "sim_flash.h"
#include "sim_image.h"

#define SIM_SYMBOLS "OTAML-SIM-SYMBOLS:"
#define SYMBOL_ENTRY 40 /* name[32], back offset, length */

uint8_t *sim_image_bytes(int slot, size_t *len)
{
    const sim_partition_t *p = sim_flash_ota_partition(slot);
    sim_image_t img;
    sim_flash_image(p, &img);
    if (!img.valid) return NULL;
    uint8_t *buf = malloc(img.length);
    if (buf == NULL || sim_flash_read(p->offset, buf, img.length) != OTAML_OK) {
        free(buf);
        return NULL;
    }
    *len = img.length;
    return buf;
}

bool sim_image_has(int slot, const char *needle)
{
    size_t len = 0;
    uint8_t *img = sim_image_bytes(slot, &len);
    bool found = img != NULL && memmem(img, len, needle, strlen(needle)) != NULL;
    free(img);
    return found;
}

const uint8_t *sim_image_symbol(const uint8_t *img, size_t len, const char *symbol, uint32_t *data_len)
{
    const uint8_t *table = memmem(img, len, SIM_SYMBOLS, strlen(SIM_SYMBOLS));
    if (table == NULL) return NULL;
    size_t at = (size_t)(table - img) + strlen(SIM_SYMBOLS);
    uint32_t count = 0;
    if (at + 4 > len) return NULL;
    memcpy(&count, img + at, 4);
    at += 4;
    for (uint32_t i = 0; i < count && at + SYMBOL_ENTRY <= len; i++, at += SYMBOL_ENTRY) {
        uint32_t back = 0;
        if (strncmp((const char *)img + at, symbol, 32) != 0) continue;
        memcpy(&back, img + at + 32, 4);
        memcpy(data_len, img + at + 36, 4);
        /* Both must stay inside the image, before the table. */
        if (back > (size_t)(table - img) || *data_len > back) return NULL;
        return table - back;
    }
    return NULL;
}
