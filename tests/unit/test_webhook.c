/* test_webhook.c - Standard Webhooks signing/verification against every vector of
 * ../shared/testdata/standard-webhooks/vectors.json, RFC 4648 base64 vectors, and the
 * Wycheproof HMAC-SHA256 vectors (every key and tag size, truncated tags). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "em_webhook.h"

/* Loads ${EMINE_SHARED:-../shared}/testdata/<rel> (fails the test when missing). */
static json_t *s_load(const char *rel)
{
    const char *shared = getenv("EMINE_SHARED");
    char path[1024];
    json_error_t jerr;
    snprintf(path, sizeof path, "%s/testdata/%s", shared && *shared ? shared : "../shared", rel);
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc)
        fail_msg("%s: %s (line %d)", path, jerr.text, jerr.line);
    return doc;
}

/* Hex to bytes; returns the length or -1. */
static int s_unhex(const char *hex, unsigned char *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return (int)(n / 2);
}

/* A header of the case's headers object, by case-insensitive name; NULL when absent. */
static const char *s_header(json_t *headers, const char *name)
{
    const char *key;
    json_t *val;
    json_object_foreach(headers, key, val)
    {
        if (strcasecmp(key, name) == 0)
            return json_string_value(val);
    }
    return NULL;
}

static void test_standard_webhooks_vectors(void **state)
{
    (void)state;
    json_t *doc = s_load("standard-webhooks/vectors.json");
    int passed = 0, failed = 0;
    size_t i;
    json_t *v;
    char err[256];

    json_array_foreach(json_object_get(doc, "sign_vectors"), i, v)
    {
        const char *id = json_string_value(json_object_get(v, "id"));
        const char *payload = json_string_value(json_object_get(v, "payload"));
        const char *expect = json_string_value(json_object_get(v, "expected_signature"));
        em_webhook_t *wh = em_webhook_new(json_string_value(json_object_get(v, "secret")), err,
                                          sizeof err);
        char sig[EM_WEBHOOK_SIG_LEN];
        int ok = wh &&
                 em_webhook_sign(wh, json_string_value(json_object_get(v, "msg_id")),
                                 json_integer_value(json_object_get(v, "timestamp")), payload,
                                 strlen(payload), sig, sizeof sig) == 0 &&
                 strcmp(sig, expect) == 0;
        /* The signature must also verify at the signing time. */
        char ts[32];
        snprintf(ts, sizeof ts, "%lld", (long long)json_integer_value(json_object_get(v, "timestamp")));
        ok = ok && em_webhook_verify(wh, json_string_value(json_object_get(v, "msg_id")), ts,
                                     expect, payload, strlen(payload),
                                     json_integer_value(json_object_get(v, "timestamp")), NULL);
        if (ok)
            passed++;
        else {
            failed++;
            fprintf(stderr, "sign vector %s failed%s%s\n", id, wh ? "" : ": ", wh ? "" : err);
        }
        em_webhook_destroy(&wh);
    }

    json_array_foreach(json_object_get(doc, "verify_cases"), i, v)
    {
        const char *id = json_string_value(json_object_get(v, "id"));
        const char *payload = json_string_value(json_object_get(v, "payload"));
        json_t *h = json_object_get(v, "headers");
        int expect_valid = strcmp(json_string_value(json_object_get(v, "expect")), "valid") == 0;
        em_webhook_t *wh = em_webhook_new(json_string_value(json_object_get(v, "secret")), err,
                                          sizeof err);
        const char *why = NULL;
        int valid = wh && em_webhook_verify(wh, s_header(h, "webhook-id"),
                                            s_header(h, "webhook-timestamp"),
                                            s_header(h, "webhook-signature"), payload,
                                            strlen(payload),
                                            json_integer_value(json_object_get(v, "now")), &why);
        if (valid == expect_valid)
            passed++;
        else {
            failed++;
            fprintf(stderr, "verify case %s: got %s (%s)\n", id, valid ? "valid" : "invalid",
                    why ? why : "");
        }
        em_webhook_destroy(&wh);
    }

    json_array_foreach(json_object_get(doc, "secret_errors"), i, v)
    {
        const char *secret = json_string_value(json_object_get(v, "secret"));
        em_webhook_t *wh = em_webhook_new(secret, err, sizeof err);
        if (!wh)
            passed++;
        else {
            failed++;
            fprintf(stderr, "secret '%s' was accepted\n", secret);
        }
        em_webhook_destroy(&wh);
    }
    printf("standard-webhooks: %d passed, %d failed\n", passed, failed);
    assert_int_equal(failed, 0);
    assert_int_equal(passed, 6 + 24 + 2);
    json_decref(doc);
}

static void test_rfc4648_base64(void **state)
{
    (void)state;
    json_t *doc = s_load("rfc4648-base64/vectors.json");
    size_t i;
    json_t *v;
    int n = 0;
    json_array_foreach(json_object_get(doc, "base64"), i, v)
    {
        const char *in = json_string_value(json_object_get(v, "input"));
        const char *b64 = json_string_value(json_object_get(v, "base64"));
        char enc[64], dec[64];
        assert_int_equal(em_base64_encode(in, strlen(in), enc, sizeof enc), (int)strlen(b64));
        assert_string_equal(enc, b64);
        for (int lenient = 0; lenient < 2; lenient++) {
            int len = em_base64_decode(b64, strlen(b64), dec, sizeof dec, lenient);
            assert_int_equal(len, (int)strlen(in));
            assert_memory_equal(dec, in, (size_t)len);
        }
        /* Unpadded: lenient only. */
        size_t bare = strcspn(b64, "=");
        if (bare != strlen(b64)) {
            assert_int_equal(em_base64_decode(b64, bare, dec, sizeof dec, 0), -1);
            assert_int_equal(em_base64_decode(b64, bare, dec, sizeof dec, 1), (int)strlen(in));
        }
        /* The encoding needs exactly 4*ceil(n/3)+1 bytes. */
        assert_int_equal(em_base64_encode(in, strlen(in), enc, strlen(b64)), -1);
        n++;
    }
    printf("rfc4648 base64: %d vectors passed\n", n);
    assert_int_equal(n, 7);
    json_decref(doc);

    char out[16];
    static const char *bad[] = {"Zg=", "Z===", "Zh==", "Zm9v\n", "Zm 9v", "Zm9v*", "Z", "=", "Zg==Zg=="};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
        assert_int_equal(em_base64_decode(bad[k], strlen(bad[k]), out, sizeof out, 0), -1);
    /* Non-zero trailing bits: refused strictly, ignored leniently ("Zh" -> "f"). */
    assert_int_equal(em_base64_decode("Zh", 2, out, sizeof out, 1), 1);
    assert_int_equal(out[0], 'f');
    /* Output buffer bound. */
    assert_int_equal(em_base64_decode("Zm9vYmFy", 8, out, 5, 0), -1);
}

static void test_wycheproof_hmac_sha256(void **state)
{
    (void)state;
    json_t *doc = s_load("wycheproof/testvectors_v1/hmac_sha256_test.json");
    int passed = 0, failed = 0, valid = 0, invalid = 0;
    size_t gi, ti;
    json_t *g, *t;
    json_array_foreach(json_object_get(doc, "testGroups"), gi, g)
    {
        size_t tag_bytes = (size_t)json_integer_value(json_object_get(g, "tagSize")) / 8;
        json_array_foreach(json_object_get(g, "tests"), ti, t)
        {
            const char *khex = json_string_value(json_object_get(t, "key"));
            const char *mhex = json_string_value(json_object_get(t, "msg"));
            const char *thex = json_string_value(json_object_get(t, "tag"));
            size_t kcap = strlen(khex) / 2 + 1, mcap = strlen(mhex) / 2 + 1,
                   tcap = strlen(thex) / 2 + 1;
            unsigned char *key = malloc(kcap), *msg = malloc(mcap), *tag = malloc(tcap);
            assert_non_null(key);
            assert_non_null(msg);
            assert_non_null(tag);
            int kl = s_unhex(khex, key, kcap), ml = s_unhex(mhex, msg, mcap),
                tl = s_unhex(thex, tag, tcap);
            assert_true(kl >= 0 && ml >= 0 && tl >= 0);
            int expect = strcmp(json_string_value(json_object_get(t, "result")), "valid") == 0;
            int got = em_hmac_sha256_check(key, (size_t)kl, msg, (size_t)ml, tag, (size_t)tl,
                                           tag_bytes);
            if (got == expect)
                passed++;
            else {
                failed++;
                fprintf(stderr, "wycheproof tcId %lld: got %d\n",
                        (long long)json_integer_value(json_object_get(t, "tcId")), got);
            }
            valid += expect;
            invalid += !expect;
            free(key);
            free(msg);
            free(tag);
        }
    }
    printf("wycheproof hmac_sha256: %d passed, %d failed (%d valid, %d invalid cases)\n", passed,
           failed, valid, invalid);
    assert_int_equal(failed, 0);
    assert_int_equal(passed, (int)json_integer_value(json_object_get(doc, "numberOfTests")));
    json_decref(doc);
}

static void test_roundtrip_and_clock(void **state)
{
    (void)state;
    char secret[EM_WEBHOOK_SECRET_LEN], sig[EM_WEBHOOK_SIG_LEN], err[128];
    assert_int_equal(em_webhook_secret_generate(secret, sizeof secret), 0);
    assert_int_equal(strncmp(secret, "whsec_", 6), 0);
    assert_int_equal(strlen(secret), 6 + 32);
    em_webhook_t *wh = em_webhook_new(secret, err, sizeof err);
    assert_non_null(wh);
    const char *body = "{\"seq\":1}";
    assert_int_equal(em_webhook_sign(wh, "evt_1", 1700000000, body, strlen(body), sig, sizeof sig), 0);
    assert_int_equal(em_webhook_sign(wh, "evt_1", 1700000000, body, strlen(body), sig, 10), -1);
    /* Inside the tolerance on both sides; one second beyond it fails. */
    assert_true(em_webhook_verify(wh, "evt_1", "1700000000", sig, body, strlen(body), 1700000299, NULL));
    assert_true(em_webhook_verify(wh, "evt_1", "1700000000", sig, body, strlen(body), 1699999701, NULL));
    const char *why = NULL;
    assert_false(em_webhook_verify(wh, "evt_1", "1700000000", sig, body, strlen(body), 1700000301, &why));
    assert_string_equal(why, "message timestamp too old");
    assert_false(em_webhook_verify(wh, "evt_1", "1700000000", sig, body, strlen(body), 1699999699, &why));
    assert_string_equal(why, "message timestamp too new");
    assert_false(em_webhook_verify(wh, "evt_1", "-1700000000", sig, body, strlen(body), 1700000000, NULL));
    assert_false(em_webhook_verify(wh, "", "1700000000", sig, body, strlen(body), 1700000000, NULL));
    /* A different key does not verify. */
    em_webhook_t *other = em_webhook_new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", err, sizeof err);
    assert_non_null(other);
    assert_false(em_webhook_verify(other, "evt_1", "1700000000", sig, body, strlen(body), 1700000000, NULL));
    em_webhook_destroy(&other);
    em_webhook_destroy(&wh);
    em_webhook_destroy(&wh); /* twice is safe */
    assert_null(em_webhook_new(NULL, err, sizeof err));
    assert_null(em_webhook_new("whsec_!!!!", err, sizeof err));
    assert_string_equal(err, "webhook secret is not base64");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standard_webhooks_vectors),
        cmocka_unit_test(test_rfc4648_base64),
        cmocka_unit_test(test_wycheproof_hmac_sha256),
        cmocka_unit_test(test_roundtrip_and_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
