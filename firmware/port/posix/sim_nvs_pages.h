/*
 * Internal to the simulator's NVS: the pages room (sim_nvs_pages.c: format, garbage collection, repair)
 * as the items room (sim_nvs.c: namespaces, keys, values) uses it. Layout in sim_nvs.h.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "otaml_status.h"

#define ENTRIES 126u
#define ENTRY 32u

typedef struct {
    uint8_t ns, type, span, chunk;
    char key[16];
    uint32_t size; /* strings: bytes with the NUL */
} nvs_item_t;

typedef struct {
    int page;
    uint32_t entry;
    nvs_item_t item;
} nvs_loc_t;

enum { ES_EMPTY = 3, ES_WRITTEN = 2, ES_ERASED = 0 };

bool nvs_mounted(void);
uint32_t nvs_crc(uint32_t crc, const uint8_t *p, size_t n);
/** Entry e of page p in the RAM mirror. */
uint8_t *nvs_entry(uint32_t p, uint32_t e);
/** The span of a valid item whose header entry is (p, e) (written, CRCs and span check out), else 0. */
uint32_t nvs_item_at(uint32_t p, uint32_t e, nvs_item_t *it);
/** Used pages, oldest first; returns how many. */
uint32_t nvs_ordered(uint32_t *order);
/** The newest live item (ns, key) of any type; skip_page excludes one page (-1: none). */
bool nvs_find(uint8_t ns, const char *key, int skip_page, nvs_loc_t *loc);
otaml_status_t nvs_set_entry_states(uint32_t p, uint32_t first, uint32_t count, int state);
/** Append one item (header entry, then nbytes of data) to the active page, collecting garbage if it must:
 * its bytes first, then its states. where: the new item's location (may be NULL). */
otaml_status_t nvs_append(uint8_t ns, uint8_t type, const char *key, const uint8_t data8[8], const uint8_t *bytes,
                          uint32_t nbytes, nvs_loc_t *where);
