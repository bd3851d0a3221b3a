/* tensor_view.c - sizes of a tensor view (see tensor_view.h). */
#include "tensor_view.h"

size_t mt_view_global_numel(const mt_tensor_view *v) {
    size_t n = 1;
    for (int d = 0; d < v->ndim; d++) n *= (size_t)v->shape[d];
    return n;
}

size_t mt_view_block_numel(const mt_tensor_view *v) {
    size_t n = 1;
    for (int d = 0; d < v->ndim; d++)
        n *= d == v->shard_dim ? (size_t)(v->shard_len * v->shard_parts) : (size_t)v->shape[d];
    return n;
}

int mt_view_is_split(const mt_tensor_view *v) {
    return v->shard_dim >= 0 && v->shard_dim < v->ndim;
}
