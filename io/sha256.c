/* sha256.c - SHA-256 through libcrypto's EVP interface (see sha256.h). */
#include "sha256.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static void to_hex(const unsigned char *md, char hex[65]) {
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

int mt_sha256_file(const char *path, char hex[65], mt_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return mt_err_set(e, MT_ERR_DATA, "cannot read %s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(ctx, buf, n);
    int bad = ferror(f);
    fclose(f);
    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    if (bad) return mt_err_set(e, MT_ERR_DATA, "error reading %s", path);
    to_hex(md, hex);
    return MT_OK;
}

void mt_sha256_buf(const void *data, size_t len, char hex[65]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    to_hex(md, hex);
}
