/* runlog.c: the learning-rate schedule, the divergence rule and the JSONL run log (derf/runlog.h). */
#include "derf/runlog.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "derf/io.h"

float derf_sched_lr(const derf_sched *s, int step) {
    if (s->kind == DERF_SCHED_CONSTANT) return s->lr;
    if (s->warmup > 0 && step < s->warmup) return s->lr * (float)(step + 1) / (float)s->warmup;
    if (s->total <= s->warmup) return s->lr;
    if (s->kind == DERF_SCHED_LINEAR) return s->lr * (float)(s->total - step) / (float)(s->total - s->warmup);
    double t = (double)(step - s->warmup) / (double)(s->total - s->warmup);
    if (t > 1) t = 1;
    return (float)(s->min_lr + 0.5 * (s->lr - s->min_lr) * (1 + cos(M_PI * t)));
}

int derf_loss_diverged(double loss) { return !isfinite(loss) || loss > DERF_LOSS_CAP; }

int derf_all_finite(const float *x, size_t n) {
    int ok = 1;
#pragma omp parallel for reduction(&& : ok) schedule(static)
    for (size_t i = 0; i < n; i++) ok = ok && isfinite(x[i]);
    return ok;
}

/* the step of a log line, or -1 when it has none (or is not a record) */
static double line_step(const char *line) {
    cJSON *j = cJSON_Parse(line);
    const cJSON *s = j ? cJSON_GetObjectItemCaseSensitive(j, "step") : NULL;
    double v = cJSON_IsNumber(s) ? s->valuedouble : -1;
    cJSON_Delete(j);
    return v;
}

/* rewrites path without the records of steps after `step` (atomically) */
static int truncate_log(const char *path, int step, char *err, size_t errlen) {
    FILE *in = fopen(path, "r");
    if (!in) return 0; /* no log yet: nothing to drop */
    derf_io_atomic a;
    if (derf_io_atomic_open(&a, path, err, errlen)) { fclose(in); return -1; }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while (!rc && (n = getline(&line, &cap, in)) > 0)
        if (line_step(line) <= step) rc = derf_io_atomic_write(&a, line, (size_t)n, err, errlen);
    free(line);
    fclose(in);
    if (rc) { derf_io_atomic_abort(&a); return -1; }
    return derf_io_atomic_commit(&a, err, errlen);
}

int derf_runlog_open(derf_runlog *l, const char *dir, int resume_step, char *err, size_t errlen) {
    l->f = NULL;
    if (!dir) return 0;
    char path[1200];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    if (resume_step >= 0 && truncate_log(path, resume_step, err, errlen)) return -1;
    l->f = fopen(path, resume_step >= 0 ? "a" : "w");
    if (!l->f) {
        derf_io_errf(err, errlen, "cannot write %s: does the folder exist and is it writable?", path);
        return -1;
    }
    return 0;
}

void derf_runlog_write(derf_runlog *l, const char *type, const derf_lf *f, int n) {
    if (!l || !l->f) return;
    fprintf(l->f, "{\"type\":\"%s\"", type);
    for (int i = 0; i < n; i++) {
        fprintf(l->f, ",\"%s\":", f[i].key);
        if (f[i].kind == DERF_LF_STR) {
            fputc('"', l->f);
            for (const char *c = f[i].s ? f[i].s : ""; *c; c++) {
                if (*c == '"' || *c == '\\') fputc('\\', l->f);
                if ((unsigned char)*c >= 0x20) fputc(*c, l->f);
            }
            fputc('"', l->f);
        } else if (f[i].kind == DERF_LF_BOOL) {
            fputs(f[i].v != 0 ? "true" : "false", l->f);
        } else if (!isfinite(f[i].v)) {
            fputs("null", l->f);
        } else if (f[i].kind == DERF_LF_INT) {
            fprintf(l->f, "%lld", (long long)f[i].v);
        } else {
            fprintf(l->f, f[i].kind == DERF_LF_NUM ? "%.6g" : f[i].kind == DERF_LF_RATE ? "%.1f" : "%.2f", f[i].v);
        }
    }
    fputs("}\n", l->f);
    fflush(l->f);
}

void derf_runlog_close(derf_runlog *l) {
    if (l->f) fclose(l->f);
    l->f = NULL;
}

int derf_runlog_read(const char *dir, const char *type, const char *const *keys, int nkeys, double *v, int maxrec) {
    char path[1200];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (n < maxrec && getline(&line, &cap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *t = j ? cJSON_GetObjectItemCaseSensitive(j, "type") : NULL;
        if (cJSON_IsString(t) && !strcmp(t->valuestring, type)) {
            for (int k = 0; k < nkeys; k++) {
                const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
                v[(size_t)n * nkeys + k] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
            }
            n++;
        }
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    return n;
}
