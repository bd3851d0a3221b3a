/* models.c - the table of models (see models.h). A new model is its own
 * file filling an mt_model_ops, and one line here. */
#include "models.h"

#include <string.h>

#include "core/gpt.h"
#include "core/mlp.h"

static const mt_model_ops *const models[] = {
    &mt_mlp_model,
    &mt_gpt_model,
};

const mt_model_ops *mt_model_find(const char *kind) {
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        if (strcmp(models[i]->kind, kind) == 0) return models[i];
    return NULL;
}

const mt_model_ops *mt_model_of(const mt_config *cfg) {
    return mt_model_find(mt_config_enum_name("model", "kind", cfg->model.kind));
}

int mt_model_check(const mt_config *cfg, mt_err *e) {
    const mt_model_ops *m = mt_model_of(cfg);
    if (!m) return mt_err_set(e, MT_ERR_INTERNAL, "no model for model.kind");
    if (m->check(cfg, e)) return e->code;
    const mt_cfg_intlist *sl = &cfg->parallel.stage_layers;
    if (sl->n == 1 && sl->v[0] == 0) return MT_OK; /* balanced stages */
    double first, last;
    int64_t layers = m->layers(cfg, NULL, &first, &last), sum = 0;
    int zero = 0;
    for (int i = 0; i < sl->n; i++) sum += sl->v[i], zero |= sl->v[i] == 0;
    if (sl->n != cfg->parallel.pp || sum != layers || zero)
        return mt_err_set(e, MT_ERR_USAGE,
                          "parallel.stage_layers must be parallel.pp = %lld numbers >= 1 "
                          "summing to the model's %lld layers (or 0 for balanced stages)",
                          (long long)cfg->parallel.pp, (long long)layers);
    return MT_OK;
}
