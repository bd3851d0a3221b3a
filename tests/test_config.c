/*
 * test_config.c - the configuration table, INI parser and --set overrides:
 * every error names the key and line, values round-trip through the
 * resolved INI text, and the table itself is consistent.
 */
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "test_util.h"

/* Parses text; expects an error whose message contains every needle. */
static void expect_error(const char *text, const char *n1, const char *n2) {
    mt_config c;
    mt_config_defaults(&c);
    mt_err e = {0};
    int rc = mt_config_parse(&c, text, "t.ini", &e);
    CHECK(rc == MT_ERR_USAGE, "parse of [%s] returned %d, want %d (usage)", text, rc, MT_ERR_USAGE);
    CHECK(strstr(e.msg, n1) != NULL, "message '%s' lacks '%s'", e.msg, n1);
    if (n2) CHECK(strstr(e.msg, n2) != NULL, "message '%s' lacks '%s'", e.msg, n2);
    printf("error as expected: %s\n", e.msg);
}

static void expect_set_error(const char *assign, const char *needle) {
    mt_config c;
    mt_config_defaults(&c);
    mt_err e = {0};
    int rc = mt_config_set(&c, assign, &e);
    CHECK(rc == MT_ERR_USAGE, "--set %s returned %d", assign, rc);
    CHECK(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
    printf("error as expected: %s\n", e.msg);
}

int main(void) {
    mt_config c, d;
    mt_err e = {0};

    /* Defaults come from the table and validate. */
    mt_config_defaults(&c);
    CHECK(mt_config_validate(&c, &e) == MT_OK, "defaults do not validate: %s", e.msg);
    CHECK(c.optim.lr == 1e-3 && c.train.global_batch == 64 && c.model.layers.n == 4,
          "unexpected defaults lr=%g batch=%lld layers=%d", c.optim.lr,
          (long long)c.train.global_batch, c.model.layers.n);

    /* A valid file with comments, spacing and every type. */
    const char *ok = "; comment\n# comment\n[run]\nname = exp-1.a\nseed=42\n\n"
                     "[model]\nlayers = 784, 64 ,10\nactivation = gelu\n"
                     "[optim]\nkind = sgd ; inline\nlr = 0.05 # also inline\n"
                     "[train]\nshuffle = off\nsteps = 7\n";
    mt_config_defaults(&c);
    mt_err_clear(&e);
    CHECK(mt_config_parse(&c, ok, "ok.ini", &e) == MT_OK, "valid file rejected: %s", e.msg);
    CHECK(strcmp(c.run.name, "exp-1.a") == 0, "name = '%s'", c.run.name);
    CHECK(c.run.seed == 42 && c.train.steps == 7 && c.train.shuffle == 0, "int/bool values");
    CHECK(c.model.layers.n == 3 && c.model.layers.v[1] == 64, "list value");
    CHECK(c.model.activation == MT_ACT_GELU && c.optim.kind == MT_OPTIM_SGD, "enum values");
    CHECK(c.optim.lr == 0.05, "lr = %g", c.optim.lr);

    /* Resolved INI text parses back to the same configuration. */
    size_t need = mt_config_format(&c, NULL, 0) + 1;
    char *text = malloc(need);
    mt_config_format(&c, text, need);
    mt_config_defaults(&d);
    mt_err_clear(&e);
    CHECK(mt_config_parse(&d, text, "resolved", &e) == MT_OK, "resolved text rejected: %s", e.msg);
    CHECK(memcmp(&c, &d, sizeof c) == 0, "round trip through the resolved text changed values");
    free(text);

    /* Errors name the key and the line. */
    expect_error("[optim]\nlrr = 0.1\n", "unknown key 'lrr'", "t.ini line 2");
    expect_error("[run]\nseed = 1\n[bogus]\nx = 1\n", "unknown section [bogus]", "line 3");
    expect_error("[bogus]\n", "unknown section [bogus]", "line 1");
    expect_error("[optim]\n\nlr = abc\n", "optim.lr", "line 3");
    expect_error("[optim]\nlr = -0.1\n", "optim.lr", "out of range");
    expect_error("[optim]\nlr = 0\n", "optim.lr", "out of range");
    expect_error("[optim]\nlr = nan\n", "optim.lr", "not a finite number");
    /* A number too large for its key says so (issue 22), whether it fits
     * the type or not; one that underflows is not mistaken for zero. */
    expect_error("[optim]\nlr = 1e999\n", "optim.lr = 1e999", "is too large");
    expect_error("[optim]\nlr = 1e-999\n", "optim.lr", "too close to zero");
    expect_error("[optim]\nlr = inf\n", "optim.lr", "not a finite number");
    expect_error("[train]\nsteps = 0\n", "train.steps", "out of range");
    expect_error("[train]\nsteps = 1.5\n", "train.steps", "not an integer");
    expect_error("[train]\nsteps = 99999999999999999999999\n", "train.steps", "is too large");
    expect_error("[train]\nsteps = 99999999999999999999\n", "must be [1, 1000000000000]",
                 "is too large");
    expect_error("[train]\nsteps = 1000000000001\n", "train.steps", "is too large");
    expect_error("[train]\nsteps = -99999999999999999999\n", "train.steps", "out of range");
    expect_error("[run]\nseed = 18446744073709551616\n", "run.seed", "is too large");
    expect_error("[parallel]\ntimeout = 1e10\n", "parallel.timeout", "is too large");
    expect_error("[model]\nlayers = 784,99999999999999999999,10\n", "model.layers", "is too large");
    expect_error("[train]\nshuffle = maybe\n", "train.shuffle", "boolean");
    expect_error("[optim]\nkind = adam\n", "optim.kind", "adamw|sgd");
    expect_error("[model]\nlayers = 784,x,10\n", "model.layers", "'x'");
    expect_error("[model]\nlayers = 784,0,10\n", "model.layers", "out of range");
    expect_error("[train]\nsteps = 5\nsteps = 6\n", "given twice", "line 3");
    expect_error("seed = 1\n", "before any [section]", "line 1");
    expect_error("[run]\nthis line is broken\n", "malformed line", "line 2");
    expect_error("[run\nseed = 1\n", "malformed line", "line 1");
    /* Values as long as a path parse from a file (inih's 200-byte lines are
     * widened to the longest line) and from --set, and read back from the
     * resolved text; one character more is an error, never a cut value. */
    size_t big = MT_CFG_STR_LEN + 64;
    char *longtext = malloc(big), *value = malloc(big), *assign = malloc(big);
    memset(value, 'p', MT_CFG_STR_LEN - 1);
    value[0] = '/', value[MT_CFG_STR_LEN - 1] = '\0';
    snprintf(longtext, big, "[data]\npath = %s ; a comment\n[train]\nsteps = 3\n", value);
    mt_config_defaults(&c);
    mt_err_clear(&e);
    CHECK(mt_config_parse(&c, longtext, "long.ini", &e) == MT_OK,
          "a %d-character value was rejected: %s", MT_CFG_STR_LEN - 1, e.msg);
    CHECK(strcmp(c.data.path, value) == 0 && c.train.steps == 3,
          "a %d-character value read back as %zu characters", MT_CFG_STR_LEN - 1,
          strlen(c.data.path));
    char *resolved = NULL;
    CHECK(mt_config_text(&c, &resolved, &e) == MT_OK && strstr(resolved, value),
          "the resolved text of a long value does not read back: %s", e.msg);
    mt_config_defaults(&d);
    CHECK(mt_config_parse(&d, resolved, "resolved", &e) == MT_OK && strcmp(d.data.path, value) == 0,
          "the resolved text with a long value does not parse: %s", e.msg);
    free(resolved);
    snprintf(assign, big, "run.dir=%s", value);
    mt_config_defaults(&c);
    CHECK(mt_config_set(&c, assign, &e) == MT_OK && strcmp(c.run.dir, value) == 0,
          "--set of a %d-character value: %s", MT_CFG_STR_LEN - 1, e.msg);
    strcat(value, "q"); /* one too many */
    snprintf(longtext, big, "[run]\ndir = %s\n", value);
    expect_error(longtext, "run.dir is longer than 4095 characters", "t.ini line 2");
    snprintf(assign, big, "run.dir=%s", value);
    expect_set_error(assign, "run.dir is longer than 4095 characters");
    free(longtext), free(value), free(assign);
    /* A value that would not read back from the stored config text. */
    expect_set_error("data.path=/a ;b.h5", "would not read back");
    expect_set_error("data.path=/a #b.h5", "would not read back");
    expect_set_error("data.path=/a\nb.h5", "would not read back");
    expect_set_error("data.path=;b.h5", "starts with ';' or '#'"); /* written after "path = " */
    expect_set_error("run.name=#x", "starts with ';' or '#'");
    expect_error("[run]\ndir =;x\n", "starts with ';' or '#'",
                 "t.ini line 2"); /* inih keeps ";x" */
    mt_config_defaults(&c);
    CHECK(mt_config_set(&c, "data.path=/a;b#c.h5", &e) == MT_OK, "';' and '#' inside a word");

    /* A typo gets a suggestion. */
    mt_config_defaults(&c);
    mt_err_clear(&e);
    mt_config_parse(&c, "[optim]\nweight_decy = 0.1\n", "t.ini", &e);
    CHECK(strstr(e.hint, "optim.weight_decay") != NULL, "hint '%s' lacks the suggestion", e.hint);

    /* --set overrides. */
    mt_config_defaults(&c);
    mt_err_clear(&e);
    CHECK(mt_config_set(&c, "optim.lr=0.5", &e) == MT_OK && c.optim.lr == 0.5, "--set lr");
    CHECK(mt_config_set(&c, "data.path=/x=y.h5", &e) == MT_OK &&
              strcmp(c.data.path, "/x=y.h5") == 0,
          "--set with '=' in the value: '%s'", c.data.path);
    CHECK(mt_config_set(&c, " train.steps = 12 ", &e) == MT_OK && c.train.steps == 12,
          "--set with spaces around key and value: %s", e.msg);
    /* Windows line endings and a UTF-8 byte-order mark are accepted. */
    mt_config_defaults(&d);
    mt_err_clear(&e);
    CHECK(mt_config_parse(&d, "\xef\xbb\xbf[train]\r\nsteps = 9\r\nshuffle = no\r\n", "crlf.ini",
                          &e) == MT_OK &&
              d.train.steps == 9 && d.train.shuffle == 0,
          "CRLF/BOM file rejected or misread: %s", e.msg);
    expect_set_error("optim.lr", "section.key=value");
    expect_set_error("lr=0.1", "section.key=value");
    expect_set_error("optim.nope=1", "unknown key 'nope'");
    expect_set_error("nope.lr=1", "unknown section [nope]");
    expect_set_error("train.global_batch=-4", "out of range");
    expect_set_error("train.steps=99999999999999999999", "is too large");
    expect_set_error("optim.lr=1e-3x", "--set optim.lr=1e-3x");

    /* Cross-key rules. */
    mt_config_defaults(&c);
    mt_err_clear(&e);
    c.train.steps = 1000000000000, c.train.global_batch = 1000000000;
    CHECK(mt_config_validate(&c, &e) == MT_ERR_USAGE && strstr(e.msg, "is too large"),
          "steps x global_batch beyond 2^62 accepted (%s)", e.msg);
    mt_config_defaults(&c);
    mt_err_clear(&e);
    c.model.kind = MT_MODEL_GPT, c.train.steps = 1000000000, c.train.global_batch = 1000000;
    c.model.block_size = 65536;
    CHECK(mt_config_validate(&c, &e) == MT_ERR_USAGE && strstr(e.msg, "tokens"),
          "a GPT's steps x batch x block_size beyond 2^62 accepted (%s)", e.msg);
    mt_config_defaults(&c);
    mt_err_clear(&e);
    strcpy(c.train.time_limit, "1e12");
    CHECK(mt_config_validate(&c, &e) == MT_ERR_USAGE && strstr(e.msg, "is too large"),
          "train.time_limit = 1e12 accepted (%s)", e.msg);
    mt_config_defaults(&c);
    mt_err_clear(&e);
    c.optim.min_lr = 1.0;
    CHECK(mt_config_validate(&c, &e) == MT_ERR_USAGE && strstr(e.msg, "min_lr"),
          "min_lr > lr accepted (%s)", e.msg);
    mt_config_defaults(&c);
    mt_err_clear(&e);
    strcpy(c.run.name, "../escape");
    CHECK(mt_config_validate(&c, &e) == MT_ERR_USAGE, "run.name with '/' accepted");
    mt_config_defaults(&c);
    mt_err_clear(&e);
    c.model.layers.n = 1;
    CHECK(mt_config_validate(&c, &e) == MT_ERR_USAGE, "one-entry layers accepted");

    /* Model names the registry can look up: at most 128 characters. */
    mt_config_defaults(&c);
    mt_err_clear(&e);
    memset(c.registry.model_name, 'm', 128);
    c.registry.model_name[128] = '\0';
    CHECK(mt_config_validate(&c, &e) == MT_OK, "a 128-character model name refused: %s", e.msg);
    strcat(c.registry.model_name, "m");
    CHECK(mt_config_validate(&c, &e) == MT_ERR_USAGE && strstr(e.msg, "at most 128"),
          "a 129-character model name accepted (%s)", e.msg);

    /* An enum's name stays valid however many names are asked for after it
     * (records keep them: a registry record once named the precision "gpt"). */
    const char *prec = mt_config_enum_name("train", "precision", MT_PREC_BF16);
    for (int i = 0; i < 16; i++) mt_config_enum_name("model", "kind", i % 2);
    CHECK(strcmp(prec, "bf16") == 0, "the precision's name became '%s'", prec);

    /* The table: unique keys, help text for each. */
    for (const mt_cfg_key *k = mt_cfg_keys; k->section; k++) {
        CHECK(k->help && strlen(k->help) > 8, "%s.%s has no help", k->section, k->key);
        for (const mt_cfg_key *j = k + 1; j->section; j++)
            CHECK(strcmp(k->section, j->section) || strcmp(k->key, j->key), "%s.%s twice",
                  k->section, k->key);
    }
    return mt_test_finish("config");
}
