/*
 * The items of the simulator's NVS (sim_nvs.h): namespaces, writing and reading values by key, on the
 * pages that sim_nvs_pages.c keeps (format, garbage collection, mount-time repair).
 */
#include <stdlib.h>
#include <string.h>

#include "sim_nvs.h"
#include "sim_nvs_pages.h"

#define MAX_NS 254u

/* ---- items ---- */

static bool prv_key_ok(const char *key) { return key != NULL && key[0] != '\0' && strlen(key) <= 15; }

static int prv_ns_index(const char *ns)
{
    nvs_loc_t loc;
    if (!nvs_find(0, ns, -1, &loc) || loc.item.type != SIM_NVS_U8) return -1;
    return nvs_entry(loc.page, loc.entry)[24];
}

static otaml_status_t prv_ns_open(const char *ns, bool create, int *index)
{
    if (!nvs_mounted()) return OTAML_ERR_STATE;
    if (!prv_key_ok(ns)) return OTAML_ERR_INVALID_ARG;
    *index = prv_ns_index(ns);
    if (*index >= 0 || !create) return *index >= 0 ? OTAML_OK : OTAML_ERR_NOT_FOUND;
    bool used[256] = {false};
    uint32_t order[64], n = nvs_ordered(order);
    for (uint32_t i = 0; i < n; i++) {
        for (uint32_t e = 0; e < ENTRIES;) {
            nvs_item_t it;
            uint32_t span = nvs_item_at(order[i], e, &it);
            if (span && it.ns == 0 && it.type == SIM_NVS_U8) used[nvs_entry(order[i], e)[24]] = true;
            e += span ? span : 1;
        }
    }
    int next = 1;
    while (next <= (int)MAX_NS && used[next]) next++;
    if (next > (int)MAX_NS) return OTAML_ERR_NO_MEM;
    uint8_t data8[8];
    memset(data8, 0xFF, sizeof(data8));
    data8[0] = (uint8_t)next;
    OTAML_RETURN_IF_ERROR(nvs_append(0, SIM_NVS_U8, ns, data8, NULL, 0, NULL));
    *index = next;
    return OTAML_OK;
}

static otaml_status_t prv_set(const char *ns, const char *key, uint8_t type, const uint8_t data8[8], const uint8_t *bytes,
                              uint32_t nbytes)
{
    int index;
    if (!prv_key_ok(key)) return OTAML_ERR_INVALID_ARG;
    OTAML_RETURN_IF_ERROR(prv_ns_open(ns, true, &index));
    nvs_loc_t old;
    bool had = nvs_find((uint8_t)index, key, -1, &old);
    if (had && old.item.type == type) {
        const uint8_t *en = nvs_entry(old.page, old.entry);
        bool same = nbytes ? (old.item.size == nbytes && memcmp(en + ENTRY, bytes, nbytes) == 0)
                           : memcmp(en + 24, data8, 8) == 0;
        if (same) return OTAML_OK; /* unchanged: no flash write, as nvs_set_* */
    }
    nvs_loc_t added;
    OTAML_RETURN_IF_ERROR(nvs_append((uint8_t)index, type, key, data8, bytes, nbytes, &added));
    /* The older copy may have moved during garbage collection: look it up again, skipping the new one. */
    if (had) {
        uint32_t order[64], n = nvs_ordered(order);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t p = order[i];
            for (uint32_t e = 0; e < ENTRIES;) {
                nvs_item_t it;
                uint32_t span = nvs_item_at(p, e, &it);
                bool newest = (int)p == added.page && e == added.entry;
                if (span && !newest && it.ns == index && it.type != SIM_NVS_BLOB_DATA && strcmp(it.key, key) == 0) {
                    OTAML_RETURN_IF_ERROR(nvs_set_entry_states(p, e, span, ES_ERASED));
                }
                e += span ? span : 1;
            }
        }
    }
    return OTAML_OK;
}

otaml_status_t sim_nvs_set_u64(const char *ns, const char *key, uint64_t value)
{
    uint8_t data8[8];
    memcpy(data8, &value, 8);
    return prv_set(ns, key, SIM_NVS_U64, data8, NULL, 0);
}

otaml_status_t sim_nvs_set_str(const char *ns, const char *key, const char *value)
{
    size_t len = strlen(value) + 1;
    if (len > SIM_NVS_MAX_STR) return OTAML_ERR_TOO_LARGE;
    uint8_t data8[8];
    uint16_t size = (uint16_t)len;
    uint32_t crc = nvs_crc(0xFFFFFFFFu, (const uint8_t *)value, len);
    memcpy(data8, &size, 2);
    data8[2] = data8[3] = 0xFF;
    memcpy(data8 + 4, &crc, 4);
    return prv_set(ns, key, SIM_NVS_STR, data8, (const uint8_t *)value, (uint32_t)len);
}

otaml_status_t sim_nvs_erase_key(const char *ns, const char *key)
{
    int index;
    otaml_status_t st = prv_ns_open(ns, false, &index);
    if (st == OTAML_ERR_NOT_FOUND) return OTAML_OK;
    OTAML_RETURN_IF_ERROR(st);
    nvs_loc_t loc;
    while (nvs_find((uint8_t)index, key, -1, &loc)) {
        OTAML_RETURN_IF_ERROR(nvs_set_entry_states((uint32_t)loc.page, loc.entry, loc.item.span, ES_ERASED));
    }
    return OTAML_OK;
}

static bool prv_int_of(const nvs_loc_t *loc, uint64_t *value)
{
    const uint8_t *d = nvs_entry((uint32_t)loc->page, loc->entry) + 24;
    switch (loc->item.type) {
    case SIM_NVS_U8: *value = d[0]; return true;
    case SIM_NVS_I8: *value = (uint64_t)(int64_t)(int8_t)d[0]; return true;
    case SIM_NVS_U16: { uint16_t v; memcpy(&v, d, 2); *value = v; return true; }
    case SIM_NVS_I16: { int16_t v; memcpy(&v, d, 2); *value = (uint64_t)(int64_t)v; return true; }
    case SIM_NVS_U32: { uint32_t v; memcpy(&v, d, 4); *value = v; return true; }
    case SIM_NVS_I32: { int32_t v; memcpy(&v, d, 4); *value = (uint64_t)(int64_t)v; return true; }
    case SIM_NVS_U64:
    case SIM_NVS_I64: memcpy(value, d, 8); return true;
    default: return false;
    }
}

otaml_status_t sim_nvs_get_int(const char *ns, const char *key, uint64_t *value)
{
    int index;
    OTAML_RETURN_IF_ERROR(prv_ns_open(ns, false, &index));
    nvs_loc_t loc;
    if (!nvs_find((uint8_t)index, key, -1, &loc) || !prv_int_of(&loc, value)) return OTAML_ERR_NOT_FOUND;
    return OTAML_OK;
}

otaml_status_t sim_nvs_get_str(const char *ns, const char *key, char *buf, size_t size)
{
    int index;
    OTAML_RETURN_IF_ERROR(prv_ns_open(ns, false, &index));
    nvs_loc_t loc;
    if (!nvs_find((uint8_t)index, key, -1, &loc) || loc.item.type != SIM_NVS_STR || loc.item.size == 0) {
        return OTAML_ERR_NOT_FOUND;
    }
    const char *text = (const char *)nvs_entry((uint32_t)loc.page, loc.entry + 1);
    size_t len = strnlen(text, loc.item.size);
    if (len >= size) return OTAML_ERR_TOO_LARGE;
    memcpy(buf, text, len);
    buf[len] = '\0';
    return OTAML_OK;
}

void sim_nvs_foreach(const char *ns, sim_nvs_visit_fn fn, void *ctx)
{
    int index;
    if (prv_ns_open(ns, false, &index) != OTAML_OK) return;
    uint32_t order[64], n = nvs_ordered(order);
    for (uint32_t i = 0; i < n; i++) {
        for (uint32_t e = 0; e < ENTRIES;) {
            nvs_item_t it;
            uint32_t span = nvs_item_at(order[i], e, &it);
            if (span && it.ns == index) {
                nvs_loc_t loc = {.page = (int)order[i], .entry = e, .item = it};
                uint64_t v = 0;
                if (it.type == SIM_NVS_STR) {
                    char *text = malloc(it.size + 1);
                    if (text != NULL) {
                        memcpy(text, nvs_entry(order[i], e + 1), it.size);
                        text[it.size] = '\0';
                        fn(ctx, it.key, (sim_nvs_type_t)it.type, 0, text);
                        free(text);
                    }
                } else if (prv_int_of(&loc, &v)) {
                    fn(ctx, it.key, (sim_nvs_type_t)it.type, v, NULL);
                }
            }
            e += span ? span : 1;
        }
    }
}
