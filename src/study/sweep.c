/* sweep.c: the engine of `derf study`: runs every case x seed that has no result yet, one
 * derf_cls_train each, and records each finished run in OUT/runs/<id>-s<seed>/result.json
 * (atomic write), so an interrupted sweep resumes where it stopped. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "derf/io.h"
#include "derf/study.h"

void derf_study_fingerprint(const derf_cls_opts *o, char *buf, size_t n) {
    const derf_vit_config *m = &o->model;
    const derf_aug_cfg *a = &o->aug;
    snprintf(buf, n,
             "vit img %d chans %d patch %d dim %d depth %d heads %d mlp %d classes %d pool %d gelu %d drop_path %g | "
             "data %s train_limit %d test_limit %d | epochs %d batch %d max_steps %d lr %g min_lr %g warmup %g wd %g "
             "betas %g %g clip %g | translate %d hflip %d erase %g mixup %g cutmix %g mix_prob %g switch %g smoothing %g | "
             "ema %g eval_train_loss %d",
             m->img, m->chans, m->patch, m->dim, m->depth, m->heads, m->mlp_ratio, m->classes, (int)m->pool, (int)m->gelu,
             (double)m->drop_path, o->data ? o->data : "", o->train_limit, o->test_limit, o->epochs, o->batch,
             o->max_steps, (double)o->lr, (double)o->min_lr, (double)o->warmup_epochs, (double)o->weight_decay,
             (double)o->beta1, (double)o->beta2, (double)o->clip, a->translate, a->hflip, (double)a->erase_prob,
             (double)a->mixup_alpha, (double)a->cutmix_alpha, (double)a->mix_prob, (double)a->switch_prob,
             (double)a->smoothing, (double)o->ema, o->eval_train_loss);
}

/* ---- result.json ---------------------------------------------------------------------------- */
static void num(cJSON *j, const char *k, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(j, k, v);
    else cJSON_AddNullToObject(j, k);
}

int derf_study_result_save(const char *path, const char *spec, int seed, const char *fingerprint,
                           const derf_cls_result *r, char *err, size_t errlen) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "spec", spec);
    cJSON_AddNumberToObject(j, "seed", seed);
    cJSON_AddStringToObject(j, "options", fingerprint);
    cJSON_AddBoolToObject(j, "diverged", r->diverged != 0);
    cJSON_AddStringToObject(j, "diverged_msg", r->diverged ? r->diverged_msg : "");
    num(j, "test_acc", r->test_acc);
    num(j, "test_acc_ema", r->test_acc_ema);
    num(j, "test_loss", r->test_loss);
    num(j, "test_loss_ema", r->test_loss_ema);
    num(j, "train_loss_eval", r->train_loss_eval);
    num(j, "train_loss_eval_ema", r->train_loss_eval_ema);
    num(j, "final_loss", r->final_loss);
    cJSON_AddNumberToObject(j, "steps", r->steps);
    cJSON_AddNumberToObject(j, "total_steps", r->total_steps);
    cJSON_AddNumberToObject(j, "epochs_done", r->epochs_done);
    num(j, "seconds", r->seconds);
    num(j, "images_per_s", r->images_per_s);
    cJSON *ca = cJSON_AddArrayToObject(j, "class_acc");
    for (int c = 0; c < DERF_DATASET_CLASSES; c++) cJSON_AddItemToArray(ca, cJSON_CreateNumber(r->class_acc[c]));
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    if (!s) { derf_io_errf(err, errlen, "out of memory writing %s", path); return -1; }
    size_t len = strlen(s);
    s[len] = '\n'; /* cJSON_Print's buffer holds the NUL here; write it as a newline, no terminator needed */
    int rc = derf_io_write_file(path, s, len + 1, err, errlen);
    free(s);
    return rc;
}

static double getn(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* The result's fields must have their types: numbers (null or absent: not measured, NaN) and counts that are
 * integers in 0..2^31-1. Returns the first field that is wrong, or NULL. */
static const char *bad_field(const cJSON *j) {
    static const char *nums[] = {"test_acc", "test_acc_ema", "test_loss", "test_loss_ema", "train_loss_eval",
                                 "train_loss_eval_ema", "final_loss", "seconds", "images_per_s", NULL};
    static const char *ints[] = {"steps", "total_steps", "epochs_done", NULL};
    for (int i = 0; nums[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, nums[i]);
        if (v && !cJSON_IsNumber(v) && !cJSON_IsNull(v)) return nums[i];
    }
    for (int i = 0; ints[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, ints[i]);
        if (v && !cJSON_IsNull(v) &&
            (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 2147483647.0) || v->valuedouble != (int)v->valuedouble))
            return ints[i];
    }
    const cJSON *ca = cJSON_GetObjectItemCaseSensitive(j, "class_acc"), *v;
    if (ca && !cJSON_IsNull(ca)) {
        if (!cJSON_IsArray(ca)) return "class_acc";
        cJSON_ArrayForEach(v, ca) if (!cJSON_IsNumber(v) && !cJSON_IsNull(v)) return "class_acc";
    }
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "diverged_msg");
    if (m && !cJSON_IsString(m) && !cJSON_IsNull(m)) return "diverged_msg";
    return NULL;
}

static int geti(const cJSON *j, const char *k) { /* after bad_field: an integer in range, or absent (0) */
    double d = getn(j, k);
    return d == d ? (int)d : 0;
}

int derf_study_result_load(const char *path, const char *spec, int seed, const char *fingerprint,
                           derf_cls_result *r, char *err, size_t errlen) {
    if (access(path, F_OK) != 0) return 0;
    void *buf;
    size_t len;
    if (derf_io_read_file(path, 1 << 20, &buf, &len, err, errlen)) return -1;
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    if (!j) {
        derf_io_errf(err, errlen, "%s is not valid JSON: delete it to retrain that run", path);
        return -1;
    }
    int rc = -1;
    const char *sp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "spec"));
    const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "options"));
    const cJSON *dv = cJSON_GetObjectItemCaseSensitive(j, "diverged");
    if (!sp || !op || !cJSON_IsBool(dv) || getn(j, "seed") != seed) {
        derf_io_errf(err, errlen, "%s lacks spec/options/diverged/seed (or has another seed): delete it to retrain that run", path);
    } else if (bad_field(j)) {
        derf_io_errf(err, errlen, "%s: field '%s' has the wrong type or is out of range: delete it to retrain that run", path,
                     bad_field(j));
    } else if (strcmp(sp, spec)) {
        derf_io_errf(err, errlen, "%s is the result of spec '%s', not '%s': use another --out", path, sp, spec);
    } else if (fingerprint && strcmp(op, fingerprint)) {
        /* name the first differing ' | '-separated group of options */
        const char *a = op, *b = fingerprint;
        for (;;) {
            const char *ea = strstr(a, " | "), *eb = strstr(b, " | ");
            size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
            if (la != lb || strncmp(a, b, la) || !ea || !eb) {
                derf_io_errf(err, errlen, "%s was trained with other options ('%.*s', now '%.*s'): use another --out for a new "
                             "setting, or the same options to continue", path, (int)la, a, (int)lb, b);
                break;
            }
            a = ea + 3; b = eb + 3;
        }
    } else {
        memset(r, 0, sizeof *r);
        r->diverged = cJSON_IsTrue(dv);
        const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "diverged_msg"));
        snprintf(r->diverged_msg, sizeof r->diverged_msg, "%s", msg ? msg : "");
        r->test_acc = (float)getn(j, "test_acc");
        r->test_acc_ema = (float)getn(j, "test_acc_ema");
        r->test_loss = (float)getn(j, "test_loss");
        r->test_loss_ema = (float)getn(j, "test_loss_ema");
        r->train_loss_eval = (float)getn(j, "train_loss_eval");
        r->train_loss_eval_ema = (float)getn(j, "train_loss_eval_ema");
        r->final_loss = (float)getn(j, "final_loss");
        r->steps = geti(j, "steps");
        r->total_steps = geti(j, "total_steps");
        r->epochs_done = geti(j, "epochs_done");
        r->seconds = getn(j, "seconds");
        r->images_per_s = getn(j, "images_per_s");
        const cJSON *ca = cJSON_GetObjectItemCaseSensitive(j, "class_acc");
        for (int c = 0; c < DERF_DATASET_CLASSES; c++) {
            const cJSON *v = cJSON_GetArrayItem(ca, c);
            r->class_acc[c] = cJSON_IsNumber(v) ? (float)v->valuedouble : NAN;
        }
        rc = 1;
    }
    cJSON_Delete(j);
    return rc;
}

/* ---- the sweep ------------------------------------------------------------------------------ */
static int default_train(const derf_cls_opts *o, derf_cls_result *r, char *err, size_t errlen, void *ctx) {
    (void)ctx;
    return derf_cls_train(o, r, err, errlen);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void run_paths(const derf_study_cfg *cfg, const derf_study_case *c, int seed, char *dir, size_t dn, char *res, size_t rn) {
    snprintf(dir, dn, "%s/runs/%s-s%d", cfg->out, c->id, seed);
    snprintf(res, rn, "%s/result.json", dir);
}

/* First case with the same run id (cases of different tables share runs). */
static int first_of(const derf_study_case *cases, int i) {
    for (int k = 0; k < i; k++)
        if (!strcmp(cases[k].id, cases[i].id)) return k;
    return i;
}

int derf_study_pending(const derf_study_cfg *cfg, const derf_study_case *cases, int ncases) {
    int n = 0;
    char dir[1400], res[1500];
    for (int i = 0; i < ncases; i++) {
        if (first_of(cases, i) != i) continue;
        for (int s = 0; s < cfg->seeds; s++) {
            run_paths(cfg, &cases[i], cfg->seed0 + s, dir, sizeof dir, res, sizeof res);
            if (access(res, F_OK) != 0) n++;
        }
    }
    return n;
}

static void remove_checkpoints(const char *dir) {
    static const char *const files[] = {"model.safetensors", "model_ema.safetensors", "state.safetensors"};
    char p[1500];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
}

int derf_study_run(const derf_study_cfg *cfg, const derf_study_case *cases, int ncases,
                   derf_study_result *res, int *ntrained, char *err, size_t errlen) {
    const int S = cfg->seeds;
    if (S < 1 || S > DERF_STUDY_MAX_SEEDS) {
        derf_io_errf(err, errlen, "seeds must be 1..%d, not %d", DERF_STUDY_MAX_SEEDS, S);
        return -1;
    }
    if (ntrained) *ntrained = 0;
    memset(res, 0, sizeof *res * (size_t)ncases * (size_t)S);
    char fp[1024], dir[1400], path[1500];
    derf_study_fingerprint(&cfg->base, fp, sizeof fp);
    if (derf_io_mkdirs(cfg->out, err, errlen)) return -1;
    snprintf(path, sizeof path, "%s/runs", cfg->out);
    if (derf_io_mkdirs(path, err, errlen)) return -1;
    derf_study_trainer train = cfg->train ? cfg->train : default_train;

    /* read back what is finished */
    for (int i = 0; i < ncases; i++)
        for (int s = 0; s < S; s++) {
            run_paths(cfg, &cases[i], cfg->seed0 + s, dir, sizeof dir, path, sizeof path);
            int k = derf_study_result_load(path, cases[i].spec, cfg->seed0 + s, fp, &res[i * S + s].r, err, errlen);
            if (k < 0) return -1;
            res[i * S + s].done = k;
        }
    int todo = 0, done_now = 0;
    for (int i = 0; i < ncases; i++)
        if (first_of(cases, i) == i)
            for (int s = 0; s < S; s++) todo += !res[i * S + s].done;
    if (!cfg->quiet) {
        int total = 0;
        for (int i = 0; i < ncases; i++) total += first_of(cases, i) == i ? S : 0;
        fprintf(stderr, "[study] %s: %d runs (%d cases x %d seeds, shared baselines counted once), %d finished, %d to train\n",
                cfg->study ? cfg->study : "study", total, ncases, S, total - todo, todo);
    }
    double t_train = 0;
    for (int i = 0; i < ncases; i++) {
        int f = first_of(cases, i);
        for (int s = 0; s < S; s++) {
            derf_study_result *r = &res[i * S + s];
            if (r->done) continue;
            if (f != i) { /* the same spec was run for an earlier case */
                *r = res[f * S + s];
                r->trained = 0;
                continue;
            }
            const int seed = cfg->seed0 + s;
            derf_cls_opts o = cfg->base;
            if (derf_norm_parse(cases[i].spec, &o.model.norm, err, errlen)) return -1;
            o.seed = (uint64_t)seed;
            o.resume = NULL;
            run_paths(cfg, &cases[i], seed, dir, sizeof dir, path, sizeof path);
            o.out = dir;
            if (derf_io_mkdirs(dir, err, errlen)) return -1;
            if (!cfg->quiet) fprintf(stderr, "[study] (%d/%d) %s, seed %d ...\n", done_now + 1, todo, cases[i].spec, seed);
            double t0 = now_s();
            if (train(&o, &r->r, err, errlen, cfg->ctx)) return -1;
            double dt = now_s() - t0;
            if (r->r.seconds > 0 && r->r.steps > 0) r->r.images_per_s = (double)r->r.steps * o.batch / r->r.seconds;
            if (derf_study_result_save(path, cases[i].spec, seed, fp, &r->r, err, errlen)) return -1;
            if (!cfg->keep_checkpoints) remove_checkpoints(dir);
            r->done = 1;
            r->trained = 1;
            done_now++;
            t_train += dt;
            if (ntrained) (*ntrained)++;
            if (!cfg->quiet) {
                double eta = t_train / done_now * (todo - done_now);
                if (r->r.diverged)
                    fprintf(stderr, "[study] (%d/%d) %s, seed %d: × %s | %.0f s, eta %.0f min\n", done_now, todo,
                            cases[i].spec, seed, r->r.diverged_msg, dt, eta / 60);
                else
                    fprintf(stderr, "[study] (%d/%d) %s, seed %d: test acc %.2f%%, eval-mode train loss %.4f | %.0f s, eta %.0f min\n",
                            done_now, todo, cases[i].spec, seed, 100 * r->r.test_acc, (double)r->r.train_loss_eval, dt, eta / 60);
            }
        }
    }
    return 0;
}
