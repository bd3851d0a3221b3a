/* metrics.c - JSON Lines metrics file (see metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int mt_metrics_open(mt_metrics *m, const char *path, mt_err *e) {
    snprintf(m->path, sizeof m->path, "%s", path);
    m->f = fopen(path, "a");
    if (!m->f) return mt_err_set(e, MT_ERR_USAGE, "cannot open %s: %s", path, strerror(errno));
    return MT_OK;
}

int mt_metrics_write(mt_metrics *m, const cJSON *obj, mt_err *e) {
    char *line = cJSON_PrintUnformatted(obj);
    if (!line) return mt_err_set(e, MT_ERR_INTERNAL, "cannot format a metrics record");
    int bad = fprintf(m->f, "%s\n", line) < 0 || fflush(m->f) != 0;
    free(line);
    if (bad) return mt_err_set(e, MT_ERR_USAGE, "cannot write %s: %s", m->path, strerror(errno));
    return MT_OK;
}

int mt_metrics_close(mt_metrics *m, mt_err *e) {
    if (!m->f) return MT_OK;
    int bad = fflush(m->f) != 0 || fsync(fileno(m->f)) != 0;
    bad |= fclose(m->f) != 0;
    m->f = NULL;
    if (bad) return mt_err_set(e, MT_ERR_USAGE, "cannot write %s: %s", m->path, strerror(errno));
    return MT_OK;
}
