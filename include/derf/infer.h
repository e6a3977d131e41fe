/* derf/infer.h: forward-only inference for trained ViT and GPT-2 checkpoints, norm folding, and export.
 *
 * An inference model holds its weights and one scratch arena sized for its largest batch: no gradient
 * slabs, no AdamW moments, no per-layer activation storage (each layer reuses the same scratch).
 * It loads a checkpoint of `derf train` / `derf train-lm` (model.safetensors, model_ema.safetensors,
 * state.safetensors) or a folded one written by derf_infer_*_save after derf_infer_*_fold.
 *
 * Folding (docs/inference.md): a norm  y = gamma * n(x) + beta  (n: f(alpha x + s) for the point-wise
 * family, the standardized row for LayerNorm / RMSNorm) that feeds a linear layer W, b is folded into
 * it: W' = W diag(gamma), b' = b + W beta, leaving y' = n(x). Every norm of both models feeds linear
 * layers only (pre-norm blocks; the final norm feeds the classifier head or the LM head), so every
 * gamma and beta folds; alpha and s cannot (they act on the residual stream, which every later layer
 * reads), nor can LayerNorm's row statistics. GPT-2's LM head is tied to the token embedding: folding
 * ln_f unties it (a separate lm_head.weight and lm_head.bias), and the embedding then also absorbs
 * shared_scale (x0 = s wte[tok] + s wpe[t]).
 *
 * All functions returning int give 0, or -1 with one error line in err. */
#ifndef DERF_INFER_H
#define DERF_INFER_H

#include <stddef.h>
#include <stdint.h>
#include "derf/gpt2.h"
#include "derf/lm.h"
#include "derf/vit.h"

/* ------------------------------------------------------------------------------- ViT */
typedef struct derf_infer_vit derf_infer_vit;

/* Loads a ViT checkpoint (folded or not) for batches up to max_batch. NULL on failure (err set). */
derf_infer_vit *derf_infer_vit_load(const char *path, int max_batch, char *err, size_t errlen);
/* The model's config; its norm is the folded spec (no affine) once folded. */
const derf_vit_config *derf_infer_vit_config(const derf_infer_vit *m);
int derf_infer_vit_folded(const derf_infer_vit *m);
/* Folds every norm's gamma/beta into the linear layer it feeds (no-op when already folded). */
void derf_infer_vit_fold(derf_infer_vit *m);
/* images [B, chans, img, img] (normalized as in training), 1 <= B <= max_batch. Returns the logits
 * [B, classes] (inside the model, valid until the next call). */
const float *derf_infer_vit_forward(derf_infer_vit *m, const float *images, int B);
/* Writes the model as a checkpoint (F32 safetensors, timm names, config metadata; folded models
 * carry folded=1 and norm_trained = the spec before folding). derf_vit_load reads it too. */
int derf_infer_vit_save(const derf_infer_vit *m, const char *path, char *err, size_t errlen);
/* Bytes the model allocated (weights + scratch). */
size_t derf_infer_vit_bytes(const derf_infer_vit *m);
void derf_infer_vit_free(derf_infer_vit *m);

/* ------------------------------------------------------------------------------- GPT-2 */
typedef struct derf_infer_gpt2 derf_infer_gpt2;

/* Loads a GPT-2 checkpoint (folded or not) for B <= max_batch sequences of up to max_T <= block_size
 * tokens (max_T 0: block_size): the KV cache holds max_batch x max_T positions per layer. */
derf_infer_gpt2 *derf_infer_gpt2_load(const char *path, int max_batch, int max_T, char *err, size_t errlen);
const derf_gpt2_config *derf_infer_gpt2_config(const derf_infer_gpt2 *m);
int derf_infer_gpt2_folded(const derf_infer_gpt2 *m);
int derf_infer_gpt2_data_vocab(const derf_infer_gpt2 *m);   /* metadata data_vocab, else vocab */
void derf_infer_gpt2_fold(derf_infer_gpt2 *m);
/* Empties the KV cache (the next step starts at position 0). */
void derf_infer_gpt2_reset(derf_infer_gpt2 *m);
int derf_infer_gpt2_pos(const derf_infer_gpt2 *m);         /* positions held in the cache */
/* Runs n new tokens of each of B sequences (tokens [B, n], every id < vocab) at positions pos..pos+n-1,
 * appending their keys and values to the cache: each new token attends to the cached positions,
 * O(pos) per token. B must be the same from reset to reset. Returns the logits of the last new
 * position of each sequence [B, vocab], or NULL with err set (pos + n > max_T, bad B or ids). */
const float *derf_infer_gpt2_step(derf_infer_gpt2 *m, const int32_t *tokens, int B, int n, char *err, size_t errlen);
/* derf_lm_sample with the KV cache: the same tokens for the same options (one sequence). Beyond
 * block_size the context is the last block_size tokens, as there: the cache is refilled with them. */
int derf_infer_gpt2_sample(derf_infer_gpt2 *m, const int32_t *prompt, int n_prompt, int length,
                           const derf_lm_sample_opts *so, int32_t *out, char *err, size_t errlen);
int derf_infer_gpt2_save(const derf_infer_gpt2 *m, const char *path, char *err, size_t errlen);
size_t derf_infer_gpt2_bytes(const derf_infer_gpt2 *m);    /* weights + KV cache + scratch */
void derf_infer_gpt2_free(derf_infer_gpt2 *m);

/* ------------------------------------------------------------------------------- images */
/* Reads an image file (PNG, or any format stb_image decodes: JPEG, BMP, PGM, ...) as chans channels
 * (1: grey, 3: RGB) of exactly side x side pixels into out [chans, side, side], each pixel
 * (v / 255 - mean) / std (the training normalization); invert: 255 - v first (dark on light
 * images for a light-on-dark dataset such as Fashion-MNIST). */
int derf_image_load(const char *path, int side, int chans, float mean, float std, int invert, float *out,
                    char *err, size_t errlen);

/* ------------------------------------------------------------------------------- export */
/* The model a checkpoint holds, from its metadata: "vit", "gpt2", or NULL (err set). */
const char *derf_infer_model_kind(const char *path, char *buf, size_t buflen, char *err, size_t errlen);
/* The model's forward pass as an ONNX file (opset 17, IR 8; protobuf-c over onnx.proto): ViT input
 * "images" [N, chans, img, img] -> "logits" [N, classes]; GPT-2 input "tokens" (int64) [N, T <= block_size]
 * -> "logits" [N, T, vocab]. Folded or not, any point-wise norm of the registry without transforms,
 * LayerNorm, RMSNorm. Written atomically. */
int derf_onnx_export_vit(const derf_infer_vit *m, const char *path, char *err, size_t errlen);
int derf_onnx_export_gpt2(const derf_infer_gpt2 *m, const char *path, char *err, size_t errlen);

#endif
