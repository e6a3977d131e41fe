/* onnx.c: ONNX export of the inference models (derf/infer.h). The model is built as protobuf-c
 * messages generated from onnx.proto (Debian's libonnx-dev; the Makefile runs protoc-c into build/gen)
 * and serialized by libprotobuf-c: no protobuf bytes are written by hand. Opset 17, IR version 8.
 * Initializers keep the checkpoint's tensor names; linear layers are MatMul(x, Transpose(W)) (+ b).
 * Norms: point-wise ones as Mul(alpha) [+ Add(s)] -> f (Erf, Tanh, Atan, ...) [-> Mul(gamma) -> Add(beta)],
 * LayerNorm as LayerNormalization, RMSNorm from ReduceMean/Sqrt/Div. GELU (not in opset 17) from
 * Erf or Tanh. A build without protoc-c answers "built without ONNX support". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/infer.h"
#include "derf/io.h"
#include "infer/models.h"

#ifndef DERF_ONNX
int derf_onnx_export_vit(const derf_infer_vit *m, const char *path, char *err, size_t errlen) {
    (void)m; (void)path;
    derf_io_errf(err, errlen, "built without ONNX support: install protobuf-c-compiler, libprotobuf-c-dev and "
                 "libonnx-dev (make deps), then rebuild");
    return -1;
}
int derf_onnx_export_gpt2(const derf_infer_gpt2 *m, const char *path, char *err, size_t errlen) {
    return derf_onnx_export_vit(NULL, path, err, errlen);
}
#else
#include "onnx.pb-c.h"

/* ------------------------------------------------------------------------------- graph builder */
typedef struct {
    Onnx__NodeProto **nodes;
    size_t nn, cn;
    Onnx__TensorProto **inits;
    size_t ni, ci;
    void **mem;                 /* every allocation, freed at the end */
    size_t nm, cm;
    int counter, oom;
    char err[256];              /* set when something cannot be exported */
} ob;

static void *keep(ob *b, void *p) {
    if (!p) { b->oom = 1; return NULL; }
    if (b->nm == b->cm) {
        size_t c = b->cm ? 2 * b->cm : 256;
        void **q = realloc(b->mem, c * sizeof *q);
        if (!q) { free(p); b->oom = 1; return NULL; }
        b->mem = q;
        b->cm = c;
    }
    return b->mem[b->nm++] = p;
}
static void *ob_alloc(ob *b, size_t n) { return keep(b, calloc(1, n ? n : 1)); }
static char *ob_str(ob *b, const char *s) {
    char *p = ob_alloc(b, strlen(s) + 1);
    if (p) strcpy(p, s);
    return p;
}
static void push(ob *b, void ***arr, size_t *n, size_t *cap, void *item) {
    if (!item) { b->oom = 1; return; }
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 256;
        void **q = realloc(*arr, c * sizeof *q);
        if (!q) { b->oom = 1; return; }
        *arr = q;
        *cap = c;
    }
    (*arr)[(*n)++] = item;
}

typedef struct { const char *name; int kind; int64_t i; float f; const int64_t *ints; int nints; } attr;
enum { A_INT, A_FLOAT, A_INTS };
#define AI(n, v) ((attr){n, A_INT, v, 0, NULL, 0})
#define AF(n, v) ((attr){n, A_FLOAT, 0, v, NULL, 0})
#define AS(n, ...) ((attr){n, A_INTS, 0, 0, (const int64_t[]){__VA_ARGS__}, (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))})

/* Adds a node op(inputs...) with attributes; returns its (fresh) output name. */
static const char *node(ob *b, const char *op, int nin, const char *const *in, int nat, const attr *at) {
    Onnx__NodeProto *n = ob_alloc(b, sizeof *n);
    if (!n) return "";
    onnx__node_proto__init(n);
    char out[64];
    snprintf(out, sizeof out, "%s_%d", op, b->counter++);
    n->op_type = ob_str(b, op);
    n->name = ob_str(b, out);
    n->n_input = (size_t)nin;
    n->input = ob_alloc(b, sizeof(char *) * (size_t)(nin ? nin : 1));
    for (int i = 0; i < nin && n->input; i++) n->input[i] = ob_str(b, in[i]);
    n->n_output = 1;
    n->output = ob_alloc(b, sizeof(char *));
    if (n->output) n->output[0] = n->name;
    n->n_attribute = (size_t)nat;
    n->attribute = ob_alloc(b, sizeof(Onnx__AttributeProto *) * (size_t)(nat ? nat : 1));
    for (int i = 0; i < nat && n->attribute; i++) {
        Onnx__AttributeProto *a = ob_alloc(b, sizeof *a);
        if (!a) break;
        onnx__attribute_proto__init(a);
        a->name = ob_str(b, at[i].name);
        a->has_type = 1;
        if (at[i].kind == A_INT) {
            a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
            a->has_i = 1;
            a->i = at[i].i;
        } else if (at[i].kind == A_FLOAT) {
            a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
            a->has_f = 1;
            a->f = at[i].f;
        } else {
            a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
            a->n_ints = (size_t)at[i].nints;
            a->ints = ob_alloc(b, sizeof(int64_t) * (size_t)at[i].nints);
            if (a->ints) memcpy(a->ints, at[i].ints, sizeof(int64_t) * (size_t)at[i].nints);
        }
        n->attribute[i] = a;
    }
    push(b, (void ***)&b->nodes, &b->nn, &b->cn, n);
    return n->name ? n->name : "";
}
#define OP(b, op, ...) node(b, op, (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)), (const char *[]){__VA_ARGS__}, 0, NULL)
#define OPA(b, op, at, ...) node(b, op, (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)), (const char *[]){__VA_ARGS__}, \
                                 (int)(sizeof(at) / sizeof(attr)), at)

/* An initializer. F32 data is referenced (raw_data points at it: it must outlive the export). */
static const char *init_tensor(ob *b, const char *name, int type, int ndim, const int64_t *dims, const void *data, size_t bytes) {
    Onnx__TensorProto *t = ob_alloc(b, sizeof *t);
    if (!t) return "";
    onnx__tensor_proto__init(t);
    t->name = ob_str(b, name);
    t->has_data_type = 1;
    t->data_type = type;
    t->n_dims = (size_t)ndim;
    t->dims = ob_alloc(b, sizeof(int64_t) * (size_t)(ndim ? ndim : 1));
    if (t->dims && ndim) memcpy(t->dims, dims, sizeof(int64_t) * (size_t)ndim);
    t->has_raw_data = 1;
    t->raw_data.len = bytes;
    t->raw_data.data = (uint8_t *)data;
    push(b, (void ***)&b->inits, &b->ni, &b->ci, t);
    return t->name ? t->name : "";
}

/* A constant (copied): int64 1-D (n >= 1) or 0-D (n == 0: the scalar v[0]); float 1-D. */
static const char *const_i64(ob *b, int n, const int64_t *v) {
    char name[48];
    snprintf(name, sizeof name, "const_%d", b->counter++);
    const int cnt = n ? n : 1;
    int64_t *d = ob_alloc(b, sizeof(int64_t) * (size_t)cnt);
    if (d) memcpy(d, v, sizeof(int64_t) * (size_t)cnt);
    const int64_t dims[1] = {n};
    return init_tensor(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, n ? 1 : 0, dims, d, sizeof(int64_t) * (size_t)cnt);
}
#define I64(b, ...) const_i64(b, (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__})
static const char *const_f32(ob *b, int64_t n, float v) {
    char name[48];
    snprintf(name, sizeof name, "const_%d", b->counter++);
    float *d = ob_alloc(b, sizeof(float) * (size_t)n);
    for (int64_t i = 0; d && i < n; i++) d[i] = v;
    const int64_t dims[1] = {n};
    return init_tensor(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, dims, d, sizeof(float) * (size_t)n);
}

/* Every tensor of the model's table as an initializer under its checkpoint name. */
static void add_weights(ob *b, iw_table *t) {
    for (int i = 0; i < t->n; i++) {
        const iw_entry *e = &t->e[i];
        if (e->flags & IW_NOWRITE) continue;
        init_tensor(b, e->name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, e->ndim, e->shape, e->data, e->numel * sizeof(float));
    }
}

static int has(iw_table *t, const char *name) { return iw_find(t, name) != NULL; }

/* x @ W^T (+ b): W in nn.Linear layout [out, in] */
static const char *linear(ob *b, iw_table *t, const char *x, const char *w, const char *bias) {
    const attr tr[] = {AS("perm", 1, 0)};
    const char *y = OP(b, "MatMul", x, OPA(b, "Transpose", tr, w));
    return bias && has(t, bias) ? OP(b, "Add", y, bias) : y;
}

/* One norm layer "<prefix>" over the last axis (width C). NULL (b->err set) for what ONNX export does not cover. */
static const char *norm(ob *b, iw_table *t, const char *x, const derf_norm_spec *s, int C, const char *prefix) {
    char n[160], g[160], bb[160];
    snprintf(g, sizeof g, "%s.weight", prefix);
    snprintf(bb, sizeof bb, "%s.bias", prefix);
    const char *y;
    if (s->kind == DERF_NORM_LAYERNORM) {
        const attr at[] = {AI("axis", -1), AF("epsilon", s->eps)};
        const char *scale = has(t, g) ? g : const_f32(b, C, 1.0f);
        return has(t, bb) ? OPA(b, "LayerNormalization", at, x, scale, bb) : OPA(b, "LayerNormalization", at, x, scale);
    }
    if (s->kind == DERF_NORM_RMSNORM) {
        const attr rm[] = {AS("axes", -1), AI("keepdims", 1)};
        const char *ms = OPA(b, "ReduceMean", rm, OP(b, "Mul", x, x));
        y = OP(b, "Div", x, OP(b, "Sqrt", OP(b, "Add", ms, const_f32(b, 1, s->eps))));
    } else {
        if (s->n_tf > 0) {
            snprintf(b->err, sizeof b->err, "norm specs with transforms (+clip, +flat, ...) are not exported to ONNX");
            return NULL;
        }
        snprintf(n, sizeof n, "%s.alpha", prefix);
        const char *u = OP(b, "Mul", x, n);
        snprintf(n, sizeof n, "%s.shift", prefix);
        if (s->shift != DERF_SHIFT_NONE) u = OP(b, "Add", u, n);
        switch (s->fn) {
        case DERF_FN_ERF: y = OP(b, "Erf", u); break;
        case DERF_FN_TANH: y = OP(b, "Tanh", u); break;
        case DERF_FN_ARCTAN: y = OP(b, "Mul", OP(b, "Atan", u), const_f32(b, 1, (float)(2.0 / M_PI))); break;
        case DERF_FN_ISRU: y = OP(b, "Div", u, OP(b, "Sqrt", OP(b, "Add", OP(b, "Mul", u, u), const_f32(b, 1, 1.0f)))); break;
        case DERF_FN_SMOOTHSIGN: y = OP(b, "Div", u, OP(b, "Add", OP(b, "Abs", u), const_f32(b, 1, 1.0f))); break;
        case DERF_FN_LINEAR: y = u; break;
        default:
            snprintf(b->err, sizeof b->err, "the point-wise function '%s' is not exported to ONNX (erf, tanh, arctan, "
                     "isru, smoothsign, linear are)", derf_fn_get(s->fn)->name);
            return NULL;
        }
    }
    if (has(t, g)) y = OP(b, "Mul", y, g);
    if (has(t, bb)) y = OP(b, "Add", y, bb);
    return y;
}

static const char *gelu(ob *b, const char *x, int tanh_form) {
    const char *inner;
    if (tanh_form) { /* tanh(sqrt(2/pi) (x + 0.044715 x^3)) */
        const char *x3 = OP(b, "Mul", OP(b, "Mul", x, x), x);
        inner = OP(b, "Tanh", OP(b, "Mul", OP(b, "Add", x, OP(b, "Mul", x3, const_f32(b, 1, 0.044715f))),
                                 const_f32(b, 1, 0.7978845608028654f)));
    } else {         /* erf(x / sqrt(2)) */
        inner = OP(b, "Erf", OP(b, "Mul", x, const_f32(b, 1, 0.7071067811865476f)));
    }
    return OP(b, "Mul", OP(b, "Mul", x, const_f32(b, 1, 0.5f)), OP(b, "Add", inner, const_f32(b, 1, 1.0f)));
}

/* Multi-head attention on qkv [N, T, 3C] -> [N, T, C]; mask [T, T] (0 / -1e9) or NULL. */
static const char *attention(ob *b, const char *qkv, int C, int NH, const char *mask) {
    const int64_t hs = C / NH;
    const attr p5[] = {AS("perm", 2, 0, 3, 1, 4)}, pk[] = {AS("perm", 0, 1, 3, 2)}, po[] = {AS("perm", 0, 2, 1, 3)};
    const attr ax0[] = {AI("axis", 0)}, sm[] = {AI("axis", -1)};
    const char *p = OPA(b, "Transpose", p5, OP(b, "Reshape", qkv, I64(b, 0, 0, 3, NH, hs)));   /* [3, N, NH, T, hs] */
    const char *q = OPA(b, "Gather", ax0, p, const_i64(b, 0, (const int64_t[]){0}));
    const char *k = OPA(b, "Gather", ax0, p, const_i64(b, 0, (const int64_t[]){1}));
    const char *v = OPA(b, "Gather", ax0, p, const_i64(b, 0, (const int64_t[]){2}));
    const char *s = OP(b, "Mul", OP(b, "MatMul", q, OPA(b, "Transpose", pk, k)), const_f32(b, 1, 1.0f / sqrtf((float)hs)));
    if (mask) s = OP(b, "Add", s, mask);
    const char *o = OP(b, "MatMul", OPA(b, "Softmax", sm, s), v);                                 /* [N, NH, T, hs] */
    return OP(b, "Reshape", OPA(b, "Transpose", po, o), I64(b, 0, 0, C));
}

/* A graph input or output: elem type, dims (a name for a symbolic dim, else its value). */
static Onnx__ValueInfoProto *value_info(ob *b, const char *name, int type, int ndim, const char *const *sym, const int64_t *dims) {
    Onnx__ValueInfoProto *v = ob_alloc(b, sizeof *v);
    Onnx__TypeProto *tp = ob_alloc(b, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = ob_alloc(b, sizeof *tt);
    Onnx__TensorShapeProto *sh = ob_alloc(b, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dd = ob_alloc(b, sizeof *dd * (size_t)ndim);
    if (!v || !tp || !tt || !sh || !dd) return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = ob_alloc(b, sizeof *d);
        if (!d) return NULL;
        onnx__tensor_shape_proto__dimension__init(d);
        if (sym[i]) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = ob_str(b, sym[i]);
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        dd[i] = d;
    }
    sh->n_dim = (size_t)ndim;
    sh->dim = dd;
    tt->has_elem_type = 1;
    tt->elem_type = type;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->type = tp;
    v->name = ob_str(b, name);
    return v;
}

/* Renames the last node's output to `name` (the graph output). */
static void name_output(ob *b, const char *name) {
    if (b->nn) b->nodes[b->nn - 1]->output[0] = ob_str(b, name);
}

static int finish(ob *b, const char *graph_name, Onnx__ValueInfoProto *in, Onnx__ValueInfoProto *out, const char *path,
                  char *err, size_t errlen) {
    int rc = -1;
    if (b->err[0]) derf_io_errf(err, errlen, "%s", b->err);
    else if (b->oom || !in || !out) derf_io_errf(err, errlen, "out of memory building the ONNX graph");
    else {
        Onnx__GraphProto g;
        onnx__graph_proto__init(&g);
        g.name = (char *)graph_name;
        g.n_node = b->nn;
        g.node = b->nodes;
        g.n_initializer = b->ni;
        g.initializer = b->inits;
        g.n_input = 1;
        g.input = &in;
        g.n_output = 1;
        g.output = &out;
        Onnx__OperatorSetIdProto opset, *ops = &opset;
        onnx__operator_set_id_proto__init(&opset);
        opset.domain = (char *)"";
        opset.has_version = 1;
        opset.version = 17;
        Onnx__ModelProto mp;
        onnx__model_proto__init(&mp);
        mp.has_ir_version = 1;
        mp.ir_version = 8;
        mp.producer_name = (char *)"derf";
        mp.producer_version = (char *)"1";
        mp.n_opset_import = 1;
        mp.opset_import = &ops;
        mp.graph = &g;
        const size_t len = onnx__model_proto__get_packed_size(&mp);
        if (len >= ((size_t)1 << 31)) {
            derf_io_errf(err, errlen, "the model is %zu bytes, over protobuf's 2 GiB limit for one ONNX file", len);
        } else {
            uint8_t *buf = malloc(len ? len : 1);
            if (!buf) derf_io_errf(err, errlen, "out of memory serializing the ONNX model (%zu bytes)", len);
            else {
                onnx__model_proto__pack(&mp, buf);
                rc = derf_io_write_file(path, buf, len, err, errlen);
                free(buf);
            }
        }
    }
    for (size_t i = 0; i < b->nm; i++) free(b->mem[i]);
    free(b->mem);
    free(b->nodes);
    free(b->inits);
    return rc;
}

/* ------------------------------------------------------------------------------- the models */

int derf_onnx_export_vit(const derf_infer_vit *mc, const char *path, char *err, size_t errlen) {
    derf_infer_vit *m = (derf_infer_vit *)mc;   /* read only; iw_find takes the table non-const */
    const derf_vit_config *c = &m->cfg;
    const int D = c->dim, NP = m->T - 1, NH = c->heads;
    ob b;
    memset(&b, 0, sizeof b);
    iw_table *t = &m->w;
    add_weights(&b, t);
    const char *ns[4] = {"N", NULL, NULL, NULL};
    const int64_t idims[4] = {0, c->chans, c->img, c->img}, odims[2] = {0, c->classes};
    Onnx__ValueInfoProto *in = value_info(&b, "images", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 4, ns, idims);
    Onnx__ValueInfoProto *out = value_info(&b, "logits", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 2, ns, odims);
    const attr tr[] = {AS("perm", 0, 2, 1)}, cat1[] = {AI("axis", 1)}, cat0[] = {AI("axis", 0)},
                      sh0[] = {AI("start", 0), AI("end", 1)};
    const attr conv[] = {AS("kernel_shape", c->patch, c->patch), AS("strides", c->patch, c->patch)};
    /* x = [cls ; patches] + pos */
    const char *pe = OPA(&b, "Conv", conv, "images", "patch_embed.proj.weight", "patch_embed.proj.bias");
    pe = OPA(&b, "Transpose", tr, OP(&b, "Reshape", pe, I64(&b, 0, D, NP)));                /* [N, NP, D] */
    const char *shape = OPA(&b, "Concat", cat0, OPA(&b, "Shape", sh0, "images"), I64(&b, 1, D));
    const char *x = OPA(&b, "Concat", cat1, OP(&b, "Expand", "cls_token", shape), pe);
    x = OP(&b, "Add", x, "pos_embed");
    char n[8][128];
    for (int l = 0; l < c->depth && !b.err[0]; l++) {
#define NM(i, s) (snprintf(n[i], sizeof n[i], "blocks.%d.%s", l, s), n[i])
        const char *h = norm(&b, t, x, &c->norm, D, NM(0, "norm1"));
        if (!h) break;
        const char *qkv = linear(&b, t, h, NM(1, "attn.qkv.weight"), NM(2, "attn.qkv.bias"));
        x = OP(&b, "Add", x, linear(&b, t, attention(&b, qkv, D, NH, NULL), NM(3, "attn.proj.weight"), NM(4, "attn.proj.bias")));
        if (!(h = norm(&b, t, x, &c->norm, D, NM(0, "norm2")))) break;
        h = gelu(&b, linear(&b, t, h, NM(1, "mlp.fc1.weight"), NM(2, "mlp.fc1.bias")), c->gelu == DERF_GELU_TANH);
        x = OP(&b, "Add", x, linear(&b, t, h, NM(3, "mlp.fc2.weight"), NM(4, "mlp.fc2.bias")));
#undef NM
    }
    if (!b.err[0]) {
        const char *pooled;
        if (c->pool == DERF_POOL_AVG) {
            const attr rm[] = {AS("axes", 1), AI("keepdims", 0)};
            pooled = OPA(&b, "ReduceMean", rm, OP(&b, "Slice", x, I64(&b, 1), I64(&b, m->T), I64(&b, 1)));
        } else {
            pooled = OPA(&b, "Gather", cat1, x, const_i64(&b, 0, (const int64_t[]){0}));
        }
        const char *h = norm(&b, t, pooled, &c->norm, D, c->pool == DERF_POOL_AVG ? "fc_norm" : "norm");
        if (h) {
            linear(&b, t, h, "head.weight", "head.bias");
            name_output(&b, "logits");
        }
    }
    return finish(&b, "derf_vit", in, out, path, err, errlen);
}

int derf_onnx_export_gpt2(const derf_infer_gpt2 *mc, const char *path, char *err, size_t errlen) {
    derf_infer_gpt2 *m = (derf_infer_gpt2 *)mc;
    const derf_gpt2_config *c = &m->cfg;
    const int C = c->n_embd, NH = c->n_head, S = c->block_size;
    ob b;
    memset(&b, 0, sizeof b);
    iw_table *t = &m->w;
    add_weights(&b, t);
    const char *ns[3] = {"N", "T", NULL};
    const int64_t odims[3] = {0, 0, c->vocab};
    Onnx__ValueInfoProto *in = value_info(&b, "tokens", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 2, ns, odims);
    Onnx__ValueInfoProto *out = value_info(&b, "logits", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 3, ns, odims);
    /* the causal mask [S, S]: 0 on and below the diagonal, -1e9 above (exp underflows to exactly 0) */
    float *mask = ob_alloc(&b, sizeof(float) * (size_t)S * S);
    for (size_t i = 0; mask && i < (size_t)S; i++)
        for (size_t j = 0; j < (size_t)S; j++) mask[i * S + j] = j > i ? -1e9f : 0.0f;
    const int64_t mdims[2] = {S, S};
    init_tensor(&b, "causal_mask", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 2, mdims, mask, sizeof(float) * (size_t)S * S);
    const attr ax0[] = {AI("axis", 0)}, sh1[] = {AI("start", 1), AI("end", 2)};
    const char *T1 = OPA(&b, "Shape", sh1, "tokens");                                              /* [T] */
    const char *maskT = OP(&b, "Slice", "causal_mask", I64(&b, 0, 0), OPA(&b, "Concat", ax0, T1, T1), I64(&b, 0, 1));
    /* x = s * (wte[tok] + wpe[:T]) */
    const char *x = OP(&b, "Add", OPA(&b, "Gather", ax0, "wte.weight", "tokens"), OP(&b, "Slice", "wpe.weight", I64(&b, 0), T1, I64(&b, 0)));
    if (m->scale) x = OP(&b, "Mul", x, "shared_scale");
    char n[8][128];
    for (int l = 0; l < c->n_layer && !b.err[0]; l++) {
#define NM(i, s) (snprintf(n[i], sizeof n[i], "h.%d.%s", l, s), n[i])
        const char *h = norm(&b, t, x, &c->norm, C, NM(0, "ln_1"));
        if (!h) break;
        const char *qkv = linear(&b, t, h, NM(1, "attn.c_attn.weight"), NM(2, "attn.c_attn.bias"));
        x = OP(&b, "Add", x, linear(&b, t, attention(&b, qkv, C, NH, maskT), NM(3, "attn.c_proj.weight"), NM(4, "attn.c_proj.bias")));
        if (!(h = norm(&b, t, x, &c->norm, C, NM(0, "ln_2")))) break;
        h = gelu(&b, linear(&b, t, h, NM(1, "mlp.c_fc.weight"), NM(2, "mlp.c_fc.bias")), 1);
        x = OP(&b, "Add", x, linear(&b, t, h, NM(3, "mlp.c_proj.weight"), NM(4, "mlp.c_proj.bias")));
#undef NM
    }
    if (!b.err[0]) {
        const char *h = norm(&b, t, x, &c->norm, C, "ln_f");
        if (h) {
            if (m->folded) linear(&b, t, h, "lm_head.weight", "lm_head.bias");
            else linear(&b, t, h, "wte.weight", NULL);
            name_output(&b, "logits");
        }
    }
    return finish(&b, "derf_gpt2", in, out, path, err, errlen);
}
#endif
