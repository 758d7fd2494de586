/* test_json.c — unit tests for core/json: the strict grammar (every class of
 * malformed input), UTF-8 and escape validation, depth limits, member
 * reporting, key lookup, number conversion, unescape and escape. */
#include "core/alloc.h"
#include "core/err.h"
#include "core/json.h"
#include "vt.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static int val(const char *s)
{
    return vg_json_validate(s, strlen(s), VG_JSON_DEFAULT_DEPTH);
}

static int val_n(const char *s, size_t n)
{
    return vg_json_validate(s, n, VG_JSON_DEFAULT_DEPTH);
}

/* Validates s wrapped in quotes, so string bytes can be written bare. */
static int val_str(const char *s, size_t n)
{
    char buf[256];
    if (n + 2 > sizeof buf)
        return -1000;
    buf[0] = '"';
    memcpy(buf + 1, s, n);
    buf[n + 1] = '"';
    return val_n(buf, n + 2);
}

static vg_json_member_t num(const char *s)
{
    vg_json_member_t m = {.key = "k", .key_len = 1, .type = VG_JSON_NUMBER, .raw = s, .raw_len = strlen(s)};
    return m;
}

static void test_valid_scalars(void)
{
    static const char *const ok[] = {
        "0", "-0", "1", "-1", "10", "1.5", "-0.0", "0.001", "1e5", "1E5", "1e+5", "1e-5", "1E-05", "-0.0e0",
        "123456789012345678901234567890", "1.7976931348623157e308", "true", "false", "null", "\"\"", "\"abc\"",
        " \t\r\n 1 \t\r\n", "[]", "{}", "[ ]", "{ }", "[1,2,3]", "{\"a\":1}", "[[],{},[{}]]",
        "{\"a\":{\"b\":[1,{\"c\":null}]}}", "\"\x7f\"", " {\"\":\"\"} ",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int rc = val(ok[i]);
        if (rc != VG_OK)
            printf("  valid text rejected: %s\n", ok[i]);
        VT_EQ_INT(rc, VG_OK);
    }
}

static void test_malformed_numbers(void)
{
    static const char *const bad[] = {
        "01", "-01", "00", "1.", ".5", "-", "+1", "1e", "1e+", "1E-", "1.e5", "0x10", "NaN", "nan", "Infinity",
        "-Infinity", "1_000", "1 2", "- 1", "1.5.2", "1ee5", "--1", "1e5.5", "0.", "-.5", "1,5", "[01]", "{\"a\":01}",
        "[1.]", "[-]", "0e", "1f",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = val(bad[i]);
        if (rc != VG_EMALFORMED)
            printf("  invalid number accepted: %s\n", bad[i]);
        VT_EQ_INT(rc, VG_EMALFORMED);
    }
}

static void test_malformed_structure(void)
{
    static const char *const bad[] = {
        "", " ", "\t\n", "{", "}", "[", "]", "[1,]", "{\"a\":1,}", "{,}", "[,1]", "[,]", "{\"a\"}", "{\"a\":}",
        "{\"a\" 1}", "{a:1}", "{'a':1}", "['a']", "[1 2]", "{\"a\":1 \"b\":2}", "{}{}", "{} x", "[1]]", "[[1]",
        "{\"a\":1}}", "/*c*/{}", "{}//", "{} /* */", "# c\n{}", "tru", "truee", "nul", "True", "NULL", "[1,,2]",
        "{\"a\"::1}", "\xef\xbb\xbf{}", "{1:2}", "{null:1}", "{\"a\":1;\"b\":2}", "[1:2]", "{\"a\",1}", "\"abc", "\"",
        "\f{}", "{}\v", "\xa0{}", "[\"a\"\"b\"]", "{\"a\":1,\"b\"}", "{\"a\":[}", "[{]}", "{]", "[}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = val(bad[i]);
        if (rc != VG_EMALFORMED)
            printf("  invalid text accepted: %s\n", bad[i]);
        VT_EQ_INT(rc, VG_EMALFORMED);
    }
    /* A NUL byte is never whitespace nor a token, wherever it sits. */
    VT_EQ_INT(val_n("{}\0", 3), VG_EMALFORMED);
    VT_EQ_INT(val_n("\0{}", 3), VG_EMALFORMED);
    VT_EQ_INT(val_n("[1,\0 2]", 7), VG_EMALFORMED);
    /* The length is the whole document: a prefix of valid text is judged alone. */
    VT_EQ_INT(val_n("{\"a\":1}", 6), VG_EMALFORMED);
    VT_EQ_INT(val_n("{\"a\":1}xyz", 7), VG_OK);
    VT_EQ_INT(val_n("truex", 4), VG_OK);
    VT_EQ_INT(val_n("tru", 3), VG_EMALFORMED);
    VT_EQ_INT(vg_json_validate(NULL, 0, 32), VG_EMALFORMED);
}

static void test_strings_escapes(void)
{
    static const char *const ok[] = {
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u0041\"", "\"\\u00e9\\u00E9\"", "\"\\uD83D\\uDE00\"",
        "\"\\ud83d\\ude00\"", "\"\\uDBFF\\uDFFF\"", "\"\\uD800\\uDC00\"", "\"\\u0000\"", "\"\\uFFFF\"", "\"\\uE000\"",
        "\"a\\u0041b\\u0042c\"", "\"\\\\u00\"",
    };
    static const char *const bad[] = {
        "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"", "\"\\uD83D\"", "\"\\uDE00\"", "\"\\uD83D\\u0041\"", "\"\\uD83Dx\"",
        "\"\\uDE00\\uD83D\"", "\"\\uD83D\\uD83D\"", "\"\\\"", "\"\\U0041\"", "\"\\a\"", "\"\\0\"", "\"\\'\"",
        "\"\\uD83D\\\"", "\"\\uD83D\\uDE0\"", "\"\\u\"", "\"\\uDFFF\"", "\"\\ud800\\n\"", "\"\\",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int rc = val(ok[i]);
        if (rc != VG_OK)
            printf("  valid string rejected: %s\n", ok[i]);
        VT_EQ_INT(rc, VG_OK);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = val(bad[i]);
        if (rc != VG_EMALFORMED)
            printf("  invalid string accepted: %s\n", bad[i]);
        VT_EQ_INT(rc, VG_EMALFORMED);
    }
    /* Every raw control character is refused; everything else in ASCII is fine. */
    for (int c = 0; c < 0x80; c++) {
        char ch = (char)c;
        int want = c < 0x20 ? VG_EMALFORMED : (c == '"' || c == '\\') ? VG_EMALFORMED : VG_OK;
        VT_EQ_INT(val_str(&ch, 1), want);
    }
}

static void test_utf8(void)
{
    static const char *const ok[] = {
        "\xc3\xa9",         /* U+00E9 */
        "\xc2\x80",         /* U+0080, smallest 2-byte */
        "\xdf\xbf",         /* U+07FF */
        "\xe0\xa0\x80",     /* U+0800, smallest 3-byte */
        "\xe2\x82\xac",     /* U+20AC */
        "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",     /* U+E000, just above them */
        "\xef\xbf\xbf",     /* U+FFFF */
        "\xf0\x90\x80\x80", /* U+10000, smallest 4-byte */
        "\xf0\x9f\x98\x80", /* U+1F600 */
        "\xf4\x8f\xbf\xbf", /* U+10FFFF, the last code point */
        "a\xc3\xa9z\xe2\x82\xac\xf0\x9f\x98\x80!",
    };
    static const char *const bad[] = {
        "\x80",                     /* stray continuation */
        "\xbf",                     /* stray continuation */
        "\xc0\x80",                 /* overlong NUL */
        "\xc1\xbf",                 /* overlong 2-byte */
        "\xe0\x80\x80",             /* overlong 3-byte */
        "\xe0\x9f\xbf",             /* overlong 3-byte, largest */
        "\xf0\x80\x80\x80",         /* overlong 4-byte */
        "\xf0\x8f\xbf\xbf",         /* overlong 4-byte, largest */
        "\xed\xa0\x80",             /* U+D800 encoded directly */
        "\xed\xbf\xbf",             /* U+DFFF encoded directly */
        "\xed\xa0\xbd\xed\xb8\x80", /* a surrogate pair encoded as CESU-8 */
        "\xf4\x90\x80\x80",         /* U+110000 */
        "\xf5\x80\x80\x80",         /* lead byte beyond the range */
        "\xf7\xbf\xbf\xbf",         /* old 4-byte form beyond the range */
        "\xf8\x88\x80\x80\x80",     /* old 5-byte form */
        "\xfc\x84\x80\x80\x80\x80", /* old 6-byte form */
        "\xfe",                     /* never valid */
        "\xff",                     /* never valid */
        "\xc3",                     /* truncated */
        "\xe2\x82",                 /* truncated */
        "\xf0\x9f\x98",             /* truncated */
        "\xc3\x41",                 /* bad continuation */
        "\xe2\x41\xac",             /* bad continuation */
        "\xe2\x82\x41",             /* bad continuation */
        "\xf0\x9f\x41\x80",         /* bad continuation */
        "\xf0\x9f\x98\xc0",         /* bad continuation */
        "\xc3\xa9\xc3",             /* valid, then truncated */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int rc = val_str(ok[i], strlen(ok[i]));
        if (rc != VG_OK)
            printf("  valid utf-8 #%zu rejected\n", i);
        VT_EQ_INT(rc, VG_OK);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = val_str(bad[i], strlen(bad[i]));
        if (rc != VG_EMALFORMED)
            printf("  invalid utf-8 #%zu accepted\n", i);
        VT_EQ_INT(rc, VG_EMALFORMED);
    }
    /* Outside strings only ASCII structure is allowed. */
    VT_EQ_INT(val("[\xc3\xa9]"), VG_EMALFORMED);
    /* Keys are strings too. */
    VT_EQ_INT(val("{\"\xc3\xa9\":1}"), VG_OK);
    VT_EQ_INT(val("{\"\xc0\x80\":1}"), VG_EMALFORMED);
    VT_EQ_INT(val("{\"a\tb\":1}"), VG_EMALFORMED);
}

/* Writes depth nested containers around a 1 into buf; objects if obj. */
static size_t nest(char *buf, int depth, bool obj)
{
    size_t n = 0;
    for (int i = 0; i < depth; i++) {
        if (obj) {
            memcpy(buf + n, "{\"a\":", 5);
            n += 5;
        } else {
            buf[n++] = '[';
        }
    }
    buf[n++] = '1';
    for (int i = 0; i < depth; i++)
        buf[n++] = obj ? '}' : ']';
    return n;
}

static void test_depth(void)
{
    static char buf[6 * 2100];
    size_t n;

    n = nest(buf, 32, false);
    VT_EQ_INT(vg_json_validate(buf, n, 32), VG_OK);
    n = nest(buf, 33, false);
    VT_EQ_INT(vg_json_validate(buf, n, 32), VG_ETOOBIG);
    VT_EQ_INT(vg_json_validate(buf, n, 33), VG_OK);
    n = nest(buf, 32, true);
    VT_EQ_INT(vg_json_validate(buf, n, 32), VG_OK);
    size_t cnt = 99;
    VT_EQ_INT(vg_json_object(buf, n, 32, NULL, 0, &cnt), VG_OK);
    VT_EQ_INT(cnt, 1);
    n = nest(buf, 33, true);
    VT_EQ_INT(vg_json_validate(buf, n, 32), VG_ETOOBIG);
    VT_EQ_INT(vg_json_object(buf, n, 32, NULL, 0, &cnt), VG_ETOOBIG);
    VT_EQ_INT(cnt, 0);

    /* Depth counts containers: the document itself is level 1. */
    VT_EQ_INT(vg_json_validate("{}", 2, 1), VG_OK);
    VT_EQ_INT(vg_json_validate("{\"a\":[]}", 8, 1), VG_ETOOBIG);
    VT_EQ_INT(vg_json_validate("{\"a\":[]}", 8, 2), VG_OK);
    VT_EQ_INT(vg_json_validate("{}", 2, 0), VG_ETOOBIG);
    VT_EQ_INT(vg_json_validate("[]", 2, 0), VG_ETOOBIG);
    VT_EQ_INT(vg_json_validate("7", 1, 0), VG_OK);
    VT_EQ_INT(vg_json_validate("{}", 2, -5), VG_ETOOBIG);
    VT_EQ_INT(vg_json_validate("\"x\"", 3, -5), VG_OK);
    /* Siblings do not add up. */
    VT_EQ_INT(vg_json_validate("[[1],[2],[[3]],{\"a\":[4]}]", 25, 3), VG_OK);

    /* The hard ceiling: a huge max_depth is clamped, not trusted. */
    n = nest(buf, VG_JSON_MAX_DEPTH, false);
    VT_EQ_INT(vg_json_validate(buf, n, 1 << 30), VG_OK);
    n = nest(buf, VG_JSON_MAX_DEPTH + 1, false);
    VT_EQ_INT(vg_json_validate(buf, n, 1 << 30), VG_ETOOBIG);

    /* Hostile depth far beyond the limit is refused without recursion. */
    size_t big = 1 << 20;
    char *deep = vg_malloc(VG_MEM_CORE, big);
    VT_REQUIRE(deep);
    memset(deep, '[', big);
    VT_EQ_INT(vg_json_validate(deep, big, 32), VG_ETOOBIG);
    VT_EQ_INT(vg_json_validate(deep, big, 1 << 30), VG_ETOOBIG);
    VT_EQ_INT(vg_json_validate(deep, 5, 32), VG_EMALFORMED); /* unterminated but within the limit */
    vg_free(deep);
}

static bool raw_is(const vg_json_member_t *m, const char *s)
{
    return m->raw_len == strlen(s) && memcmp(m->raw, s, m->raw_len) == 0;
}

static bool key_is(const vg_json_member_t *m, const char *s)
{
    return m->key_len == strlen(s) && memcmp(m->key, s, m->key_len) == 0;
}

static void test_object_members(void)
{
    const char *doc = " { \"a\" : 1 , \"b\":\"x\\\"y\", \"c\":[1,{\"d\":2}],\"d\" :{\"e\":[]},\"e\":true,"
                      "\"f\":false,\"g\":null,\"h\\u0041\":-1.5e3 ,\"i\":{},\"\":\"\",\"j\":\"plain\"\n}\n";
    vg_json_member_t m[16];
    size_t n = 0;
    VT_REQUIRE(vg_json_object(doc, strlen(doc), 32, m, 16, &n) == VG_OK);
    VT_REQUIRE(n == 11);
    VT_CHECK(key_is(&m[0], "a") && m[0].type == VG_JSON_NUMBER && raw_is(&m[0], "1") && !m[0].key_escaped);
    VT_CHECK(key_is(&m[1], "b") && m[1].type == VG_JSON_STRING && raw_is(&m[1], "x\\\"y") && m[1].str_escaped);
    VT_CHECK(key_is(&m[2], "c") && m[2].type == VG_JSON_ARRAY && raw_is(&m[2], "[1,{\"d\":2}]"));
    VT_CHECK(key_is(&m[3], "d") && m[3].type == VG_JSON_OBJECT && raw_is(&m[3], "{\"e\":[]}"));
    VT_CHECK(key_is(&m[4], "e") && m[4].type == VG_JSON_TRUE && raw_is(&m[4], "true"));
    VT_CHECK(key_is(&m[5], "f") && m[5].type == VG_JSON_FALSE && raw_is(&m[5], "false"));
    VT_CHECK(key_is(&m[6], "g") && m[6].type == VG_JSON_NULL && raw_is(&m[6], "null"));
    VT_CHECK(key_is(&m[7], "h\\u0041") && m[7].key_escaped && m[7].type == VG_JSON_NUMBER && raw_is(&m[7], "-1.5e3"));
    VT_CHECK(key_is(&m[8], "i") && m[8].type == VG_JSON_OBJECT && raw_is(&m[8], "{}"));
    VT_CHECK(key_is(&m[9], "") && m[9].type == VG_JSON_STRING && raw_is(&m[9], "") && !m[9].str_escaped);
    VT_CHECK(key_is(&m[10], "j") && raw_is(&m[10], "plain") && !m[10].str_escaped);
    for (size_t i = 0; i < n; i++) {
        VT_CHECK(m[i].raw >= doc && m[i].raw + m[i].raw_len <= doc + strlen(doc));
        if (m[i].type != VG_JSON_STRING)
            VT_CHECK(!m[i].str_escaped);
    }
    /* Nested members are not reported as top-level ones. */
    VT_CHECK(vg_json_find(m, n, "e") == &m[4]);

    /* A single member and the empty object. */
    VT_EQ_INT(vg_json_object("{\"k\":[]}", 8, 32, m, 16, &n), VG_OK);
    VT_CHECK(n == 1 && m[0].type == VG_JSON_ARRAY && raw_is(&m[0], "[]"));
    VT_EQ_INT(vg_json_object("{}", 2, 32, m, 16, &n), VG_OK);
    VT_EQ_INT(n, 0);
}

static void test_object_cap(void)
{
    const char *doc = "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5}";
    vg_json_member_t m[3];
    size_t n = 0;
    memset(m, 0, sizeof m);
    VT_EQ_INT(vg_json_object(doc, strlen(doc), 32, m, 2, &n), VG_OK);
    VT_EQ_INT(n, 5);
    VT_CHECK(key_is(&m[0], "a") && key_is(&m[1], "b"));
    VT_CHECK(m[2].key == NULL); /* nothing written past cap */
    VT_EQ_INT(vg_json_object(doc, strlen(doc), 32, NULL, 0, &n), VG_OK);
    VT_EQ_INT(n, 5);
    VT_EQ_INT(vg_json_object(doc, strlen(doc), 32, NULL, 0, NULL), VG_OK);
    /* Members past cap are still validated. */
    const char *bad = "{\"a\":1,\"b\":2,\"c\":01}";
    VT_EQ_INT(vg_json_object(bad, strlen(bad), 32, m, 1, &n), VG_EMALFORMED);
    VT_EQ_INT(n, 0);
}

static void test_object_not_object(void)
{
    size_t n = 7;
    vg_json_member_t m[2];
    VT_EQ_INT(vg_json_object("[1]", 3, 32, m, 2, &n), VG_EINVAL);
    VT_EQ_INT(n, 0);
    VT_EQ_INT(vg_json_object("1", 1, 32, m, 2, &n), VG_EINVAL);
    VT_EQ_INT(vg_json_object("\"s\"", 3, 32, m, 2, &n), VG_EINVAL);
    VT_EQ_INT(vg_json_object("null", 4, 32, m, 2, &n), VG_EINVAL);
    VT_EQ_INT(vg_json_object(" [ {\"a\":1} ] ", 13, 32, m, 2, &n), VG_EINVAL);
    /* Malformed beats "not an object": the whole text is judged first. */
    VT_EQ_INT(vg_json_object("[1,", 3, 32, m, 2, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_json_object("1 2", 3, 32, m, 2, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_json_object("", 0, 32, m, 2, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_json_object("{\"a\":1", 6, 32, m, 2, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_json_object("[[[]]]", 6, 2, m, 2, &n), VG_ETOOBIG);
}

static void test_array_elements(void)
{
    const char *doc = " [ 1 , \"a\\\"b\", [2,[3]], {\"k\":[4]}, true, null, \"\" ] ";
    vg_json_member_t m[8];
    size_t n = 0;
    VT_REQUIRE(vg_json_array(doc, strlen(doc), 32, m, 8, &n) == VG_OK);
    VT_REQUIRE(n == 7);
    for (size_t i = 0; i < n; i++)
        VT_CHECK(m[i].key == NULL && m[i].key_len == 0 && !m[i].key_escaped);
    VT_CHECK(m[0].type == VG_JSON_NUMBER && raw_is(&m[0], "1"));
    VT_CHECK(m[1].type == VG_JSON_STRING && raw_is(&m[1], "a\\\"b") && m[1].str_escaped);
    VT_CHECK(m[2].type == VG_JSON_ARRAY && raw_is(&m[2], "[2,[3]]"));
    VT_CHECK(m[3].type == VG_JSON_OBJECT && raw_is(&m[3], "{\"k\":[4]}"));
    VT_CHECK(m[4].type == VG_JSON_TRUE && m[5].type == VG_JSON_NULL);
    VT_CHECK(m[6].type == VG_JSON_STRING && raw_is(&m[6], ""));
    /* A nested array's raw text reads the same way. */
    vg_json_member_t in[4];
    VT_EQ_INT(vg_json_array(m[2].raw, m[2].raw_len, 31, in, 4, &n), VG_OK);
    VT_CHECK(n == 2 && raw_is(&in[0], "2") && in[1].type == VG_JSON_ARRAY);
    /* Cap, the empty array, not an array, malformed, depth. */
    VT_EQ_INT(vg_json_array("[1,2,3]", 7, 32, in, 1, &n), VG_OK);
    VT_CHECK(n == 3 && raw_is(&in[0], "1"));
    VT_EQ_INT(vg_json_array("[]", 2, 32, in, 4, &n), VG_OK);
    VT_EQ_INT(n, 0);
    VT_EQ_INT(vg_json_array("{\"a\":1}", 7, 32, in, 4, &n), VG_EINVAL);
    VT_EQ_INT(n, 0);
    VT_EQ_INT(vg_json_array("\"s\"", 3, 32, in, 4, &n), VG_EINVAL);
    VT_EQ_INT(vg_json_array("[1,]", 4, 32, in, 4, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_json_array("[[1]]", 5, 1, in, 4, &n), VG_ETOOBIG);
    /* The object reader is unchanged by the array mode: arrays stay EINVAL. */
    VT_EQ_INT(vg_json_object("[1]", 3, 32, in, 4, &n), VG_EINVAL);
}

static void test_find(void)
{
    const char *doc = "{\"ab\":1,\"\\u0061b\":2,\"x\\\"y\":3,\"\\u00e9t\\u00E9\":4,\"n\\u0000\":5,\"\":6,"
                      "\"\\ud83d\\ude00\":7,\"a\\/b\":8}";
    vg_json_member_t m[16];
    size_t n = 0;
    VT_REQUIRE(vg_json_object(doc, strlen(doc), 32, m, 16, &n) == VG_OK);
    VT_REQUIRE(n == 8);
    VT_CHECK(vg_json_find(m, n, "ab") == &m[0]); /* first of two equal keys */
    VT_CHECK(vg_json_find(m + 1, n - 1, "ab") == &m[1]);
    VT_CHECK(vg_json_find(m, n, "x\"y") == &m[2]);
    VT_CHECK(vg_json_find(m, n, "\xc3\xa9t\xc3\xa9") == &m[3]);
    VT_CHECK(vg_json_find(m, n, "n") == NULL); /* a decoded NUL does not end the key */
    VT_CHECK(vg_json_find(m, n, "") == &m[5]);
    VT_CHECK(vg_json_find(m, n, "\xf0\x9f\x98\x80") == &m[6]);
    VT_CHECK(vg_json_find(m, n, "a/b") == &m[7]);
    VT_CHECK(vg_json_find(m, n, "a") == NULL);
    VT_CHECK(vg_json_find(m, n, "abc") == NULL);
    VT_CHECK(vg_json_find(m, n, "AB") == NULL);
    VT_CHECK(vg_json_find(m, n, "\\u0061b") == NULL); /* compared decoded, not raw */
    VT_CHECK(vg_json_find(m, n, NULL) == NULL);
    VT_CHECK(vg_json_find(NULL, 0, "ab") == NULL);
    VT_CHECK(vg_json_find(m, 0, "ab") == NULL);
}

static void test_pick(void)
{
    static const char *const names[] = {
        "deviceId", "steps", "absent", "x",
    };
    char doc[8192];
    size_t o = 0;
    o += (size_t)snprintf(doc + o, sizeof doc - o, "{");
    for (int i = 0; i < 200; i++)
        o += (size_t)snprintf(doc + o, sizeof doc - o, "\"extra%d\":[%d,{\"deviceId\":0}],", i, i);
    o += (size_t)snprintf(doc + o, sizeof doc - o,
                          "\"st\\u0065ps\":12,\"deviceId\":\"d1\",\"steps\":13,\"deviceId\":\"d2\",\"x\":{}}");
    vg_json_member_t out[4];
    size_t n = 0;
    VT_REQUIRE(vg_json_object_pick(doc, o, 32, names, 4, out, &n) == VG_OK);
    VT_EQ_INT(n, 205);
    VT_CHECK(out[0].key && raw_is(&out[0], "d1")); /* first occurrence, far past any small cap */
    VT_CHECK(out[1].key && raw_is(&out[1], "12") && out[1].key_escaped);
    VT_CHECK(out[2].key == NULL);
    VT_CHECK(out[3].key && out[3].type == VG_JSON_OBJECT);

    /* Once every name is found the rest is only validated, and still must be valid. */
    static const char *const two[] = {
        "a", "b",
    };
    VT_EQ_INT(vg_json_object_pick("{\"a\":1,\"b\":2,\"a\":3,\"c\":4}", 25, 32, two, 2, out, &n), VG_OK);
    VT_CHECK(raw_is(&out[0], "1") && raw_is(&out[1], "2") && n == 4);
    VT_EQ_INT(vg_json_object_pick("{\"a\":1,\"b\":2,\"a\":3,\"c\":04}", 26, 32, two, 2, out, &n), VG_EMALFORMED);

    /* Failure zeroes the output. */
    VT_EQ_INT(vg_json_object_pick("{\"x\":1,", 7, 32, names, 4, out, &n), VG_EMALFORMED);
    VT_CHECK(out[3].key == NULL && n == 0);
    VT_EQ_INT(vg_json_object_pick("[{\"x\":1}]", 9, 32, names, 4, out, &n), VG_EINVAL);
    VT_CHECK(out[3].key == NULL);
    VT_EQ_INT(vg_json_object_pick("{\"x\":[[1]]}", 11, 2, names, 4, out, NULL), VG_ETOOBIG);
    /* No names: plain validation of an object. */
    VT_EQ_INT(vg_json_object_pick("{\"x\":1}", 7, 32, NULL, 0, NULL, &n), VG_OK);
    VT_EQ_INT(n, 1);
}

static void test_number(void)
{
    double d = 1;
    vg_json_member_t m;

    m = num("0");
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == 0.0 && !signbit(d));
    m = num("-0");
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == 0.0 && signbit(d));
    m = num("72.5");
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == 72.5);
    m = num("-1.25e2");
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == -125.0);
    m = num("1E-2");
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == 0.01);
    m = num("1.7976931348623157e308");
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == 1.7976931348623157e308);
    m = num("4.9e-324");
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == 4.9e-324);
    /* Out of double range. */
    d = 5;
    m = num("1e400");
    VT_EQ_INT(vg_json_number(&m, &d), VG_EINVAL);
    VT_CHECK(d == 5); /* untouched on failure */
    m = num("-1e400");
    VT_EQ_INT(vg_json_number(&m, &d), VG_EINVAL);
    m = num("1.8e308");
    VT_EQ_INT(vg_json_number(&m, &d), VG_EINVAL);
    /* Underflow rounds to the nearest double, as any JSON reader would. */
    m = num("1e-400");
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == 0.0);
    /* Not a number. */
    m = num("12");
    m.type = VG_JSON_STRING;
    VT_EQ_INT(vg_json_number(&m, &d), VG_EINVAL);
    m = num("12abc");
    VT_EQ_INT(vg_json_number(&m, &d), VG_EINVAL);
    m = num(" 12");
    VT_EQ_INT(vg_json_number(&m, &d), VG_EINVAL);
    m = num("0x1p3");
    VT_EQ_INT(vg_json_number(&m, &d), VG_EINVAL);
    m = num("inf");
    VT_EQ_INT(vg_json_number(&m, &d), VG_EINVAL);
    m = num("");
    VT_EQ_INT(vg_json_number(&m, &d), VG_EINVAL);
    VT_EQ_INT(vg_json_number(NULL, &d), VG_EINVAL);
    /* The slice is bounded: digits just past raw_len are not read. */
    m = num("1234");
    m.raw_len = 2;
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == 12.0);
}

/* Numbers too long for the short copy must still convert exactly as strtod
 * converts the whole text. */
static void test_number_long(void)
{
    static char s[4096];
    double d, want;
    vg_json_member_t m;
    size_t n;

    /* 1 followed by 900 zeros, times 1e-900. */
    n = 0;
    s[n++] = '1';
    for (int i = 0; i < 900; i++)
        s[n++] = '0';
    n += (size_t)sprintf(s + n, "e-900");
    m = num(s);
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == 1.0);
    /* 0.000...0001e1000 with 999 zeros. */
    n = (size_t)sprintf(s, "0.");
    for (int i = 0; i < 999; i++)
        s[n++] = '0';
    n += (size_t)sprintf(s + n, "1e1000");
    m = num(s);
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == 1.0);
    /* A long run of zeros is zero, with its sign. */
    n = (size_t)sprintf(s, "-0.");
    for (int i = 0; i < 2000; i++)
        s[n++] = '0';
    s[n] = '\0';
    m = num(s);
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == 0.0 && signbit(d));
    /* Random mantissas of up to 2400 digits against strtod on the whole text. */
    srand(7);
    for (int round = 0; round < 200; round++) {
        n = 0;
        if (rand() & 1)
            s[n++] = '-';
        int intd = 1 + rand() % 1200;
        s[n++] = (char)('1' + rand() % 9);
        for (int i = 1; i < intd; i++)
            s[n++] = (char)('0' + rand() % 10);
        if (rand() & 1) {
            s[n++] = '.';
            int fd = 1 + rand() % 1200;
            for (int i = 0; i < fd; i++)
                s[n++] = (char)('0' + rand() % 10);
        }
        n += (size_t)sprintf(s + n, "e%d", -(rand() % 1500));
        want = strtod(s, NULL);
        m = num(s);
        if (isinf(want)) {
            VT_EQ_INT(vg_json_number(&m, &d), VG_EINVAL);
        } else {
            VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == want);
        }
    }
    /* A halfway case that only the last of 1000+ digits decides: 2.5 units of
     * the smallest subnormal round to even (2 units) when printed exactly,
     * and up to 3 units once a non-zero digit follows, however far out. */
    n = (size_t)sprintf(s, "%.760Le", 0x1.4p-1073L); /* exact; long double holds the halfway value */
    m = num(s);
    want = strtod(s, NULL);
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == want && d == 0x1p-1073);
    char *e = strchr(s, 'e');
    memmove(e + 300, e, strlen(e) + 1);
    memset(e, '0', 299);
    e[299] = '1';
    m = num(s);
    want = strtod(s, NULL);
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == want && d == 0x1.8p-1073);
    /* Absurd exponents saturate instead of overflowing an integer. */
    m = num("1e99999999999999999999999999");
    VT_EQ_INT(vg_json_number(&m, &d), VG_EINVAL);
    n = (size_t)sprintf(s, "1.");
    for (int i = 0; i < 100; i++)
        s[n++] = '5';
    sprintf(s + n, "e99999999999999999999999999");
    m = num(s);
    VT_EQ_INT(vg_json_number(&m, &d), VG_EINVAL);
    n = (size_t)sprintf(s, "1.");
    for (int i = 0; i < 100; i++)
        s[n++] = '5';
    sprintf(s + n, "e-99999999999999999999999999");
    m = num(s);
    VT_CHECK(vg_json_number(&m, &d) == VG_OK && d == 0.0);
}

static void test_int64(void)
{
    static const struct {
        const char *s;
        int rc;
        int64_t v;
    } cases[] = {
        {"0", VG_OK, 0},
        {"-0", VG_OK, 0},
        {"42", VG_OK, 42},
        {"-42", VG_OK, -42},
        {"1e2", VG_OK, 100},
        {"1E+2", VG_OK, 100},
        {"1.0", VG_OK, 1},
        {"1.50e1", VG_OK, 15},
        {"100e-2", VG_OK, 1},
        {"12345678900000000000e-10", VG_OK, 1234567890}, /* wider than int64 before scaling */
        {"12345678901234567890e-10", VG_EINVAL, 0},      /* a fraction remains */
        {"0e999999", VG_OK, 0},
        {"0.000", VG_OK, 0},
        {"0.0e-99999999999999999999", VG_OK, 0},
        {"1700000000000", VG_OK, 1700000000000LL},
        {"1.7e12", VG_OK, 1700000000000LL},
        {"9223372036854775807", VG_OK, INT64_MAX},
        {"-9223372036854775808", VG_OK, INT64_MIN},
        {"9.223372036854775807e18", VG_OK, INT64_MAX},
        {"1e18", VG_OK, 1000000000000000000LL},
        {"00", VG_EINVAL, 0}, /* not a JSON number */
        {"1.5", VG_EINVAL, 0},
        {"1e-1", VG_EINVAL, 0},
        {"0.5", VG_EINVAL, 0},
        {"-0.1", VG_EINVAL, 0},
        {"1.01e1", VG_EINVAL, 0},
        {"9223372036854775808", VG_EINVAL, 0},
        {"-9223372036854775809", VG_EINVAL, 0},
        {"92233720368547758070", VG_EINVAL, 0},
        {"1e19", VG_EINVAL, 0},
        {"1e99999999999999999999", VG_EINVAL, 0},
        {"5e-99999999999999999999", VG_EINVAL, 0},
        {"abc", VG_EINVAL, 0},
        {"1 ", VG_EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vg_json_member_t m = num(cases[i].s);
        int64_t v = 77;
        int rc = vg_json_int64(&m, &v);
        if (rc != cases[i].rc || (rc == VG_OK && v != cases[i].v))
            printf("  int64 case %s: rc %d v %lld\n", cases[i].s, rc, (long long)v);
        VT_EQ_INT(rc, cases[i].rc);
        if (cases[i].rc == VG_OK)
            VT_EQ_INT(v, cases[i].v);
        else
            VT_EQ_INT(v, 77);
    }
    vg_json_member_t m = num("5");
    m.type = VG_JSON_STRING;
    int64_t v;
    VT_EQ_INT(vg_json_int64(&m, &v), VG_EINVAL);
    /* Leading zeros in the fraction do not count toward the magnitude. */
    char s[200];
    size_t n = (size_t)sprintf(s, "1.");
    for (int i = 0; i < 100; i++)
        s[n++] = '0';
    sprintf(s + n, "e2");
    m = num(s);
    VT_CHECK(vg_json_int64(&m, &v) == VG_OK && v == 100);
}

static void test_unescape(void)
{
    char out[64];
    size_t n = 99;
    const char *raw = "a\\\"b\\\\c\\/d\\b\\f\\n\\r\\te";
    VT_EQ_INT(vg_json_unescape(raw, strlen(raw), out, sizeof out, &n), VG_OK);
    VT_CHECK(n == 13 && memcmp(out, "a\"b\\c/d\b\f\n\r\te", 14) == 0);

    raw = "\\u0041\\u00e9\\u20AC\\uD83D\\uDE00\\u0000z";
    VT_EQ_INT(vg_json_unescape(raw, strlen(raw), out, sizeof out, &n), VG_OK);
    VT_CHECK(n == 12 && memcmp(out, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0z", 12) == 0);
    VT_CHECK(out[12] == '\0');

    /* Plain text, and multi-byte UTF-8 passes through untouched. */
    VT_EQ_INT(vg_json_unescape("h\xc3\xa9llo", 6, out, sizeof out, &n), VG_OK);
    VT_CHECK(n == 6 && strcmp(out, "h\xc3\xa9llo") == 0);
    VT_EQ_INT(vg_json_unescape("", 0, out, sizeof out, &n), VG_OK);
    VT_CHECK(n == 0 && out[0] == '\0');

    /* Capacity: exactly enough succeeds without a NUL; one less fails. */
    memset(out, 'X', sizeof out);
    VT_EQ_INT(vg_json_unescape("abc", 3, out, 3, &n), VG_OK);
    VT_CHECK(n == 3 && out[3] == 'X');
    VT_EQ_INT(vg_json_unescape("abc", 3, out, 4, &n), VG_OK);
    VT_CHECK(n == 3 && out[3] == '\0');
    VT_EQ_INT(vg_json_unescape("abcd", 4, out, 3, &n), VG_ENOSPC);
    VT_EQ_INT(n, 0);
    VT_EQ_INT(vg_json_unescape("ab\\n", 4, out, 2, &n), VG_ENOSPC);
    VT_EQ_INT(vg_json_unescape("a\\u20ac", 7, out, 3, &n), VG_ENOSPC); /* never half a character */
    VT_EQ_INT(vg_json_unescape("a\\u20ac", 7, out, 4, &n), VG_OK);
    VT_EQ_INT(n, 4);
    VT_EQ_INT(vg_json_unescape("a", 1, NULL, 0, &n), VG_ENOSPC);
    VT_EQ_INT(vg_json_unescape("", 0, NULL, 0, &n), VG_OK);
    VT_EQ_INT(vg_json_unescape("abc", 3, out, sizeof out, NULL), VG_OK);
    VT_EQ_INT(vg_json_unescape(NULL, 3, out, sizeof out, &n), VG_EINVAL);
    VT_EQ_INT(vg_json_unescape(NULL, 0, out, sizeof out, &n), VG_OK);
    VT_EQ_INT(n, 0);

    /* Bad escapes. */
    static const char *const bad[] = {
        "\\", "a\\", "\\x", "\\u", "\\u12", "\\u12g4", "\\uD800", "\\uDC00", "\\uD800\\u0041", "\\uD800\\n", "\\U0041",
        "\\uDBFF\\uE000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        out[0] = 'X';
        VT_EQ_INT(vg_json_unescape(bad[i], strlen(bad[i]), out, sizeof out, &n), VG_EMALFORMED);
        VT_CHECK(n == 0 && out[0] == '\0');
    }
    /* Bounded by raw_len even when the text goes on. */
    VT_EQ_INT(vg_json_unescape("ab\\u0041", 2, out, sizeof out, &n), VG_OK);
    VT_CHECK(n == 2 && strcmp(out, "ab") == 0);
    VT_EQ_INT(vg_json_unescape("\\u0041", 5, out, sizeof out, &n), VG_EMALFORMED);
}

static void test_escape(void)
{
    char out[128];
    int n = vg_json_escape("a\"b\\c\n\r\t\b\f\x01\x1f\x7f/\xc3\xa9", 16, out, sizeof out);
    const char *want = "a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\x7f/\xc3\xa9";
    VT_EQ_INT(n, (int)strlen(want));
    VT_CHECK(n >= 0 && memcmp(out, want, (size_t)n) == 0 && out[n] == '\0');
    /* An embedded NUL is escaped, not a terminator. */
    n = vg_json_escape("a\0b", 3, out, sizeof out);
    VT_CHECK(n == 8 && memcmp(out, "a\\u0000b", 8) == 0);
    VT_EQ_INT(vg_json_escape("", 0, out, sizeof out), 0);
    VT_EQ_INT(vg_json_escape("", 0, NULL, 0), 0);
    VT_EQ_INT(vg_json_escape(NULL, 3, out, sizeof out), VG_EINVAL);
    /* Capacity counts the escaped form; no NUL is needed when it fits exactly. */
    memset(out, 'X', sizeof out);
    VT_EQ_INT(vg_json_escape("ab\n", 3, out, 4), 4);
    VT_CHECK(memcmp(out, "ab\\n", 4) == 0 && out[4] == 'X');
    VT_EQ_INT(vg_json_escape("ab\n", 3, out, 3), VG_ENOSPC);
    VT_EQ_INT(vg_json_escape("\x01", 1, out, 5), VG_ENOSPC);
    VT_EQ_INT(vg_json_escape("abc", 3, out, 2), VG_ENOSPC);

    /* Escape then unescape is the identity for every byte, and the escaped
     * form of any valid UTF-8 text is a valid JSON string. */
    char in[128], back[128];
    for (int i = 0; i < 128; i++)
        in[i] = (char)i;
    char big[1024];
    big[0] = '"';
    n = vg_json_escape(in, 128, big + 1, sizeof big - 2);
    VT_REQUIRE(n > 0);
    big[n + 1] = '"';
    VT_EQ_INT(vg_json_validate(big, (size_t)n + 2, 1), VG_OK);
    size_t bn = 0;
    VT_EQ_INT(vg_json_unescape(big + 1, (size_t)n, back, sizeof back, &bn), VG_OK);
    VT_CHECK(bn == 128 && memcmp(back, in, 128) == 0);
}

/* One realistic event, for a rough sense of the hot path's speed. */
static void test_speed_smoke(void)
{
    const char *doc = "{\"deviceId\":\"wearable-000123\",\"heartRate\":72.5,\"steps\":128,"
                      "\"timestamp\":\"2024-05-01T12:34:56.789Z\",\"battery\":0.83,\"fw\":\"1.4.2\","
                      "\"location\":{\"lat\":52.5200,\"lon\":13.4050,\"acc\":12.5},\"tags\":[\"run\",\"outdoor\"],"
                      "\"spo2\":98,\"skinTemp\":33.1,\"note\":\"caf\\u00e9 \\\"quoted\\\"\"}";
    vg_json_member_t m[16];
    size_t n = 0;
    for (int i = 0; i < 20000; i++)
        VT_REQUIRE(vg_json_object(doc, strlen(doc), 32, m, 16, &n) == VG_OK);
    VT_EQ_INT(n, 11);
}

int main(void)
{
    VT_RUN(test_valid_scalars);
    VT_RUN(test_malformed_numbers);
    VT_RUN(test_malformed_structure);
    VT_RUN(test_strings_escapes);
    VT_RUN(test_utf8);
    VT_RUN(test_depth);
    VT_RUN(test_object_members);
    VT_RUN(test_object_cap);
    VT_RUN(test_object_not_object);
    VT_RUN(test_array_elements);
    VT_RUN(test_find);
    VT_RUN(test_pick);
    VT_RUN(test_number);
    VT_RUN(test_number_long);
    VT_RUN(test_int64);
    VT_RUN(test_unescape);
    VT_RUN(test_escape);
    VT_RUN(test_speed_smoke);
    return VT_DONE();
}
