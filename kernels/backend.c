/* backend.c - backend selection by name. */
#include "backend.h"

#include <string.h>

const mt_backend *mt_backend_get(const char *name) {
    if (strcmp(name, "cpu") == 0) return mt_backend_cpu();
    return NULL;
}
