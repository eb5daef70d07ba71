/*
 * ESP-IDF's NVS format in the sim flash (sim_nvs.h has the layout). The partition is mirrored in RAM
 * (16 KB) and every change goes to flash first through sim_flash_write, whose NOR semantics (a write
 * only clears bits) are also applied to the mirror, so what the mirror says is what a reboot reads.
 */
#include <stdlib.h>
#include <string.h>

#include "otaml_port.h"
#include "sim_flash.h"
#include "sim_nvs.h"
#include "sim_nvs_pages.h"

static const char *TAG = "sim_nvs";

#define FIRST_ENTRY 64u
#define BITMAP 32u
#define VERSION2 0xFEu

enum { PS_UNINIT = 0xFFFFFFFFu, PS_ACTIVE = 0xFFFFFFFEu, PS_FULL = 0xFFFFFFFCu, PS_FREEING = 0xFFFFFFF8u };

static uint8_t *s_buf;   /* RAM mirror of the partition */
static uint32_t s_off, s_pages;
static bool s_readonly;       /* changes stay in the mirror */
static int s_active = -1;     /* the page new items go to */
static uint32_t s_next_free;  /* its first empty entry */

/* ---- primitives ---- */

uint32_t nvs_crc(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
    }
    return ~crc;
}

static uint8_t *prv_page(uint32_t p) { return s_buf + p * SIM_NVS_PAGE; }
uint8_t *nvs_entry(uint32_t p, uint32_t e) { return prv_page(p) + FIRST_ENTRY + e * ENTRY; }

static uint32_t prv_u32(const uint8_t *b)
{
    uint32_t v;
    memcpy(&v, b, 4);
    return v;
}

/* Flash first, then the mirror, with the same bit-clearing rule. */
static otaml_status_t prv_write(uint32_t at, const void *data, size_t len)
{
    if (!s_readonly) OTAML_RETURN_IF_ERROR(sim_flash_write(s_off + at, data, len));
    const uint8_t *src = data;
    for (size_t i = 0; i < len; i++) s_buf[at + i] &= src[i];
    return OTAML_OK;
}

static otaml_status_t prv_erase_page(uint32_t p)
{
    if (!s_readonly) OTAML_RETURN_IF_ERROR(sim_flash_erase(s_off + p * SIM_NVS_PAGE, SIM_NVS_PAGE));
    memset(prv_page(p), 0xFF, SIM_NVS_PAGE);
    return OTAML_OK;
}

static uint32_t prv_page_state(uint32_t p) { return prv_u32(prv_page(p)); }

static otaml_status_t prv_set_page_state(uint32_t p, uint32_t state)
{
    return prv_write(p * SIM_NVS_PAGE, &state, 4);
}

static uint32_t prv_page_seq(uint32_t p) { return prv_u32(prv_page(p) + 4); }

static bool prv_header_ok(uint32_t p)
{
    const uint8_t *h = prv_page(p);
    return nvs_crc(0xFFFFFFFFu, h + 4, 24) == prv_u32(h + 28);
}

static bool prv_in_use(uint32_t p)
{
    uint32_t st = prv_page_state(p);
    return (st == PS_ACTIVE || st == PS_FULL || st == PS_FREEING) && prv_header_ok(p);
}

static int prv_entry_state(uint32_t p, uint32_t e)
{
    return (prv_page(p)[BITMAP + e / 4] >> ((e % 4) * 2)) & 3;
}

otaml_status_t nvs_set_entry_states(uint32_t p, uint32_t first, uint32_t count, int state)
{
    uint8_t bitmap[BITMAP];
    memcpy(bitmap, prv_page(p) + BITMAP, BITMAP);
    for (uint32_t e = first; e < first + count && e < ENTRIES; e++) {
        unsigned shift = (e % 4) * 2;
        bitmap[e / 4] = (uint8_t)((bitmap[e / 4] & ~(3u << shift)) | ((unsigned)state << shift));
    }
    return prv_write(p * SIM_NVS_PAGE + BITMAP, bitmap, BITMAP);
}

static uint32_t prv_entry_crc(const uint8_t *entry)
{
    uint8_t tmp[28];
    memcpy(tmp, entry, 4);
    memcpy(tmp + 4, entry + 8, 24);
    return nvs_crc(0xFFFFFFFFu, tmp, sizeof(tmp));
}

/* The item whose header entry is (p, e), if it is WRITTEN and checks out (entry CRC, span, every span
 * entry WRITTEN, a string's size and data CRC). Returns its span, or 0. */
uint32_t nvs_item_at(uint32_t p, uint32_t e, nvs_item_t *it)
{
    if (prv_entry_state(p, e) != ES_WRITTEN) return 0;
    const uint8_t *en = nvs_entry(p, e);
    if (prv_entry_crc(en) != prv_u32(en + 4)) return 0;
    it->ns = en[0];
    it->type = en[1];
    it->span = en[2];
    it->chunk = en[3];
    memcpy(it->key, en + 8, 16);
    if (memchr(it->key, '\0', 16) == NULL) return 0;
    it->size = 0;
    if (it->span == 0 || e + it->span > ENTRIES) return 0;
    for (uint32_t i = 1; i < it->span; i++) {
        if (prv_entry_state(p, e + i) != ES_WRITTEN) return 0;
    }
    if (it->type == SIM_NVS_STR || it->type == SIM_NVS_BLOB_DATA || it->type == SIM_NVS_BLOB) {
        uint16_t size;
        memcpy(&size, en + 24, 2);
        it->size = size;
        if (it->span != 1 + (size + ENTRY - 1) / ENTRY) return 0;
        if (nvs_crc(0xFFFFFFFFu, nvs_entry(p, e + 1), size) != prv_u32(en + 28)) return 0;
    } else if (it->span != 1) {
        return 0;
    }
    return it->span;
}

/* Used pages in sequence order (oldest first). */
uint32_t nvs_ordered(uint32_t *order)
{
    uint32_t n = 0;
    for (uint32_t p = 0; p < s_pages; p++) {
        if (!prv_in_use(p)) continue;
        uint32_t i = n++;
        while (i > 0 && prv_page_seq(order[i - 1]) > prv_page_seq(p)) {
            order[i] = order[i - 1];
            i--;
        }
        order[i] = p;
    }
    return n;
}


/* The newest live item (ns, key) of any type; skip_page excludes one page (-1: none). */
bool nvs_find(uint8_t ns, const char *key, int skip_page, nvs_loc_t *loc)
{
    uint32_t order[64];
    uint32_t n = nvs_ordered(order);
    bool found = false;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = order[i];
        if ((int)p == skip_page) continue;
        for (uint32_t e = 0; e < ENTRIES;) {
            nvs_item_t it;
            uint32_t span = nvs_item_at(p, e, &it);
            if (span == 0) {
                e++;
                continue;
            }
            if (it.ns == ns && it.type != SIM_NVS_BLOB_DATA && strcmp(it.key, key) == 0) {
                loc->page = (int)p;
                loc->entry = e;
                loc->item = it;
                found = true;
            }
            e += span;
        }
    }
    return found;
}

/* ---- pages ---- */

static uint32_t prv_next_free_entry(uint32_t p)
{
    uint32_t last = 0;
    for (uint32_t e = 0; e < ENTRIES; e++) {
        if (prv_entry_state(p, e) != ES_EMPTY) last = e + 1;
    }
    return last;
}

static otaml_status_t prv_init_page(uint32_t p)
{
    uint32_t order[64], n = nvs_ordered(order);
    uint8_t h[32];
    memset(h, 0xFF, sizeof(h));
    uint32_t state = PS_ACTIVE, seq = n ? prv_page_seq(order[n - 1]) + 1 : 0;
    memcpy(h, &state, 4);
    memcpy(h + 4, &seq, 4);
    h[8] = VERSION2;
    uint32_t crc = nvs_crc(0xFFFFFFFFu, h + 4, 24);
    memcpy(h + 28, &crc, 4);
    OTAML_RETURN_IF_ERROR(prv_write(p * SIM_NVS_PAGE, h, sizeof(h)));
    s_active = (int)p;
    s_next_free = 0;
    return OTAML_OK;
}

/* Copy the item at (p, e) to the end of the active page, whole (it must fit). */
static otaml_status_t prv_copy_item(uint32_t p, uint32_t e, uint32_t span)
{
    uint32_t at = (uint32_t)s_active * SIM_NVS_PAGE + FIRST_ENTRY + s_next_free * ENTRY;
    OTAML_RETURN_IF_ERROR(prv_write(at, nvs_entry(p, e), span * ENTRY));
    OTAML_RETURN_IF_ERROR(nvs_set_entry_states((uint32_t)s_active, s_next_free, span, ES_WRITTEN));
    s_next_free += span;
    return OTAML_OK;
}

/* Move a FREEING page's live items to the active page, then erase it. */
static otaml_status_t prv_drain(uint32_t victim)
{
    for (uint32_t e = 0; e < ENTRIES;) {
        nvs_item_t it;
        uint32_t span = nvs_item_at(victim, e, &it);
        if (span == 0) {
            e++;
            continue;
        }
        nvs_loc_t newer;
        bool copied = nvs_find(it.ns, it.key, (int)victim, &newer); /* already moved before a power cut */
        if (!copied) {
            if (s_next_free + span > ENTRIES) return OTAML_ERR_NO_MEM;
            OTAML_RETURN_IF_ERROR(prv_copy_item(victim, e, span));
        }
        e += span;
    }
    return prv_erase_page(victim);
}

/* Room for span entries in the active page: a fresh page, or garbage collection into the one page NVS
 * keeps free (PageManager::requestNewPage). */
static otaml_status_t prv_reserve(uint32_t span)
{
    for (uint32_t round = 0; round < 2 * s_pages + 2; round++) {
        if (s_active >= 0 && s_next_free + span <= ENTRIES) return OTAML_OK;
        if (s_active >= 0) {
            OTAML_RETURN_IF_ERROR(prv_set_page_state((uint32_t)s_active, PS_FULL));
            s_active = -1;
        }
        int free_page = -1;
        uint32_t n_free = 0;
        for (uint32_t p = 0; p < s_pages; p++) {
            if (prv_page_state(p) == PS_UNINIT) {
                n_free++;
                if (free_page < 0) free_page = (int)p;
            }
        }
        if (n_free == 0) return OTAML_ERR_NO_MEM;
        if (n_free >= 2) {
            OTAML_RETURN_IF_ERROR(prv_init_page((uint32_t)free_page));
            continue;
        }
        int victim = -1;
        uint32_t most = 0;
        for (uint32_t p = 0; p < s_pages; p++) {
            if (prv_page_state(p) != PS_FULL || !prv_header_ok(p)) continue;
            uint32_t erased = 0;
            for (uint32_t e = 0; e < ENTRIES; e++) erased += prv_entry_state(p, e) == ES_ERASED;
            if (erased > most) {
                most = erased;
                victim = (int)p;
            }
        }
        if (victim < 0) {
            OTAML_LOGE(TAG, "NVS is full: no page has erased entries to reclaim");
            return OTAML_ERR_NO_MEM;
        }
        OTAML_RETURN_IF_ERROR(prv_set_page_state((uint32_t)victim, PS_FREEING));
        OTAML_RETURN_IF_ERROR(prv_init_page((uint32_t)free_page));
        OTAML_RETURN_IF_ERROR(prv_drain((uint32_t)victim));
    }
    return OTAML_ERR_NO_MEM;
}

/* ---- mount ---- */

static bool prv_all_ff(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0xFF) return false;
    }
    return true;
}

static otaml_status_t prv_repair(void)
{
    for (uint32_t p = 0; p < s_pages; p++) {
        uint32_t st = prv_page_state(p);
        bool erased = st == PS_UNINIT && prv_all_ff(prv_page(p), SIM_NVS_PAGE);
        if (!erased && !prv_in_use(p)) {
            OTAML_LOGW(TAG, "page %u: state 0x%08x with a bad header: erased", (unsigned)p, (unsigned)st);
            OTAML_RETURN_IF_ERROR(prv_erase_page(p));
        }
    }
    uint32_t order[64], n = nvs_ordered(order);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = order[i];
        for (uint32_t e = 0; e < ENTRIES;) {
            int es = prv_entry_state(p, e);
            nvs_item_t it;
            uint32_t span = nvs_item_at(p, e, &it);
            if (es == ES_EMPTY && !prv_all_ff(nvs_entry(p, e), ENTRY)) {
                /* written, never marked: a cut between the bytes and their state */
                OTAML_RETURN_IF_ERROR(nvs_set_entry_states(p, e, 1, ES_ERASED));
            } else if (es == ES_WRITTEN && span == 0) {
                OTAML_RETURN_IF_ERROR(nvs_set_entry_states(p, e, 1, ES_ERASED));
            }
            e += span ? span : 1;
        }
    }
    /* A key written twice (a cut before the older copy was erased): the newer one stands. */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = order[i];
        for (uint32_t e = 0; e < ENTRIES;) {
            nvs_item_t it;
            uint32_t span = nvs_item_at(p, e, &it);
            if (span == 0) {
                e++;
                continue;
            }
            nvs_loc_t newest;
            if (it.type != SIM_NVS_BLOB_DATA && nvs_find(it.ns, it.key, -1, &newest) &&
                (newest.page != (int)p || newest.entry != e) && prv_page_state(p) != PS_FREEING) {
                OTAML_RETURN_IF_ERROR(nvs_set_entry_states(p, e, span, ES_ERASED));
            }
            e += span;
        }
    }
    /* The active page: the newest ACTIVE one; an older ACTIVE one (a cut mid-switch) is FULL. */
    s_active = -1;
    n = nvs_ordered(order);
    for (uint32_t i = 0; i < n; i++) {
        if (prv_page_state(order[i]) != PS_ACTIVE) continue;
        if (s_active >= 0) OTAML_RETURN_IF_ERROR(prv_set_page_state((uint32_t)s_active, PS_FULL));
        s_active = (int)order[i];
    }
    if (s_active >= 0) s_next_free = prv_next_free_entry((uint32_t)s_active);
    for (uint32_t i = 0; i < n; i++) {
        if (prv_page_state(order[i]) != PS_FREEING) continue;
        OTAML_LOGW(TAG, "page %u was being garbage-collected at reset: finishing", (unsigned)order[i]);
        if (s_active < 0) {
            for (uint32_t p = 0; p < s_pages && s_active < 0; p++) {
                if (prv_page_state(p) == PS_UNINIT) OTAML_RETURN_IF_ERROR(prv_init_page(p));
            }
        }
        if (s_active < 0) return OTAML_ERR_NO_MEM;
        OTAML_RETURN_IF_ERROR(prv_drain(order[i]));
    }
    return OTAML_OK;
}

static otaml_status_t prv_mount(uint32_t offset, uint32_t size, bool readonly)
{
    sim_nvs_unmount();
    s_readonly = readonly;
    if (size % SIM_NVS_PAGE != 0 || size < 3 * SIM_NVS_PAGE || size > 64 * SIM_NVS_PAGE) return OTAML_ERR_INVALID_ARG;
    s_buf = malloc(size);
    if (s_buf == NULL) return OTAML_ERR_NO_MEM;
    s_off = offset;
    s_pages = size / SIM_NVS_PAGE;
    otaml_status_t st = sim_flash_read(offset, s_buf, size);
    if (st == OTAML_OK) st = prv_repair();
    if (st != OTAML_OK) sim_nvs_unmount();
    return st;
}

otaml_status_t sim_nvs_mount(uint32_t offset, uint32_t size) { return prv_mount(offset, size, false); }

otaml_status_t sim_nvs_mount_readonly(uint32_t offset, uint32_t size) { return prv_mount(offset, size, true); }

void sim_nvs_unmount(void)
{
    free(s_buf);
    s_buf = NULL;
    s_active = -1;
}

/* Append one item (header entry plus data) to the active page: bytes, then states. */
otaml_status_t nvs_append(uint8_t ns, uint8_t type, const char *key, const uint8_t data8[8], const uint8_t *bytes,
                          uint32_t nbytes, nvs_loc_t *where)
{
    uint32_t span = 1 + (nbytes + ENTRY - 1) / ENTRY;
    OTAML_RETURN_IF_ERROR(prv_reserve(span));
    uint8_t *item = malloc(span * ENTRY);
    if (item == NULL) return OTAML_ERR_NO_MEM;
    memset(item, 0xFF, span * ENTRY);
    item[0] = ns;
    item[1] = type;
    item[2] = (uint8_t)span;
    item[3] = 0xFF;
    memset(item + 8, 0, 16);
    memcpy(item + 8, key, strlen(key));
    memcpy(item + 24, data8, 8);
    if (nbytes) memcpy(item + ENTRY, bytes, nbytes);
    uint32_t crc = prv_entry_crc(item);
    memcpy(item + 4, &crc, 4);
    uint32_t at = (uint32_t)s_active * SIM_NVS_PAGE + FIRST_ENTRY + s_next_free * ENTRY;
    otaml_status_t st = prv_write(at, item, span * ENTRY);
    free(item);
    OTAML_RETURN_IF_ERROR(st);
    OTAML_RETURN_IF_ERROR(nvs_set_entry_states((uint32_t)s_active, s_next_free, span, ES_WRITTEN));
    if (where != NULL) {
        where->page = s_active;
        where->entry = s_next_free;
    }
    s_next_free += span;
    return OTAML_OK;
}

bool nvs_mounted(void) { return s_buf != NULL; }

