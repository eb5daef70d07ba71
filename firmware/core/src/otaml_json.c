/*
 * The strict JSON tokenizer (otaml_json.h; the rules are manifests/README.md, "Strict JSON"). One pass,
 * a state per step, an explicit stack of at most OTAML_JSON_MAX_DEPTH open containers and the fixed
 * token table in otaml_json_t: no recursion and no heap, so hostile nesting cannot reach the stack.
 */
#include <string.h>

#include "otaml_json.h"

typedef enum { S_VALUE, S_FIRST, S_NAME, S_AFTER } prv_state_t;

static bool prv_is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool prv_is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

static otaml_status_t prv_fail(otaml_json_t *doc, size_t at, const char *why)
{
    doc->error = why;
    doc->error_at = at;
    return OTAML_ERR_PARSE;
}

static size_t prv_skip_ws(const otaml_json_t *doc, size_t i)
{
    while (i < doc->len && prv_is_ws(doc->src[i])) i++;
    return i;
}

/* A new token, or -1 when the table is full (J6). */
static int prv_token(otaml_json_t *doc, otaml_json_type_t type, size_t start, size_t len, uint8_t flags)
{
    if (doc->count >= OTAML_JSON_MAX_TOKENS) return -1;
    otaml_json_tok_t *t = &doc->tok[doc->count];
    t->type = (uint8_t)type;
    t->flags = flags;
    t->start = (uint16_t)start;
    t->len = (uint16_t)len;
    t->next = (uint16_t)(doc->count + 1);
    return (int)doc->count++;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629; Unicode Table 3-7), 0 if there is none. */
static size_t prv_utf8_len(const uint8_t *p, size_t avail)
{
    uint8_t c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) n = 3, lo = 0xA0; /* no overlongs */
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) n = 3;
    else if (c == 0xED) n = 3, hi = 0x9F; /* no surrogates */
    else if (c == 0xF0) n = 4, lo = 0x90; /* no overlongs */
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4) n = 4, hi = 0x8F; /* nothing above U+10FFFF */
    else return 0;
    if (avail < n || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    }
    return n;
}

static int32_t prv_hex4(const uint8_t *p, size_t avail)
{
    if (avail < 4) return -1;
    int32_t v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        int d = prv_is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The string whose opening quote is at *pos; on success *pos is just after the closing quote. */
static otaml_status_t prv_string(otaml_json_t *doc, size_t *pos, uint8_t *flags)
{
    const uint8_t *s = doc->src;
    size_t len = doc->len, i = *pos + 1;
    for (;;) {
        if (i >= len) return prv_fail(doc, i, "J2 unterminated string");
        uint8_t c = s[i];
        if (c == '"') break;
        if (c < 0x20) return prv_fail(doc, i, "J3 raw control character in a string");
        if (c >= 0x80) {
            size_t n = prv_utf8_len(s + i, len - i);
            if (n == 0) return prv_fail(doc, i, "J1 not UTF-8");
            i += n;
            continue;
        }
        if (c != '\\') {
            i++;
            continue;
        }
        *flags |= OTAML_JSON_F_ESCAPED;
        uint8_t e = i + 1 < len ? s[i + 1] : 0;
        if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
            i += 2;
            continue;
        }
        if (e != 'u') return prv_fail(doc, i, "J3 unknown escape");
        int32_t cp = prv_hex4(s + i + 2, len - (i + 2));
        if (cp < 0) return prv_fail(doc, i, "J3 \\u not followed by 4 hex digits");
        if (cp == 0) return prv_fail(doc, i, "J3 the escape \\u0000");
        if (cp >= 0xDC00 && cp <= 0xDFFF) return prv_fail(doc, i, "J3 a lone low surrogate escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int32_t low = (i + 8 <= len && s[i + 6] == '\\' && s[i + 7] == 'u') ? prv_hex4(s + i + 8, len - (i + 8)) : -1;
            if (low < 0xDC00 || low > 0xDFFF) return prv_fail(doc, i, "J3 a high surrogate escape without a low one");
            i += 6;
        }
        i += 6;
    }
    *pos = i + 1;
    return OTAML_OK;
}

/* The number starting at *pos (J5); on success *pos is just after it. */
static otaml_status_t prv_number(otaml_json_t *doc, size_t *pos, uint8_t *flags)
{
    const uint8_t *s = doc->src;
    size_t len = doc->len, start = *pos, i = start;
    bool negative = s[i] == '-', nonzero = false;
    if (negative) i++;
    if (i >= len || !prv_is_digit(s[i])) return prv_fail(doc, i, "J5 not a JSON number");
    size_t int_start = i;
    if (s[i] == '0') {
        i++;
        if (i < len && prv_is_digit(s[i])) return prv_fail(doc, i, "J5 a number with a leading zero");
    } else {
        nonzero = true;
        while (i < len && prv_is_digit(s[i])) i++;
    }
    size_t int_digits = i - int_start;
    bool integer = true;
    if (i < len && s[i] == '.') {
        integer = false;
        i++;
        if (i >= len || !prv_is_digit(s[i])) return prv_fail(doc, i, "J5 a number ending in '.'");
        for (; i < len && prv_is_digit(s[i]); i++) {
            if (s[i] != '0') nonzero = true;
        }
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) return prv_fail(doc, i, "J5 a number with an exponent");
    if (i - start > OTAML_JSON_MAX_NUMBER_CHARS) return prv_fail(doc, start, "J5 a number of more than 32 characters");
    if (negative && !nonzero) return prv_fail(doc, start, "J5 negative zero");
    if (integer) {
        uint64_t v = 0;
        if (int_digits > 16) return prv_fail(doc, start, "J5 an integer beyond +-(2^53-1)");
        for (size_t k = int_start; k < i; k++) v = v * 10 + (uint64_t)(s[k] - '0');
        if (v > (uint64_t)OTAML_JSON_MAX_SAFE_INTEGER) return prv_fail(doc, start, "J5 an integer beyond +-(2^53-1)");
        *flags |= OTAML_JSON_F_INTEGER;
    }
    *pos = i;
    return OTAML_OK;
}

/* One code point of an already validated string, advancing *i past it. */
static uint32_t prv_next_cp(const uint8_t *s, size_t *i)
{
    uint8_t c = s[*i];
    if (c == '\\') {
        uint8_t e = s[*i + 1];
        *i += 2;
        switch (e) {
        case 'b': return '\b';
        case 'f': return '\f';
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case 'u': break;
        default: return e; /* " \ / */
        }
        uint32_t cp = (uint32_t)prv_hex4(s + *i, 4);
        *i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t low = (uint32_t)prv_hex4(s + *i + 2, 4);
            *i += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        return cp;
    }
    if (c < 0x80) {
        (*i)++;
        return c;
    }
    size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    uint32_t cp = c & (n == 4 ? 0x07 : n == 3 ? 0x0F : 0x1F);
    for (size_t k = 1; k < n; k++) cp = (cp << 6) | (s[*i + k] & 0x3F);
    *i += n;
    return cp;
}

static size_t prv_utf8_encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Equal after unescaping: raw bytes when neither has an escape, else code point by code point. */
static bool prv_names_equal(const otaml_json_t *doc, const otaml_json_tok_t *a, const otaml_json_tok_t *b)
{
    if (!((a->flags | b->flags) & OTAML_JSON_F_ESCAPED)) {
        return a->len == b->len && memcmp(doc->src + a->start, doc->src + b->start, a->len) == 0;
    }
    size_t i = a->start, j = b->start, i_end = (size_t)a->start + a->len, j_end = (size_t)b->start + b->len;
    while (i < i_end && j < j_end) {
        if (prv_next_cp(doc->src, &i) != prv_next_cp(doc->src, &j)) return false;
    }
    return i == i_end && j == j_end;
}

int otaml_json_first_member(const otaml_json_t *doc, int object)
{
    if (object < 0 || (size_t)object >= doc->count || doc->tok[object].type != OTAML_JSON_OBJECT) return -1;
    return object + 1 < doc->tok[object].next ? object + 1 : -1;
}

int otaml_json_next_member(const otaml_json_t *doc, int object, int name)
{
    int after = doc->tok[name + 1].next;
    return after < doc->tok[object].next ? after : -1;
}

/* J4, when an object closes (its members are complete). At most 128 names: quadratic is fine. */
static otaml_status_t prv_check_names(otaml_json_t *doc, int object)
{
    for (int a = otaml_json_first_member(doc, object); a >= 0; a = otaml_json_next_member(doc, object, a)) {
        for (int b = otaml_json_next_member(doc, object, a); b >= 0; b = otaml_json_next_member(doc, object, b)) {
            if (prv_names_equal(doc, &doc->tok[a], &doc->tok[b])) {
                return prv_fail(doc, doc->tok[b].start, "J4 duplicate member name");
            }
        }
    }
    return OTAML_OK;
}

static otaml_status_t prv_scalar(otaml_json_t *doc, size_t *pos)
{
    static const struct {
        const char *word;
        otaml_json_type_t type;
    } LITERALS[] = {{"true", OTAML_JSON_TRUE}, {"false", OTAML_JSON_FALSE}, {"null", OTAML_JSON_NULL}};
    size_t start = *pos;
    uint8_t c = doc->src[start], flags = 0;
    otaml_json_type_t type = OTAML_JSON_NULL;
    otaml_status_t st;
    if (c == '"') {
        type = OTAML_JSON_STRING;
        st = prv_string(doc, pos, &flags);
        start++; /* strings point between their quotes */
    } else if (c == '-' || prv_is_digit(c)) {
        type = OTAML_JSON_NUMBER;
        st = prv_number(doc, pos, &flags);
    } else {
        st = prv_fail(doc, start, "J2 expected a value");
        for (size_t k = 0; k < sizeof(LITERALS) / sizeof(LITERALS[0]); k++) {
            size_t n = strlen(LITERALS[k].word);
            if (doc->len - start >= n && memcmp(doc->src + start, LITERALS[k].word, n) == 0) {
                type = LITERALS[k].type;
                *pos = start + n;
                st = OTAML_OK;
                break;
            }
        }
    }
    if (st != OTAML_OK) return st;
    size_t len = type == OTAML_JSON_STRING ? *pos - 1 - start : *pos - start;
    if (prv_token(doc, type, start, len, flags) < 0) return prv_fail(doc, start, "J6 more than 256 values and names");
    return OTAML_OK;
}

otaml_status_t otaml_json_parse(otaml_json_t *doc, const uint8_t *src, size_t len)
{
    if (doc == NULL || (src == NULL && len > 0)) return OTAML_ERR_INVALID_ARG;
    doc->src = src;
    doc->len = len;
    doc->count = 0;
    doc->error = NULL;
    doc->error_at = 0;
    if (len > OTAML_JSON_MAX_INPUT) return OTAML_ERR_TOO_LARGE;
    if (len >= 3 && src[0] == 0xEF && src[1] == 0xBB && src[2] == 0xBF) return prv_fail(doc, 0, "J1 a byte-order mark");

    int stack[OTAML_JSON_MAX_DEPTH];
    size_t depth = 0, pos = prv_skip_ws(doc, 0);
    if (pos >= len || src[pos] != '{') return prv_fail(doc, pos, "J2 the top level is not an object");
    prv_state_t state = S_VALUE;
    for (;;) {
        pos = prv_skip_ws(doc, pos);
        uint8_t c = pos < len ? src[pos] : 0;
        if (pos >= len && state != S_VALUE) return prv_fail(doc, pos, "J2 unexpected end of the document");
        if (state == S_VALUE) {
            if (pos >= len) return prv_fail(doc, pos, "J2 unexpected end of the document");
            if (c == '{' || c == '[') {
                if (depth == OTAML_JSON_MAX_DEPTH) return prv_fail(doc, pos, "J6 nesting deeper than 8");
                int t = prv_token(doc, c == '{' ? OTAML_JSON_OBJECT : OTAML_JSON_ARRAY, pos, 0, 0);
                if (t < 0) return prv_fail(doc, pos, "J6 more than 256 values and names");
                stack[depth++] = t;
                pos++;
                state = S_FIRST;
            } else {
                OTAML_RETURN_IF_ERROR(prv_scalar(doc, &pos));
                state = S_AFTER;
            }
            continue;
        }
        otaml_json_tok_t *top = &doc->tok[stack[depth - 1]];
        bool is_object = top->type == OTAML_JSON_OBJECT;
        bool closes = c == (is_object ? '}' : ']');
        if (state == S_FIRST || state == S_NAME) {
            if (!(state == S_FIRST && closes)) {
                if (!is_object) {
                    state = S_VALUE;
                    continue;
                }
                if (c != '"') return prv_fail(doc, pos, "J2 expected a member name");
                size_t start = pos;
                uint8_t flags = OTAML_JSON_F_NAME;
                OTAML_RETURN_IF_ERROR(prv_string(doc, &pos, &flags));
                if (prv_token(doc, OTAML_JSON_STRING, start + 1, pos - start - 2, flags) < 0) {
                    return prv_fail(doc, start, "J6 more than 256 values and names");
                }
                pos = prv_skip_ws(doc, pos);
                if (pos >= len || src[pos] != ':') return prv_fail(doc, pos, "J2 expected ':' after a member name");
                pos++;
                state = S_VALUE;
                continue;
            }
        } else if (c == ',') {
            pos++;
            state = is_object ? S_NAME : S_VALUE;
            continue;
        } else if (!closes) {
            return prv_fail(doc, pos, "J2 expected ',' or the end of the object or array");
        }
        /* The container closes. */
        pos++;
        top->len = (uint16_t)(pos - top->start);
        top->next = (uint16_t)doc->count;
        if (is_object) OTAML_RETURN_IF_ERROR(prv_check_names(doc, stack[depth - 1]));
        if (--depth == 0) break;
        state = S_AFTER;
    }
    if (prv_skip_ws(doc, pos) != len) return prv_fail(doc, pos, "J2 data after the JSON object");
    return OTAML_OK;
}

int otaml_json_get(const otaml_json_t *doc, int object, const char *name)
{
    for (int k = otaml_json_first_member(doc, object); k >= 0; k = otaml_json_next_member(doc, object, k)) {
        if (otaml_json_string_is(doc, k, name)) return k + 1;
    }
    return -1;
}

bool otaml_json_string_is(const otaml_json_t *doc, int tok, const char *s)
{
    if (tok < 0 || (size_t)tok >= doc->count || doc->tok[tok].type != OTAML_JSON_STRING) return false;
    const otaml_json_tok_t *t = &doc->tok[tok];
    size_t i = t->start, end = (size_t)t->start + t->len, k = 0;
    while (i < end) {
        if (s[k] == '\0' || prv_next_cp(doc->src, &i) != (uint8_t)s[k]) return false;
        k++;
    }
    return s[k] == '\0';
}

otaml_status_t otaml_json_string(const otaml_json_t *doc, int tok, char *out, size_t size, size_t *n)
{
    if (tok < 0 || (size_t)tok >= doc->count || doc->tok[tok].type != OTAML_JSON_STRING) return OTAML_ERR_PARSE;
    if (size == 0) return OTAML_ERR_TOO_LARGE;
    const otaml_json_tok_t *t = &doc->tok[tok];
    size_t i = t->start, end = (size_t)t->start + t->len, o = 0;
    out[0] = '\0';
    while (i < end) {
        uint8_t buf[4];
        size_t k = prv_utf8_encode(prv_next_cp(doc->src, &i), buf);
        if (o + k >= size) {
            out[0] = '\0';
            return OTAML_ERR_TOO_LARGE;
        }
        memcpy(out + o, buf, k);
        o += k;
    }
    out[o] = '\0';
    if (n) *n = o;
    return OTAML_OK;
}

otaml_status_t otaml_json_integer(const otaml_json_t *doc, int tok, int64_t *value)
{
    if (tok < 0 || (size_t)tok >= doc->count || doc->tok[tok].type != OTAML_JSON_NUMBER ||
        !(doc->tok[tok].flags & OTAML_JSON_F_INTEGER)) {
        return OTAML_ERR_PARSE;
    }
    const otaml_json_tok_t *t = &doc->tok[tok];
    const uint8_t *s = doc->src + t->start;
    bool negative = s[0] == '-';
    int64_t v = 0;
    for (size_t k = negative ? 1 : 0; k < t->len; k++) v = v * 10 + (s[k] - '0');
    *value = negative ? -v : v;
    return OTAML_OK;
}
