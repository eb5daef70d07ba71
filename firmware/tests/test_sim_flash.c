/* The emulated flash behaves as ESP-IDF documents: NOR writes, otadata sequencing, bootloader rollback. */
#include <unistd.h>

#include "otaml_mbedtls_compat.h"
#include "otaml_test.h"
#include "sim_flash.h"

/* A minimal genuine app image: header, one DROM segment holding esp_app_desc_t, checksum, SHA-256. */
static size_t build_image(uint8_t *out, const char *version)
{
    memset(out, 0, 512);
    uint8_t *p = out;
    p[0] = 0xE9; p[1] = 1; p[8] = 0xEE; p[23] = 1; /* magic, 1 segment, wp pin off, hash appended */
    p += 24;
    uint32_t addr = 0x3F400020, len = 256;
    memcpy(p, &addr, 4);
    memcpy(p + 4, &len, 4);
    p += 8;
    uint32_t magic = 0xABCD5432;
    memcpy(p, &magic, 4);
    snprintf((char *)p + 16, 32, "%s", version);
    snprintf((char *)p + 48, 32, "otaml");
    uint8_t checksum = 0xEF;
    for (uint32_t i = 0; i < len; i++) checksum ^= p[i];
    p += len;
    size_t pos = (size_t)(p - out);
    pos += 15 - (pos % 16);
    out[pos++] = checksum;
    otaml_sha256(out, pos, out + pos);
    return pos + 32;
}

static void write_slot(int slot, const char *version)
{
    uint8_t img[512];
    size_t n = build_image(img, version);
    const sim_partition_t *p = sim_flash_ota_partition(slot);
    sim_flash_erase(p->offset, SIM_SECTOR);
    sim_flash_write(p->offset, img, n);
}

int main(void)
{
    char path[] = "/tmp/otaml-flash-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path); /* sim_flash_open creates an erased chip */
    CHECK_EQ_INT(sim_flash_open(path), OTAML_OK);
    CHECK_EQ_INT(sim_flash_ota_count(), 0);
    char csv[1024];
    snprintf(csv, sizeof(csv), "%s/firmware/partitions.csv", OTAML_REPO_ROOT);
    CHECK_EQ_INT(sim_flash_write_partition_table(csv), OTAML_OK);
    CHECK_EQ_INT(sim_flash_ota_count(), 2);
    CHECK_EQ_INT(sim_flash_partition("ota_1")->offset, 0x1F0000);
    CHECK_EQ_INT(sim_flash_partition("ota_1")->size, 0x1E0000);
    CHECK_EQ_INT(sim_flash_partition("nvs")->offset, 0x9000);

    /* NOR: writes clear bits only; erase is sector-aligned. */
    uint32_t a = 0x3F0000;
    uint8_t v = 0xF0, w = 0x0F, r = 0;
    CHECK_EQ_INT(sim_flash_erase(a, SIM_SECTOR), OTAML_OK);
    sim_flash_write(a, &v, 1);
    sim_flash_write(a, &w, 1);
    sim_flash_read(a, &r, 1);
    CHECK_EQ_INT(r, 0x00);
    CHECK_EQ_INT(sim_flash_erase(a + 1, SIM_SECTOR), OTAML_ERR_INVALID_ARG);

    /* First USB flash: image in ota_0, no otadata: ota_0 boots, state undefined. */
    write_slot(0, "1.1");
    CHECK_EQ_INT(sim_flash_reset_otadata(), OTAML_OK);
    sim_image_t img;
    sim_flash_image(sim_flash_ota_partition(0), &img);
    CHECK(img.valid);
    CHECK_EQ_STR(img.version, "1.1");
    CHECK_EQ_INT(sim_bootloader_select(true), 0);
    CHECK_EQ_INT(sim_otadata_state(0), OTAML_IMG_UNDEFINED);

    /* Update to ota_1: NEW, then PENDING_VERIFY once booted; a reset while pending rolls back. */
    write_slot(1, "1.2");
    CHECK_EQ_INT(sim_otadata_set_boot(1), OTAML_OK);
    CHECK_EQ_INT(sim_otadata_state(1), OTAML_IMG_NEW);
    CHECK_EQ_INT(sim_bootloader_select(false), 1);
    CHECK_EQ_INT(sim_otadata_state(1), OTAML_IMG_NEW); /* a dry run changes nothing */
    CHECK_EQ_INT(sim_bootloader_select(true), 1);
    CHECK_EQ_INT(sim_otadata_state(1), OTAML_IMG_PENDING_VERIFY);
    CHECK_EQ_INT(sim_bootloader_select(true), 0);
    CHECK_EQ_INT(sim_otadata_state(1), OTAML_IMG_ABORTED);

    /* Again, confirmed this time: it stays. */
    CHECK_EQ_INT(sim_otadata_set_boot(1), OTAML_OK);
    CHECK_EQ_INT(sim_bootloader_select(true), 1);
    CHECK_EQ_INT(sim_otadata_set_state(1, OTAML_IMG_VALID), OTAML_OK);
    CHECK_EQ_INT(sim_bootloader_select(true), 1);
    CHECK_EQ_INT(sim_bootloader_select(true), 1);
    CHECK_EQ_INT(sim_otadata_state(1), OTAML_IMG_VALID);

    /* Next update back into ota_0 with a higher sequence; marked invalid, ota_1 boots again. */
    write_slot(0, "1.3");
    CHECK_EQ_INT(sim_otadata_invalidate_inactive(), OTAML_OK);
    CHECK_EQ_INT(sim_otadata_set_boot(0), OTAML_OK);
    CHECK_EQ_INT(sim_bootloader_select(true), 0);
    CHECK_EQ_INT(sim_otadata_set_state(0, OTAML_IMG_INVALID), OTAML_OK);
    CHECK_EQ_INT(sim_bootloader_select(true), 1);
    CHECK_EQ_INT(sim_otadata_set_state(0, OTAML_IMG_VALID), OTAML_ERR_STATE); /* not the selected slot */

    /* A corrupted image is skipped by the bootloader even when otadata selects it. */
    write_slot(0, "1.4");
    CHECK_EQ_INT(sim_otadata_set_boot(0), OTAML_OK);
    uint8_t zero = 0;
    sim_flash_write(sim_flash_ota_partition(0)->offset + 48, &zero, 1); /* first byte of the version */
    CHECK_EQ_INT(sim_bootloader_select(true), 1);

    sim_flash_close();
    unlink(path);
    return test_summary();
}
