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
