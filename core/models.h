/*
 * models.h - the table of models: every model behind the interface of
 * core/model.h, found by its model.kind. Adding a model is its own file
 * and one line in core/models.c.
 */
#ifndef MT_MODELS_H
#define MT_MODELS_H

#include "core/config.h"
#include "core/model.h"

/* The model of model.kind = kind, or NULL. */
const mt_model_ops *mt_model_find(const char *kind);
/* The model cfg names (model.kind). */
const mt_model_ops *mt_model_of(const mt_config *cfg);
/* The rules of cfg that depend on its model: the model's own (ops->check)
 * and parallel.stage_layers against its layer count. Call after
 * mt_config_validate. */
int mt_model_check(const mt_config *cfg, mt_err *e);

#endif
