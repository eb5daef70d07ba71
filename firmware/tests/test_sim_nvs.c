/*
 * The simulator's NVS keeps ESP-IDF's format and its guarantees: values survive a remount (a reboot),
 * garbage collection keeps every live key while the same keys are rewritten thousands of times, and a
 * power cut at any flash operation of a write leaves each key with its old or its new value, never
 * neither, never another key damaged. Images from the official generator are read in
 * tests/firmware/test_nvs.py.
 */
#include <unistd.h>

#include "otaml_test.h"
#include "sim_flash.h"
#include "sim_nvs.h"

#define NS "otaml"
#define NVS_OFF 0x9000u
#define NVS_SIZE 0x4000u

static char s_path[1024] = "/tmp/otaml-nvs-XXXXXX";

static void reboot(void)
{
    sim_nvs_unmount();
    sim_flash_close();
    sim_flash_cut_after(-1);
    CHECK_EQ_INT(sim_flash_open(s_path), OTAML_OK);
    CHECK_EQ_INT(sim_nvs_mount(NVS_OFF, NVS_SIZE), OTAML_OK);
}

static void check_str(const char *key, const char *want)
{
    char buf[SIM_NVS_MAX_STR];
    otaml_status_t st = sim_nvs_get_str(NS, key, buf, sizeof(buf));
    CHECK_EQ_INT(st, OTAML_OK);
    if (st == OTAML_OK) CHECK_EQ_STR(buf, want);
}

/* test_sim_nvs [KEEP]: with a path, the flash file is written there and kept, so tests/firmware/test_nvs.py
 * can read what garbage collection and power cuts left with an independent reader and ESP-IDF's nvs_tool. */
int main(int argc, char **argv)
{
    int fd = mkstemp(s_path);
    close(fd);
    unlink(s_path);
    if (argc > 1) {
        snprintf(s_path, sizeof(s_path), "%s", argv[1]);
        unlink(s_path);
    }
    CHECK_EQ_INT(sim_flash_open(s_path), OTAML_OK);
    CHECK_EQ_INT(sim_nvs_mount(NVS_OFF, NVS_SIZE), OTAML_OK);

    uint64_t v = 0;
    char buf[64];
    CHECK_EQ_INT(sim_nvs_get_int(NS, "mf_ver", &v), OTAML_ERR_NOT_FOUND);
    CHECK_EQ_INT(sim_nvs_set_u64(NS, "mf_ver", 42), OTAML_OK);
    CHECK_EQ_INT(sim_nvs_set_str(NS, "token", "abcdefghijklmnopqrstuvwxyz012345"), OTAML_OK);
    char long_text[1500];
    memset(long_text, 'k', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    CHECK_EQ_INT(sim_nvs_set_str(NS, "keyset", long_text), OTAML_OK); /* 48 entries: a multi-span string */
    CHECK_EQ_INT(sim_nvs_set_str(NS, "sixteen_chars_xx", "x"), OTAML_ERR_INVALID_ARG);
    CHECK_EQ_INT(sim_nvs_get_str(NS, "token", buf, 8), OTAML_ERR_TOO_LARGE);

    reboot();
    CHECK_EQ_INT(sim_nvs_get_int(NS, "mf_ver", &v), OTAML_OK);
    CHECK_EQ_INT(v, 42);
    check_str("token", "abcdefghijklmnopqrstuvwxyz012345");
    check_str("keyset", long_text);

    /* Thousands of rewrites of a few keys cycle every page through garbage collection. */
    for (uint64_t i = 0; i < 3000; i++) {
        CHECK_EQ_INT(sim_nvs_set_u64(NS, "dl_off", i), OTAML_OK);
        if (i % 97 == 0) {
            snprintf(buf, sizeof(buf), "detail %llu", (unsigned long long)i);
            CHECK_EQ_INT(sim_nvs_set_str(NS, "ob_det", buf), OTAML_OK);
        }
    }
    reboot();
    CHECK_EQ_INT(sim_nvs_get_int(NS, "dl_off", &v), OTAML_OK);
    CHECK_EQ_INT(v, 2999);
    check_str("ob_det", "detail 2910");
    check_str("keyset", long_text);
    check_str("token", "abcdefghijklmnopqrstuvwxyz012345");
    CHECK_EQ_INT(sim_nvs_erase_key(NS, "ob_det"), OTAML_OK);
    reboot();
    CHECK_EQ_INT(sim_nvs_get_str(NS, "ob_det", buf, sizeof(buf)), OTAML_ERR_NOT_FOUND);

    /* A power cut after each possible number of flash operations of a write (including the writes that
     * trigger garbage collection): after the reboot the key holds the old or the new value, the others
     * are intact, and the store takes writes again. */
    long cuts_seen = 0;
    for (long cut = 0; cut < 24; cut++) {
        for (int round = 0; round < 200; round++) {
            char old_text[64], new_text[64];
            CHECK_EQ_INT(sim_nvs_get_str(NS, "token", old_text, sizeof(old_text)), OTAML_OK);
            snprintf(new_text, sizeof(new_text), "token-%02ld-%02d-%s", cut, round, "abcdefghijklmnop");
            sim_flash_cut_after(cut);
            otaml_status_t st = sim_nvs_set_str(NS, "token", new_text);
            if (st == OTAML_OK) {
                sim_flash_cut_after(-1);
                continue;
            }
            cuts_seen++;
            reboot();
            char now[64];
            CHECK_EQ_INT(sim_nvs_get_str(NS, "token", now, sizeof(now)), OTAML_OK);
            CHECK(strcmp(now, old_text) == 0 || strcmp(now, new_text) == 0);
            check_str("keyset", long_text);
            CHECK_EQ_INT(sim_nvs_get_int(NS, "mf_ver", &v), OTAML_OK);
            CHECK_EQ_INT(v, 42);
            break;
        }
    }
    printf("power cuts survived: %ld\n", cuts_seen);
    CHECK(cuts_seen >= 8); /* every operation of a plain write and of a garbage collection */
    CHECK_EQ_INT(sim_nvs_set_str(NS, "token", "after-the-cuts-0123456789"), OTAML_OK);
    reboot();
    check_str("token", "after-the-cuts-0123456789");

    sim_nvs_unmount();
    sim_flash_close();
    if (argc <= 1) unlink(s_path);
    printf("%d passed, %d failed\n", s_checks_passed, s_checks_failed);
    return s_checks_failed ? 1 : 0;
}
