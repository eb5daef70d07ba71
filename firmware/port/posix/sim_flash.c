#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/md5.h>
#include <mbedtls/version.h>

#include "otaml_mbedtls_compat.h"
#include "sim_flash.h"

static const char *TAG = "sim_flash";

#define OTA_SEQ_ERASED 0xFFFFFFFFu
#define PART_MAGIC 0x50AA
#define PART_MD5_MAGIC 0xEBEB
#define PART_TYPE_APP 0x00
#define PART_TYPE_DATA 0x01
#define SUBTYPE_OTA_0 0x10
#define SUBTYPE_DATA_OTA 0x00

/* esp_ota_img_states_t values as stored in otadata. */
enum { ST_NEW = 0, ST_PENDING = 1, ST_VALID = 2, ST_INVALID = 3, ST_ABORTED = 4, ST_UNDEFINED = -1 };

typedef struct __attribute__((packed)) {
    uint32_t ota_seq;
    uint8_t seq_label[20];
    uint32_t ota_state;
    uint32_t crc;
} ota_select_entry_t;

typedef struct __attribute__((packed)) {
    uint16_t magic;
    uint8_t type, subtype;
    uint32_t offset, size;
    char label[16];
    uint32_t flags;
} partition_info_t;

static int s_fd = -1;
static long s_cut_after = -1; /* tests: writes and erases left before a simulated power cut (-1: none) */

void sim_flash_cut_after(long operations) { s_cut_after = operations; }

/* After the cut nothing reaches the flash: the process is "off" until the test reopens it. */
static bool prv_power_cut(void)
{
    if (s_cut_after < 0) return false;
    if (s_cut_after == 0) return true;
    s_cut_after--;
    return false;
}
static sim_partition_t s_parts[SIM_MAX_PARTITIONS];
static int s_nparts;

/* ---- raw flash ---- */

otaml_status_t sim_flash_read(uint32_t addr, void *buf, size_t len)
{
    if ((uint64_t)addr + len > SIM_FLASH_SIZE) return OTAML_ERR_INVALID_ARG;
    return pread(s_fd, buf, len, addr) == (ssize_t)len ? OTAML_OK : OTAML_ERR_IO;
}

otaml_status_t sim_flash_write(uint32_t addr, const void *buf, size_t len)
{
    if ((uint64_t)addr + len > SIM_FLASH_SIZE) return OTAML_ERR_INVALID_ARG;
    if (prv_power_cut()) return OTAML_ERR_IO;
    uint8_t old[4096];
    const uint8_t *src = buf;
    for (size_t done = 0; done < len;) {
        size_t n = len - done < sizeof(old) ? len - done : sizeof(old);
        if (pread(s_fd, old, n, addr + done) != (ssize_t)n) return OTAML_ERR_IO;
        for (size_t i = 0; i < n; i++) old[i] &= src[done + i]; /* NOR: a write only clears bits */
        if (pwrite(s_fd, old, n, addr + done) != (ssize_t)n) return OTAML_ERR_IO;
        done += n;
    }
    return OTAML_OK;
}

otaml_status_t sim_flash_erase(uint32_t addr, size_t len)
{
    if (addr % SIM_SECTOR || len % SIM_SECTOR || (uint64_t)addr + len > SIM_FLASH_SIZE) return OTAML_ERR_INVALID_ARG;
    if (prv_power_cut()) return OTAML_ERR_IO;
    uint8_t ff[SIM_SECTOR];
    memset(ff, 0xFF, sizeof(ff));
    for (size_t done = 0; done < len; done += SIM_SECTOR) {
        if (pwrite(s_fd, ff, SIM_SECTOR, addr + done) != SIM_SECTOR) return OTAML_ERR_IO;
    }
    return OTAML_OK;
}

/* ---- partition table ---- */

static void prv_load_partitions(void)
{
    s_nparts = 0;
    for (int i = 0; i < SIM_MAX_PARTITIONS; i++) {
        partition_info_t e;
        if (sim_flash_read(SIM_PARTITION_TABLE_OFFSET + i * sizeof(e), &e, sizeof(e)) != OTAML_OK) break;
        if (e.magic != PART_MAGIC) break;
        sim_partition_t *p = &s_parts[s_nparts++];
        memcpy(p->label, e.label, 16);
        p->label[16] = '\0';
        p->type = e.type;
        p->subtype = e.subtype;
        p->offset = e.offset;
        p->size = e.size;
    }
}

otaml_status_t sim_flash_open(const char *path)
{
    s_fd = open(path, O_RDWR | O_CREAT, 0644);
    if (s_fd < 0) {
        OTAML_LOGE(TAG, "cannot open flash file %s: %s", path, strerror(errno));
        return OTAML_ERR_IO;
    }
    struct stat st;
    if (fstat(s_fd, &st) != 0) return OTAML_ERR_IO;
    if (st.st_size == 0) {
        if (ftruncate(s_fd, SIM_FLASH_SIZE) != 0) return OTAML_ERR_IO;
        OTAML_RETURN_IF_ERROR(sim_flash_erase(0, SIM_FLASH_SIZE)); /* a new chip reads as 0xFF */
    } else if (st.st_size != SIM_FLASH_SIZE) {
        OTAML_LOGE(TAG, "%s is %lld bytes, expected a %u-byte flash image", path, (long long)st.st_size, SIM_FLASH_SIZE);
        return OTAML_ERR_INVALID_ARG;
    }
    prv_load_partitions();
    return OTAML_OK;
}

void sim_flash_close(void)
{
    if (s_fd >= 0) close(s_fd);
    s_fd = -1;
}

static uint32_t prv_parse_num(const char *s)
{
    char *end;
    unsigned long v = strtoul(s, &end, 0);
    if (*end == 'K' || *end == 'k') v *= 1024;
    if (*end == 'M' || *end == 'm') v *= 1024 * 1024;
    return (uint32_t)v;
}

static char *prv_trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) *--e = '\0';
    return s;
}

otaml_status_t sim_flash_write_partition_table(const char *csv_path)
{
    FILE *f = fopen(csv_path, "r");
    if (f == NULL) {
        OTAML_LOGE(TAG, "cannot read partition table %s: %s", csv_path, strerror(errno));
        return OTAML_ERR_IO;
    }
    partition_info_t table[SIM_MAX_PARTITIONS + 1];
    memset(table, 0xFF, sizeof(table));
    int n = 0;
    uint32_t next = SIM_PARTITION_TABLE_OFFSET + 0x1000;
    char line[256];
    while (fgets(line, sizeof(line), f) && n < SIM_MAX_PARTITIONS) {
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *fields[6] = {0};
        int nf = 0;
        for (char *tok = strtok(line, ","); tok && nf < 6; tok = strtok(NULL, ",")) fields[nf++] = prv_trim(tok);
        if (nf < 5 || fields[0][0] == '\0') continue;
        partition_info_t *e = &table[n++];
        memset(e, 0, sizeof(*e));
        e->magic = PART_MAGIC;
        snprintf(e->label, sizeof(e->label), "%s", fields[0]);
        e->type = strcmp(fields[1], "app") == 0 ? PART_TYPE_APP : PART_TYPE_DATA;
        const char *sub = fields[2];
        if (strncmp(sub, "ota_", 4) == 0) e->subtype = (uint8_t)(SUBTYPE_OTA_0 + atoi(sub + 4));
        else if (strcmp(sub, "ota") == 0) e->subtype = SUBTYPE_DATA_OTA;
        else if (strcmp(sub, "phy") == 0) e->subtype = 0x01;
        else if (strcmp(sub, "nvs") == 0) e->subtype = 0x02;
        else e->subtype = 0x00; /* factory */
        e->offset = fields[3][0] ? prv_parse_num(fields[3]) : next;
        e->size = prv_parse_num(fields[4]);
        next = e->offset + e->size;
    }
    fclose(f);
    /* The MD5 entry ESP-IDF's gen_esp32part.py appends: 0xEBEB, 14 x 0xFF, MD5 of the entries. */
    uint8_t *md5_entry = (uint8_t *)&table[n];
    memset(md5_entry, 0xFF, sizeof(partition_info_t));
    md5_entry[0] = 0xEB;
    md5_entry[1] = 0xEB;
#if MBEDTLS_VERSION_NUMBER < 0x03000000
    mbedtls_md5_ret((const uint8_t *)table, n * sizeof(partition_info_t), md5_entry + 16);
#else
    mbedtls_md5((const uint8_t *)table, n * sizeof(partition_info_t), md5_entry + 16);
#endif
    OTAML_RETURN_IF_ERROR(sim_flash_erase(SIM_PARTITION_TABLE_OFFSET, SIM_SECTOR));
    OTAML_RETURN_IF_ERROR(sim_flash_write(SIM_PARTITION_TABLE_OFFSET, table, (n + 1) * sizeof(partition_info_t)));
    prv_load_partitions();
    return OTAML_OK;
}

const sim_partition_t *sim_flash_partition(const char *label)
{
    for (int i = 0; i < s_nparts; i++) {
        if (strcmp(s_parts[i].label, label) == 0) return &s_parts[i];
    }
    return NULL;
}

int sim_flash_ota_count(void)
{
    int n = 0;
    for (int i = 0; i < s_nparts; i++) {
        if (s_parts[i].type == PART_TYPE_APP && s_parts[i].subtype >= SUBTYPE_OTA_0) n++;
    }
    return n;
}

static const sim_partition_t *prv_ota_slot(int slot)
{
    for (int i = 0; i < s_nparts; i++) {
        if (s_parts[i].type == PART_TYPE_APP && s_parts[i].subtype == SUBTYPE_OTA_0 + slot) return &s_parts[i];
    }
    return NULL;
}

/* ---- image verification (esp_image_verify) ---- */

void sim_flash_image(const sim_partition_t *part, sim_image_t *out)
{
    memset(out, 0, sizeof(*out));
    if (part == NULL) return;
    uint8_t hdr[24];
    if (sim_flash_read(part->offset, hdr, sizeof(hdr)) != OTAML_OK || hdr[0] != 0xE9) return;
    uint8_t nseg = hdr[1];
    bool hash_appended = hdr[23] == 1;
    if (nseg == 0 || nseg > 16) return;

    mbedtls_sha256_context sha;
    mbedtls_sha256_init(&sha);
    otaml_sha256_starts(&sha);
    otaml_sha256_update(&sha, hdr, sizeof(hdr));
    uint8_t checksum = 0xEF;
    uint32_t pos = sizeof(hdr);
    uint8_t buf[4096];
    for (int s = 0; s < nseg; s++) {
        uint8_t seg[8];
        if (sim_flash_read(part->offset + pos, seg, 8) != OTAML_OK) goto done;
        uint32_t seg_len;
        memcpy(&seg_len, seg + 4, 4);
        if (seg_len > part->size || pos + 8 + seg_len > part->size) goto done;
        otaml_sha256_update(&sha, seg, 8);
        pos += 8;
        if (s == 0 && seg_len >= 256) { /* esp_app_desc_t opens the first (DROM) segment */
            uint8_t desc[256];
            if (sim_flash_read(part->offset + pos, desc, sizeof(desc)) != OTAML_OK) goto done;
            uint32_t magic;
            memcpy(&magic, desc, 4);
            if (magic != 0xABCD5432u) goto done;
            memcpy(&out->secure_version, desc + 4, 4);
            memcpy(out->version, desc + 16, 31);
            memcpy(out->project, desc + 48, 31);
        }
        for (uint32_t done = 0; done < seg_len;) {
            uint32_t n = seg_len - done < sizeof(buf) ? seg_len - done : sizeof(buf);
            if (sim_flash_read(part->offset + pos + done, buf, n) != OTAML_OK) goto done;
            for (uint32_t i = 0; i < n; i++) checksum ^= buf[i];
            otaml_sha256_update(&sha, buf, n);
            done += n;
        }
        pos += seg_len;
    }
    /* Zero padding up to the checksum byte, which sits at an offset of 15 mod 16. */
    uint32_t pad = 15 - (pos % 16);
    uint8_t tail[16];
    if (sim_flash_read(part->offset + pos, tail, pad + 1) != OTAML_OK) goto done;
    otaml_sha256_update(&sha, tail, pad + 1);
    pos += pad + 1;
    if (tail[pad] != checksum) goto done;
    if (hash_appended) {
        uint8_t stored[32], digest[32];
        if (sim_flash_read(part->offset + pos, stored, 32) != OTAML_OK) goto done;
        otaml_sha256_finish(&sha, digest);
        if (memcmp(stored, digest, 32) != 0) goto done;
        pos += 32;
    }
    out->length = pos;
    out->valid = out->version[0] != '\0';
done:
    mbedtls_sha256_free(&sha);
    if (!out->valid) memset(out, 0, sizeof(*out));
}

/* ---- otadata ---- */

static uint32_t prv_crc32_le(uint32_t crc, const uint8_t *buf, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *buf++;
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
    }
    return ~crc;
}

static uint32_t prv_entry_crc(const ota_select_entry_t *e)
{
    return prv_crc32_le(UINT32_MAX, (const uint8_t *)&e->ota_seq, sizeof(e->ota_seq));
}

static otaml_status_t prv_read_otadata(ota_select_entry_t e[2], uint32_t *base, uint32_t *sector)
{
    const sim_partition_t *p = sim_flash_partition("otadata");
    if (p == NULL) return OTAML_ERR_NOT_FOUND;
    *base = p->offset;
    *sector = SIM_SECTOR;
    OTAML_RETURN_IF_ERROR(sim_flash_read(p->offset, &e[0], sizeof(e[0])));
    return sim_flash_read(p->offset + SIM_SECTOR, &e[1], sizeof(e[1]));
}

static otaml_status_t prv_write_entry(int idx, ota_select_entry_t *e)
{
    ota_select_entry_t two[2];
    uint32_t base, sector;
    OTAML_RETURN_IF_ERROR(prv_read_otadata(two, &base, &sector));
    e->crc = prv_entry_crc(e);
    OTAML_RETURN_IF_ERROR(sim_flash_erase(base + idx * sector, sector));
    return sim_flash_write(base + idx * sector, e, sizeof(*e));
}

static bool prv_entry_valid(const ota_select_entry_t *e)
{
    return e->ota_seq != OTA_SEQ_ERASED && e->crc == prv_entry_crc(e) && e->ota_state != ST_INVALID &&
           e->ota_state != ST_ABORTED;
}

/* bootloader_common_get_active_otadata: the valid entry with the highest sequence, or -1. */
static int prv_active(const ota_select_entry_t e[2])
{
    bool v0 = prv_entry_valid(&e[0]), v1 = prv_entry_valid(&e[1]);
    if (v0 && v1) return e[0].ota_seq >= e[1].ota_seq ? 0 : 1;
    return v0 ? 0 : (v1 ? 1 : -1);
}

static otaml_img_state_t prv_state(uint32_t raw)
{
    switch (raw) {
    case ST_NEW: return OTAML_IMG_NEW;
    case ST_PENDING: return OTAML_IMG_PENDING_VERIFY;
    case ST_VALID: return OTAML_IMG_VALID;
    case ST_INVALID: return OTAML_IMG_INVALID;
    case ST_ABORTED: return OTAML_IMG_ABORTED;
    default: return OTAML_IMG_UNDEFINED;
    }
}

static uint32_t prv_raw_state(otaml_img_state_t s)
{
    switch (s) {
    case OTAML_IMG_NEW: return ST_NEW;
    case OTAML_IMG_PENDING_VERIFY: return ST_PENDING;
    case OTAML_IMG_VALID: return ST_VALID;
    case OTAML_IMG_INVALID: return ST_INVALID;
    case OTAML_IMG_ABORTED: return ST_ABORTED;
    case OTAML_IMG_UNDEFINED: break;
    }
    return (uint32_t)ST_UNDEFINED;
}

/* esp_ota_get_state_partition: the newest well-formed entry that selects the slot. */
otaml_img_state_t sim_otadata_state(int slot)
{
    ota_select_entry_t e[2];
    uint32_t base, sector;
    int n = sim_flash_ota_count();
    if (n == 0 || prv_read_otadata(e, &base, &sector) != OTAML_OK) return OTAML_IMG_UNDEFINED;
    int best = -1;
    for (int i = 0; i < 2; i++) {
        bool wellformed = e[i].ota_seq != OTA_SEQ_ERASED && e[i].crc == prv_entry_crc(&e[i]);
        if (wellformed && (int)((e[i].ota_seq - 1) % n) == slot && (best < 0 || e[i].ota_seq > e[best].ota_seq)) best = i;
    }
    return best < 0 ? OTAML_IMG_UNDEFINED : prv_state(e[best].ota_state);
}

otaml_status_t sim_otadata_set_state(int slot, otaml_img_state_t state)
{
    ota_select_entry_t e[2];
    uint32_t base, sector;
    int n = sim_flash_ota_count();
    OTAML_RETURN_IF_ERROR(prv_read_otadata(e, &base, &sector));
    int active = prv_active(e);
    if (active < 0 || (int)((e[active].ota_seq - 1) % n) != slot) return OTAML_ERR_STATE;
    e[active].ota_state = prv_raw_state(state);
    return prv_write_entry(active, &e[active]);
}

/* esp_ota_set_boot_partition with rollback enabled: the next sequence number that selects the slot,
 * in the sector that is not active, state NEW. */
otaml_status_t sim_otadata_set_boot(int slot)
{
    ota_select_entry_t e[2];
    uint32_t base, sector;
    int n = sim_flash_ota_count();
    if (slot < 0 || slot >= n) return OTAML_ERR_INVALID_ARG;
    OTAML_RETURN_IF_ERROR(prv_read_otadata(e, &base, &sector));
    int active = prv_active(e);
    ota_select_entry_t fresh;
    memset(&fresh, 0xFF, sizeof(fresh));
    /* compute_ota_seq_for_target_slot: smallest seq > active's with (seq - 1) % n == slot. */
    uint32_t current = active >= 0 ? e[active].ota_seq : 0;
    uint32_t base_seq = (uint32_t)((slot + 1) % n);
    uint32_t i = 0;
    while (current > base_seq + i * (uint32_t)n) i++;
    uint32_t seq = base_seq + i * (uint32_t)n;
    if (seq == 0) seq = (uint32_t)n; /* no otadata yet and the last slot: (n - 1) % n */
    fresh.ota_seq = seq;
    fresh.ota_state = ST_NEW;
    return prv_write_entry(active < 0 ? 0 : (~active) & 1, &fresh);
}

otaml_status_t sim_flash_reset_otadata(void)
{
    const sim_partition_t *p = sim_flash_partition("otadata");
    if (p == NULL) return OTAML_ERR_NOT_FOUND;
    return sim_flash_erase(p->offset, p->size);
}

/* ---- the bootloader ---- */

int sim_bootloader_select(bool apply)
{
    int n = sim_flash_ota_count();
    ota_select_entry_t e[2];
    uint32_t base, sector;
    if (n == 0 || prv_read_otadata(e, &base, &sector) != OTAML_OK) return -1;
    for (;;) {
        int active = prv_active(e);
        int slot = active >= 0 ? (int)((e[active].ota_seq - 1) % n) : 0; /* no otadata, no factory: ota_0 */
        if (active >= 0 && e[active].ota_state == ST_PENDING) {
            /* Booted once and never confirmed: the app reset before marking itself valid. Each pass
             * invalidates one entry, so this loop ends. */
            if (apply) OTAML_LOGW("boot", "ota_%d was pending verification at reset: aborted, rolling back", slot);
            e[active].ota_state = ST_ABORTED;
            if (apply) prv_write_entry(active, &e[active]);
            continue;
        }
        sim_image_t img;
        sim_flash_image(prv_ota_slot(slot), &img);
        if (!img.valid) {
            for (int s = 0; s < n; s++) { /* the bootloader falls back to any slot that verifies */
                sim_flash_image(prv_ota_slot(s), &img);
                if (s != slot && img.valid) return s;
            }
            return -1;
        }
        if (apply && active >= 0 && e[active].ota_state == ST_NEW) {
            e[active].ota_state = ST_PENDING;
            prv_write_entry(active, &e[active]);
        }
        return slot;
    }
}

const sim_partition_t *sim_flash_ota_partition(int slot) { return prv_ota_slot(slot); }

/* esp_ota_begin with rollback enabled: the inactive otadata entry is invalidated, so a half-written
 * passive slot can never be selected through a stale entry. */
otaml_status_t sim_otadata_invalidate_inactive(void)
{
    ota_select_entry_t e[2];
    uint32_t base, sector;
    OTAML_RETURN_IF_ERROR(prv_read_otadata(e, &base, &sector));
    int active = prv_active(e);
    if (active < 0) return OTAML_OK;
    int inactive = (~active) & 1;
    if (e[inactive].ota_state == ST_INVALID) return OTAML_OK;
    e[inactive].ota_state = ST_INVALID;
    return prv_write_entry(inactive, &e[inactive]);
}
