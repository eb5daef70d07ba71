/*
 * ESP-IDF's NVS format (components/nvs_flash, format version 2) inside the `nvs` partition of the sim
 * flash file, so the simulator boots from a partition made by esp-idf-nvs-partition-gen exactly as a
 * device does, and what it writes is what a device would hold:
 *   - 4096-byte pages: a 32-byte header {state u32, seq u32, version u8 (0xFE), 19 x 0xFF, crc32 of
 *     bytes 4..27}, a 32-byte entry-state bitmap (2 bits per entry: 11 empty, 10 written, 00 erased),
 *     then 126 entries of 32 bytes;
 *   - page states UNINITIALIZED (erased), ACTIVE, FULL, FREEING (being garbage-collected), CORRUPT, each
 *     reached from the previous one by clearing bits, as NOR flash allows;
 *   - an entry {ns u8, type u8, span u8, chunk_index u8, crc32 u32, key[16], data[8]}, its crc32 over
 *     bytes 0..3 and 8..31; namespaces are U8 entries of namespace 0 whose value is the index;
 *   - a string (type 0x21) spans 1 + ceil(size / 32) entries of one page: data holds {size u16 (with the
 *     terminating NUL), 0xFFFF, crc32 of the bytes}; the bytes follow in the next entries;
 *   - CRCs are zlib's crc32 started at 0xFFFFFFFF, as esp_rom_crc32_le(0xFFFFFFFF, ...) on the device.
 * Writes keep ESP-IDF's order, so a power cut anywhere leaves the old or the new value: an item's bytes
 * first, then its states WRITTEN, then the older copy ERASED; a full page is garbage-collected through
 * FREEING into the one page kept free. Mounting repairs what a cut left behind: entries written but never
 * marked, a duplicate of a key (the older one is erased), a page left FREEING (its items are moved on).
 * Used only by the POSIX port and otaml-sim; the device uses ESP-IDF's nvs_flash itself.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otaml_status.h"

#define SIM_NVS_PAGE 4096u
#define SIM_NVS_MAX_STR 4000u /* one page's worth of entries, as ESP-IDF's nvs_set_str allows */

typedef enum {
    SIM_NVS_U8 = 0x01, SIM_NVS_I8 = 0x11, SIM_NVS_U16 = 0x02, SIM_NVS_I16 = 0x12,
    SIM_NVS_U32 = 0x04, SIM_NVS_I32 = 0x14, SIM_NVS_U64 = 0x08, SIM_NVS_I64 = 0x18,
    SIM_NVS_STR = 0x21, SIM_NVS_BLOB = 0x41, SIM_NVS_BLOB_DATA = 0x42, SIM_NVS_BLOB_IDX = 0x48,
} sim_nvs_type_t;

/**
 * Mount the NVS partition at offset (size a multiple of 4096, at least three pages) of the sim flash.
 * An erased partition is formatted on the first write, as nvs_flash_init does.
 * @return OTAML_OK, OTAML_ERR_INVALID_ARG (size), OTAML_ERR_IO, OTAML_ERR_NO_MEM.
 */
otaml_status_t sim_nvs_mount(uint32_t offset, uint32_t size);
/** Mount without writing to flash: repairs a power cut left are made in RAM only (`otaml-sim info`). */
otaml_status_t sim_nvs_mount_readonly(uint32_t offset, uint32_t size);
void sim_nvs_unmount(void);

/** An integer item (any of the integer types, sign-extended or zero-extended to 64 bits).
 * @return OTAML_OK, OTAML_ERR_NOT_FOUND, OTAML_ERR_STATE (not mounted). */
otaml_status_t sim_nvs_get_int(const char *ns, const char *key, uint64_t *value);
/** A string item, NUL-terminated in buf. @return OTAML_OK, OTAML_ERR_NOT_FOUND, OTAML_ERR_TOO_LARGE. */
otaml_status_t sim_nvs_get_str(const char *ns, const char *key, char *buf, size_t size);

/** Write a U64 item (replaces an item of any type under that key). Durable when it returns.
 * @return OTAML_OK, OTAML_ERR_INVALID_ARG (key over 15 characters), OTAML_ERR_NO_MEM (NVS full), OTAML_ERR_IO. */
otaml_status_t sim_nvs_set_u64(const char *ns, const char *key, uint64_t value);
/** Write a string item of at most SIM_NVS_MAX_STR - 1 bytes. @return as sim_nvs_set_u64, OTAML_ERR_TOO_LARGE. */
otaml_status_t sim_nvs_set_str(const char *ns, const char *key, const char *value);
/** Erase a key (OK when absent). */
otaml_status_t sim_nvs_erase_key(const char *ns, const char *key);

/** Every live item of a namespace: for `otaml-sim info`. Strings are passed NUL-terminated. */
typedef void (*sim_nvs_visit_fn)(void *ctx, const char *key, sim_nvs_type_t type, uint64_t integer, const char *text);
void sim_nvs_foreach(const char *ns, sim_nvs_visit_fn fn, void *ctx);
