/* sha256.h - SHA-256 of files and buffers through OpenSSL's libcrypto (EVP). */
#ifndef MT_SHA256_H
#define MT_SHA256_H

#include <stddef.h>

#include "base/error.h"

/* hex receives 64 lowercase hex digits and a NUL. */
int mt_sha256_file(const char *path, char hex[65], mt_err *e);
void mt_sha256_buf(const void *data, size_t len, char hex[65]);

#endif
