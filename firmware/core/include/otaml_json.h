/*
 * Strict JSON for signed documents (manifests/README.md, "Strict JSON", rules J1-J6): a tokenizer
 * into a fixed table, no heap, no recursion. The server reads the same bytes with the same rules
 * (server/otaml/manifest/strictjson.py); manifests/vectors/adversarial.jsonl proves they agree.
 *
 * Security-critical: every byte is checked before a token points at it. otaml_json_parse() refuses,
 * with OTAML_ERR_PARSE and doc->error naming the rule:
 *   J1  bytes that are not UTF-8 by RFC 3629 inside strings (overlong forms, surrogates, code points
 *       above U+10FFFF, stray or missing continuation bytes), a byte-order mark, and any byte >= 0x80
 *       outside a string (the grammar has none);
 *   J2  anything but one JSON object at the top level (RFC 8259 grammar; whitespace is space, tab,
 *       LF, CR only) and anything but whitespace after it; a truncated document;
 *   J3  raw control characters in strings, unknown escapes, the escape \u0000, a high surrogate
 *       escape not followed at once by a low one, a lone low surrogate escape;
 *   J4  two members of one object with the same name after unescaping;
 *   J5  numbers outside -?(0|[1-9][0-9]*)(\.[0-9]+)?, exponents, negative zero, more than 32
 *       characters, integer literals beyond +-(2^53-1);
 *   J6  nesting deeper than OTAML_JSON_MAX_DEPTH, more than OTAML_JSON_MAX_TOKENS values and names.
 * and with OTAML_ERR_TOO_LARGE input longer than OTAML_JSON_MAX_INPUT (token offsets are 16 bits).
 * Because \u0000 is refused, an unescaped string never holds a NUL: C strings cannot be truncated.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otaml_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTAML_JSON_MAX_DEPTH 8        /* J6: the top-level object is depth 1 */
#define OTAML_JSON_MAX_TOKENS 256     /* J6: values (containers included) plus member names */
#define OTAML_JSON_MAX_NUMBER_CHARS 32 /* J5 */
#define OTAML_JSON_MAX_SAFE_INTEGER 9007199254740991LL /* J5: 2^53 - 1 */
#define OTAML_JSON_MAX_INPUT 65535

typedef enum {
    OTAML_JSON_OBJECT = 1,
    OTAML_JSON_ARRAY,
    OTAML_JSON_STRING,
    OTAML_JSON_NUMBER,
    OTAML_JSON_TRUE,
    OTAML_JSON_FALSE,
    OTAML_JSON_NULL,
} otaml_json_type_t;

#define OTAML_JSON_F_NAME 0x01    /* a member name (its value is the next token) */
#define OTAML_JSON_F_ESCAPED 0x02 /* a string with at least one escape */
#define OTAML_JSON_F_INTEGER 0x04 /* a number literal without a fraction, within +-(2^53-1) */

typedef struct {
    uint16_t start; /* offset of the first byte; strings: after the opening quote */
    uint16_t len;   /* bytes; strings: the raw content between the quotes */
    uint16_t next;  /* index of the first token after this one and everything inside it */
    uint8_t type;   /* otaml_json_type_t */
    uint8_t flags;
} otaml_json_tok_t;

/* About 2 KB: allocate it (the OTA task's stack also holds TLS). Token 0 is the top-level object. */
typedef struct {
    const uint8_t *src;
    size_t len;
    size_t count;
    const char *error; /* the rule and what broke it, when otaml_json_parse refused */
    size_t error_at;   /* byte offset where it broke */
    otaml_json_tok_t tok[OTAML_JSON_MAX_TOKENS];
} otaml_json_t;

/**
 * Tokenize src (len bytes, need not be NUL-terminated; it must outlive doc).
 * @return OTAML_OK; OTAML_ERR_PARSE (a rule above is broken; doc->error says which);
 *         OTAML_ERR_TOO_LARGE (len over OTAML_JSON_MAX_INPUT); OTAML_ERR_INVALID_ARG.
 */
otaml_status_t otaml_json_parse(otaml_json_t *doc, const uint8_t *src, size_t len);

/** Index of the value of member `name` (ASCII) of the object at token `object`; -1 if absent or
 * `object` is not an object. Names are unique (J4), so there is at most one. */
int otaml_json_get(const otaml_json_t *doc, int object, const char *name);

/** First member name token of an object, or -1; its value is the token after it. */
int otaml_json_first_member(const otaml_json_t *doc, int object);
/** The member name after `name` in the same object, or -1. */
int otaml_json_next_member(const otaml_json_t *doc, int object, int name);

/** Whether a string token unescapes to exactly the ASCII text `s`. */
bool otaml_json_string_is(const otaml_json_t *doc, int tok, const char *s);

/**
 * Unescape a string token into out as NUL-terminated UTF-8 (never containing NUL itself).
 * @param n set to the length in bytes (may be NULL).
 * @return OTAML_OK; OTAML_ERR_PARSE (not a string); OTAML_ERR_TOO_LARGE (does not fit in size - 1).
 */
otaml_status_t otaml_json_string(const otaml_json_t *doc, int tok, char *out, size_t size, size_t *n);

/** The value of an integer literal (OTAML_JSON_F_INTEGER). @return OTAML_OK or OTAML_ERR_PARSE. */
otaml_status_t otaml_json_integer(const otaml_json_t *doc, int tok, int64_t *value);

#ifdef __cplusplus
}
#endif
