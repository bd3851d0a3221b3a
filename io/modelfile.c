/* modelfile.c - write the model's parameters to HDF5 (see modelfile.h). */
#include "modelfile.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/version.h"
#include "io/files.h"
#include "io/h5util.h"

int mt_modelfile_write(const char *path, const mt_params *p, const mt_modelfile_meta *meta,
                       mt_err *e) {
    char tmp[1100];
    mt_file_tmp_name(path, tmp, sizeof tmp);
    mt_h5_quiet();
    hid_t f = mt_h5_create(tmp, e);
    if (f < 0) return e->code;
    mt_version_info v;
    mt_version_get(&v);
    char step[32];
    snprintf(step, sizeof step, "%lld", meta->step);
    int rc = mt_h5_write_attr_str(f, "/", "format", "mpitrain-model", e);
    if (!rc) rc = mt_h5_write_attr_str(f, "/", "model_kind", meta->model_kind, e);
    if (!rc) rc = mt_h5_write_attr_str(f, "/", "run_id", meta->run_id, e);
    if (!rc) rc = mt_h5_write_attr_str(f, "/", "step", step, e);
    if (!rc) rc = mt_h5_write_attr_str(f, "/", "mpitrain_version", v.version, e);
    if (!rc) rc = mt_h5_write_attr_str(f, "/", "code_commit", v.commit, e);
    if (!rc) rc = mt_h5_write_attr_str(f, "/", "config", meta->config_text, e);
    for (int i = 0; !rc && i < p->n; i++) {
        const mt_param *t = &p->v[i];
        char name[MT_PARAM_NAME_LEN + 8];
        hsize_t dims[MT_PARAM_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
        snprintf(name, sizeof name, "/model/%s", t->name);
        rc = mt_h5_write(f, name, H5T_NATIVE_FLOAT, p->data + t->offset, t->ndim, dims, e);
    }
    if (H5Fclose(f) < 0 && !rc) rc = mt_err_set(e, MT_ERR_USAGE, "cannot write %s", tmp);
    if (rc) {
        unlink(tmp);
        return rc;
    }
    return mt_file_commit(tmp, path, e);
}
