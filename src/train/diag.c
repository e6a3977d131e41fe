/* diag.c: the training diagnostics of derf/diag.h: a norm-forward hook that accumulates, per norm
 * layer, saturated point-wise inputs and the sums behind the rms and token-independent share of the
 * layer's input and output; the unigram model of a language model's data; the collapse alarm; the
 * JSONL record and the progress line. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "derf/diag.h"

static derf_diag *active; /* the collector the hook fills (one at a time) */

void derf_diag_init(derf_diag *d, int every, const derf_params *names) {
    memset(d, 0, sizeof *d);
    d->every = every;
    d->names = names;
    d->loss = d->unigram = NAN;
}

void derf_diag_free(derf_diag *d) {
    if (active == d) derf_diag_end(d);
    for (int i = 0; i < d->nlayer; i++) {
        free(d->layer[i].sum_in);
        free(d->layer[i].sum_out);
    }
    d->nlayer = 0;
}

int derf_diag_due(const derf_diag *d, int step) { return d->every > 0 && step % d->every == 0; }

void derf_diag_begin(derf_diag *d) {
    for (int i = 0; i < d->nlayer; i++) {
        derf_diag_layer *l = &d->layer[i];
        l->n_sat = l->n_el = l->rows = l->sumsq_in = l->sumsq_out = 0;
        memset(l->sum_in, 0, sizeof(double) * (size_t)l->C);
        memset(l->sum_out, 0, sizeof(double) * (size_t)l->C);
    }
    d->loss = d->unigram = NAN;
    d->check_gap = 0;
    active = d;
    derf_norm_forward_hook = derf_diag_norm_hook;
}

void derf_diag_end(derf_diag *d) {
    if (active == d) {
        active = NULL;
        derf_norm_forward_hook = NULL;
    }
}

int derf_diag_maybe_begin(derf_diag *d, int step) {
    if (!derf_diag_due(d, step)) return 0;
    derf_diag_begin(d);
    d->open = 1;
    return 1;
}

void derf_diag_maybe_end(derf_diag *d, int step, FILE *log, FILE *progress) {
    if (!d->open) return;
    d->open = 0;
    derf_diag_end(d);
    derf_diag_report(d, step, log, progress, 0);
}

void derf_diag_set_lm(derf_diag *d, double loss, double unigram, int check_gap) {
    d->loss = loss;
    d->unigram = unigram;
    d->check_gap = check_gap;
}

/* the layer's name: its first tensor's name without the last component ("h.3.ln_2.alpha" -> "h.3.ln_2") */
static void layer_name(const derf_diag *d, const float *key, char *out) {
    snprintf(out, DERF_NAME_MAX, "norm%d", d->nlayer);
    if (!d->names || !d->names->params) return;
    for (int i = 0; i < d->names->n; i++)
        if (d->names->params + d->names->t[i].offset == key) {
            snprintf(out, DERF_NAME_MAX, "%s", d->names->t[i].name);
            char *dot = strrchr(out, '.');
            if (dot) *dot = 0;
            return;
        }
}

/* 5% of the largest |g'| of the composed function (on a fine grid of [-8, 8]) */
static double sat_threshold(const derf_norm_spec *s) {
    double mx = 0;
    for (int i = -8000; i <= 8000; i++) {
        float g, dg;
        derf_pointwise_eval(s, (float)(i * 1e-3), &g, &dg);
        if (fabs(dg) > mx) mx = fabs(dg);
    }
    return DERF_DIAG_SAT_FRAC * mx;
}

static derf_diag_layer *find_layer(derf_diag *d, const derf_norm_spec *s, const float *key, int C) {
    for (int i = 0; i < d->nlayer; i++)
        if (d->layer[i].key == key && d->layer[i].C == C) return &d->layer[i];
    if (d->nlayer == DERF_DIAG_MAX_LAYERS) return NULL;
    derf_diag_layer *l = &d->layer[d->nlayer];
    memset(l, 0, sizeof *l);
    layer_name(d, key, l->name);
    l->key = key;
    l->C = C;
    l->pointwise = s->kind == DERF_NORM_POINTWISE;
    l->thr = l->pointwise ? sat_threshold(s) : 0;
    l->sum_in = calloc((size_t)C, sizeof(double));
    l->sum_out = calloc((size_t)C, sizeof(double));
    if (!l->sum_in || !l->sum_out) { free(l->sum_in); free(l->sum_out); return NULL; }
    d->nlayer++;
    return l;
}

void derf_diag_norm_hook(const derf_norm_spec *s, const float *y, const float *x, const float *params, int N, int C) {
    derf_diag *d = active;
    if (!d) return;
    derf_diag_layer *l = find_layer(d, s, params, C);
    if (!l) return;
    double sat = 0, sq_in = 0, sq_out = 0;
    float alpha = 1.f;
    const float *shift = NULL;
    int shift_c = 0;
    if (l->pointwise) {
        derf_norm_param p[4];
        int k = derf_norm_params(s, C, p);
        for (int i = 0; i < k; i++) {
            if (!strcmp(p[i].name, "alpha")) alpha = params[p[i].offset];
            if (!strcmp(p[i].name, "shift")) { shift = params + p[i].offset; shift_c = p[i].numel > 1; }
        }
    }
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * C, *yr = y + (size_t)r * C;
        for (int c = 0; c < C; c++) {
            sq_in += (double)xr[c] * xr[c];
            sq_out += (double)yr[c] * yr[c];
            l->sum_in[c] += xr[c];
            l->sum_out[c] += yr[c];
            if (l->pointwise) {
                float g, dg, u = alpha * xr[c] + (shift ? shift[shift_c ? c : 0] : 0.f);
                derf_pointwise_eval(s, u, &g, &dg);
                sat += fabsf(dg) < l->thr;
            }
        }
    }
    l->n_sat += sat;
    l->n_el += (double)N * C;
    l->rows += N;
    l->sumsq_in += sq_in;
    l->sumsq_out += sq_out;
}

double derf_diag_sat(const derf_diag_layer *l) { return l->pointwise && l->n_el > 0 ? l->n_sat / l->n_el : NAN; }
double derf_diag_rms_in(const derf_diag_layer *l) { return l->rows > 0 ? sqrt(l->sumsq_in / (l->rows * l->C)) : NAN; }

static double share(const double *sum, double sumsq, double rows, int C) {
    if (!(rows > 0) || !(sumsq > 0)) return NAN;
    double m2 = 0;
    for (int c = 0; c < C; c++) m2 += (sum[c] / rows) * (sum[c] / rows);
    return m2 / (sumsq / rows);
}
double derf_diag_share_in(const derf_diag_layer *l) { return share(l->sum_in, l->sumsq_in, l->rows, l->C); }
double derf_diag_share_out(const derf_diag_layer *l) { return share(l->sum_out, l->sumsq_out, l->rows, l->C); }

int derf_diag_alarm(const derf_diag *d) {
    for (int i = 0; i < d->nlayer; i++) {
        const derf_diag_layer *l = &d->layer[i];
        if (l->pointwise && derf_diag_sat(l) >= 0.5 && derf_diag_share_out(l) >= 0.9) return 1;
    }
    return d->check_gap && isfinite(d->loss) && isfinite(d->unigram) && fabs(d->unigram - d->loss) < DERF_DIAG_GAP_ALARM;
}

static void jnum(FILE *f, const char *k, double v) {
    if (isfinite(v)) fprintf(f, "\"%s\":%.5g", k, v);
    else fprintf(f, "\"%s\":null", k);
}

void derf_diag_report(const derf_diag *d, int step, FILE *log, FILE *progress, int verbose) {
    const int alarm = derf_diag_alarm(d);
    if (log) {
        fprintf(log, "{\"type\":\"diag\",\"step\":%d,", step);
        jnum(log, "loss", d->loss);
        fputc(',', log);
        jnum(log, "unigram_loss", d->unigram);
        fputc(',', log);
        jnum(log, "unigram_gap", d->unigram - d->loss);
        fprintf(log, ",\"alarm\":%s,\"layers\":[", alarm ? "true" : "false");
        for (int i = 0; i < d->nlayer; i++) {
            const derf_diag_layer *l = &d->layer[i];
            fprintf(log, "%s{\"name\":\"%s\",", i ? "," : "", l->name);
            jnum(log, "sat", derf_diag_sat(l));
            fputc(',', log);
            jnum(log, "rms_in", derf_diag_rms_in(l));
            fputc(',', log);
            jnum(log, "share_in", derf_diag_share_in(l));
            fputc(',', log);
            jnum(log, "share_out", derf_diag_share_out(l));
            fputc('}', log);
        }
        fprintf(log, "]}\n");
        fflush(log);
    }
    if (!progress || d->nlayer == 0) return;
    int worst = -1;
    for (int i = 0; i < d->nlayer; i++)
        if (d->layer[i].pointwise && (worst < 0 || derf_diag_sat(&d->layer[i]) > derf_diag_sat(&d->layer[worst]))) worst = i;
    const derf_diag_layer *last = &d->layer[d->nlayer - 1];
    fprintf(progress, "[derf] diag step %d:", step);
    if (worst >= 0) fprintf(progress, " sat max %.3f (%s)", derf_diag_sat(&d->layer[worst]), d->layer[worst].name);
    fprintf(progress, " | %s in: rms %.3g share %.3f, out share %.3f", last->name, derf_diag_rms_in(last),
            derf_diag_share_in(last), derf_diag_share_out(last));
    if (isfinite(d->loss) && isfinite(d->unigram))
        fprintf(progress, " | unigram gap %.3f nats", d->unigram - d->loss);
    fprintf(progress, "%s\n", alarm ? " | COLLAPSE" : "");
    if (verbose) {
        fprintf(progress, "  %-24s %8s %10s %9s %9s\n", "layer", "sat", "rms in", "share in", "share out");
        for (int i = 0; i < d->nlayer; i++) {
            const derf_diag_layer *l = &d->layer[i];
            char sat[16];
            if (l->pointwise) snprintf(sat, sizeof sat, "%.3f", derf_diag_sat(l));
            else snprintf(sat, sizeof sat, "n/a");
            fprintf(progress, "  %-24s %8s %10.4g %9.3f %9.3f\n", l->name, sat, derf_diag_rms_in(l),
                    derf_diag_share_in(l), derf_diag_share_out(l));
        }
    }
    fflush(progress);
}

void derf_diag_unigram(const uint16_t *tokens, size_t n, int V, double *logp) {
    double *cnt = calloc((size_t)V, sizeof(double));
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < V) cnt[tokens[i]] += 1;
    for (int v = 0; v < V; v++) logp[v] = log((cnt[v] + 0.5) / ((double)n + 0.5 * V));
    free(cnt);
}

double derf_diag_unigram_xent(const double *logp, const int32_t *targets, size_t n) {
    double s = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (targets[i] >= 0) { s -= logp[targets[i]]; k++; }
    return k ? s / (double)k : 0;
}
