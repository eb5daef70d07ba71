/* mbedTLS 2.28 (Debian 12, host build) and 3.x (ESP-IDF v5.5) differ in SHA-256 function names. */
#pragma once

#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

#if MBEDTLS_VERSION_NUMBER < 0x03000000
#define otaml_sha256_starts(ctx) mbedtls_sha256_starts_ret((ctx), 0)
#define otaml_sha256_update(ctx, d, n) mbedtls_sha256_update_ret((ctx), (d), (n))
#define otaml_sha256_finish(ctx, out) mbedtls_sha256_finish_ret((ctx), (out))
#define otaml_sha256(d, n, out) mbedtls_sha256_ret((d), (n), (out), 0)
#else
#define otaml_sha256_starts(ctx) mbedtls_sha256_starts((ctx), 0)
#define otaml_sha256_update(ctx, d, n) mbedtls_sha256_update((ctx), (d), (n))
#define otaml_sha256_finish(ctx, out) mbedtls_sha256_finish((ctx), (out))
#define otaml_sha256(d, n, out) mbedtls_sha256((d), (n), (out), 0)
#endif
