/*
 * An emulated 4 MB SPI flash in a file, with ESP-IDF's semantics where the firmware depends on them:
 *   - a binary partition table at 0x8000 (esp_partition_info_t entries + MD5 entry), as written by
 *     gen_esp32part.py from firmware/partitions.csv;
 *   - NOR behaviour: erase sets 4 KB sectors to 0xFF, a write can only clear bits (new = old & data);
 *   - otadata: two sectors, each an esp_ota_select_entry_t {ota_seq, seq_label[20], ota_state, crc},
 *     crc = crc32_le(UINT32_MAX, &ota_seq, 4); the boot slot is (max valid seq - 1) % ota_count;
 *   - the bootloader with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE: NEW becomes PENDING_VERIFY when
 *     booted; a PENDING_VERIFY entry found at boot (a reset before confirmation) becomes ABORTED and
 *     the previous slot boots; INVALID and ABORTED entries are never selected; an image that does not
 *     verify is skipped.
 * Used only by the POSIX port and otaml-sim.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otaml_port.h"

#define SIM_FLASH_SIZE (4u * 1024u * 1024u)
#define SIM_SECTOR 4096u
#define SIM_PARTITION_TABLE_OFFSET 0x8000u
#define SIM_MAX_PARTITIONS 16

typedef struct {
    char label[17];
    uint8_t type, subtype;
    uint32_t offset, size;
} sim_partition_t;

typedef struct {
    bool valid;                 /* header, checksum and appended digest check out */
    char version[32];
    char project[32];
    uint32_t secure_version;
    uint32_t length;            /* bytes the image occupies */
} sim_image_t;

/** Open (and create, erased, if missing) the flash file. */
otaml_status_t sim_flash_open(const char *path);
void sim_flash_close(void);

/** Write a binary partition table made from a partitions.csv into the flash (like a first USB flash). */
otaml_status_t sim_flash_write_partition_table(const char *csv_path);
/** Erase otadata: the next boot takes ota_0 (no factory app in our table). */
otaml_status_t sim_flash_reset_otadata(void);

otaml_status_t sim_flash_read(uint32_t addr, void *buf, size_t len);
/** NOR write: clears bits only. */
otaml_status_t sim_flash_write(uint32_t addr, const void *buf, size_t len);
/** Tests: let `operations` more writes or erases through, then none (a power cut); -1 restores power. */
void sim_flash_cut_after(long operations);
/** addr and len must be sector-aligned. */
otaml_status_t sim_flash_erase(uint32_t addr, size_t len);

/** Partition by label ("ota_0", "nvs", "otadata"). */
const sim_partition_t *sim_flash_partition(const char *label);
/** Number of app OTA partitions (ota_0 .. ota_N-1). */
int sim_flash_ota_count(void);

/** Validate the image in an app partition as esp_image_verify does, and read its esp_app_desc_t. */
void sim_flash_image(const sim_partition_t *part, sim_image_t *out);

/** The state otadata records for an ota slot (OTAML_IMG_UNDEFINED if none). */
otaml_img_state_t sim_otadata_state(int slot);
/** Make slot the next boot with state NEW (esp_ota_set_boot_partition). */
otaml_status_t sim_otadata_set_boot(int slot);
/** Set the state of the entry that selects slot (it must be the selected one). */
otaml_status_t sim_otadata_set_state(int slot, otaml_img_state_t state);

/**
 * Run the second-stage bootloader's selection. With apply=true it also performs the state changes
 * a real boot makes (NEW -> PENDING_VERIFY, PENDING_VERIFY -> ABORTED). Returns the slot that boots,
 * or -1 if no slot holds a valid image.
 */
int sim_bootloader_select(bool apply);
const sim_partition_t *sim_flash_ota_partition(int slot);
/** esp_ota_begin's side effect under rollback: invalidate the inactive otadata entry. */
otaml_status_t sim_otadata_invalidate_inactive(void);
