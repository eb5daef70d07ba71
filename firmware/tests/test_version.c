#include "otaml_test.h"
#include "otaml_version.h"

static void check_parse(const char *text, int ok, int major, int minor, int patch)
{
    otaml_version_t v;
    CHECK_EQ_INT(otaml_version_parse(text, &v), ok);
    CHECK_EQ_INT(v.major, major);
    CHECK_EQ_INT(v.minor, minor);
    CHECK_EQ_INT(v.patch, patch);
}

int main(void)
{
    check_parse("1.2", 1, 1, 2, 0);
    check_parse("1.10", 1, 1, 10, 0);
    check_parse("2", 1, 2, 0, 0);
    check_parse("1.2.3", 1, 1, 2, 3);
    check_parse("65535.0.1", 1, 65535, 0, 1);
    const char *bad[] = {"", "v1", "1.2.3.4", "01.2", "1.02", "1..2", "1.", ".1", "1.2-rc1", "65536", "1 .2", "123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) check_parse(bad[i], 0, 0, 0, 0);

    otaml_version_t a, b;
    otaml_version_parse("1.10", &a);
    otaml_version_parse("1.9", &b);
    CHECK(otaml_version_compare(&a, &b) > 0); /* the float bug of the seed recipe, fixed */
    otaml_version_parse("1.2", &a);
    otaml_version_parse("1.2.0", &b);
    CHECK_EQ_INT(otaml_version_compare(&a, &b), 0);
    otaml_version_parse("1.2.1", &b);
    CHECK(otaml_version_compare(&a, &b) < 0);
    return test_summary();
}
