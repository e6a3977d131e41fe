/* test_dna_train.c: the HyenaDNA trainer and the k-mer baseline on synthetic DNA whose answer is known by
 * construction: a period-8 corpus (entropy 0: the validation loss must fall far below ln 4, the loss of a
 * model that knows only base frequencies), GC-rich vs AT-rich sequences (1-mer frequencies separate them
 * exactly), CpG-rich vs GpC-rich sequences of equal base composition (k = 1 cannot beat chance, k = 2 can),
 * fine-tuning from a pretraining run (the backbone is copied; a checkpoint of another size is refused); --resume:
 * K steps, then a resume to N, equals N steps straight (every weight and AdamW moment bit for bit, at one
 * thread), and states of another model, norm or format, truncated ones and runs past --steps are refused with
 * one line; the
 * out-of-distribution loss (a copy of the validation data gives the validation loss exactly). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <omp.h>

#include "derf/dna.h"
#include "derf/dnatrain.h"
#include "derf/io.h"
#include "derf/safetensors.h"
#include "testutil.h"

static char tmpdir[] = "/tmp/derf_test_dnatrain.XXXXXX";
#include "tmpfiles.h"

/* a corpus: 3 splits x 6 segments of a period-8 pattern at random phases */
static void write_periodic_corpus(const char *path, uint64_t *s) {
    static const uint8_t P[8] = {7, 8, 9, 10, 10, 9, 8, 7};
    derf_dna_corpus c = {0};
    snprintf(c.name, sizeof c.name, "periodic");
    uint8_t buf[3000];
    for (int sp = 0; sp < 3; sp++)
        for (int g = 0; g < 6; g++) {
            int ph = (int)(tu_uniform(s) * 8);
            for (int i = 0; i < 3000; i++) buf[i] = P[(i + ph) % 8];
            derf_dna_corpus_add(&c, buf, 3000, 100000 * (sp * 6 + g), sp, 0);
        }
    char err[DERF_ERRLEN];
    assert_int_equal(derf_dna_corpus_write(path, &c, err, sizeof err), 0);
    derf_dna_corpus_free(&c);
}

/* kind 0: class 1 GC-rich (70% G/C) vs class 0 AT-rich; kind 1: class 1 has CG dinucleotides, class 0 GC ones,
 * both made of the same 2-mers otherwise (balanced base composition) */
static void write_task(const char *path, int kind, int n, int len, uint64_t *s) {
    derf_dna_task t = {.n = n, .len = len, .nclass = 2};
    snprintf(t.name, sizeof t.name, "synthetic%d", kind);
    t.split = malloc((size_t)n);
    t.label = malloc((size_t)n);
    t.tok = malloc((size_t)n * len);
    for (int i = 0; i < n; i++) {
        t.split[i] = (uint8_t)(i % 5 == 3 ? DERF_DNA_VAL : i % 5 == 4 ? DERF_DNA_TEST : DERF_DNA_TRAIN);
        t.label[i] = (uint8_t)(i % 2);
        uint8_t *q = t.tok + (size_t)i * len;
        for (int j = 0; j < len; j++) {
            if (kind == 0) {
                int gc = tu_uniform(s) < (t.label[i] ? 0.7 : 0.3);
                q[j] = (uint8_t)(gc ? (tu_uniform(s) < 0.5 ? DERF_DNA_C : DERF_DNA_G) : (tu_uniform(s) < 0.5 ? DERF_DNA_A : DERF_DNA_T));
            } else if (j % 2 == 0) { /* pairs: CG / GC (by class) or AT / TA at random */
                int pick = (int)(tu_uniform(s) * 2);
                uint8_t a = pick ? (t.label[i] ? DERF_DNA_C : DERF_DNA_G) : (tu_uniform(s) < 0.5 ? DERF_DNA_A : DERF_DNA_T);
                uint8_t b = pick ? (t.label[i] ? DERF_DNA_G : DERF_DNA_C) : (a == DERF_DNA_A ? DERF_DNA_T : DERF_DNA_A);
                q[j] = a;
                if (j + 1 < len) q[j + 1] = b;
            }
        }
    }
    char err[DERF_ERRLEN];
    assert_int_equal(derf_dna_task_write(path, &t, err, sizeof err), 0);
    free(t.split); free(t.label); free(t.tok);
}

static void small_opts(derf_dna_train_opts *o) {
    derf_dna_train_opts_default(o);
    assert_int_equal(derf_hyena_preset(&o->model, "test", 130, NULL, 0), 0);
    o->batch = 8;
    o->seq = 64;
    o->eval_windows = 16;
    o->quiet = 1;
    o->lr = 3e-3f;
    o->min_lr = 3e-4f;
    o->seed = 5;
}

static void test_kmer_baseline(void **st) {
    (void)st;
    uint64_t s = tu_seed();
    char err[DERF_ERRLEN];
    float va, ta;
    write_task(tp("gc.dnat"), 0, 500, 100, &s);
    assert_int_equal(derf_dna_kmer_baseline(tp("gc.dnat"), 1, 10, 1, &va, &ta, err, sizeof err), 0);
    assert_true(ta > 0.97f); /* 100 bases at 70% vs 30% GC: separable */
    write_task(tp("cpg.dnat"), 1, 1000, 100, &s);
    assert_int_equal(derf_dna_kmer_baseline(tp("cpg.dnat"), 1, 10, 1, &va, &ta, err, sizeof err), 0);
    assert_true(ta < 0.65f); /* same composition: chance */
    assert_int_equal(derf_dna_kmer_baseline(tp("cpg.dnat"), 2, 10, 1, &va, &ta, err, sizeof err), 0);
    assert_true(ta > 0.97f); /* CG vs GC dinucleotides */
    assert_int_equal(derf_dna_kmer_baseline(tp("cpg.dnat"), 9, 10, 1, &va, &ta, err, sizeof err), -1);
    assert_int_equal(derf_dna_kmer_baseline(tp("missing.dnat"), 2, 10, 1, &va, &ta, err, sizeof err), -1);
}

static void test_pretrain_then_finetune(void **st) {
    (void)st;
    uint64_t s = tu_seed() ^ 0x77;
    char err[DERF_ERRLEN];
    write_periodic_corpus(tp("p.dnac"), &s);
    derf_dna_train_opts o;
    small_opts(&o);
    o.corpus = tp("p.dnac");
    o.steps = 120;
    o.diag_every = 40;
    o.out = tp("pre");
    derf_dna_train_result r;
    assert_int_equal(derf_dna_pretrain(&o, &r, err, sizeof err), 0);
    print_message("periodic corpus: val loss %.4f, eval-mode train loss %.4f (ln 4 = 1.386)\n", (double)r.val_loss,
                  (double)r.train_loss_eval);
    assert_false(r.diverged);
    assert_true(r.val_loss < 0.5f);
    assert_true(r.train_loss_eval < 0.5f);
    assert_int_equal(access(tp("pre/model.safetensors"), F_OK), 0);
    assert_int_equal(access(tp("pre/log.jsonl"), F_OK), 0);
    assert_int_equal(tu_count_in_file(tp("pre/log.jsonl"), "\"type\":\"diag\""), 3); /* steps 0, 40, 80 */
    assert_true(tu_count_in_file(tp("pre/log.jsonl"), "\"sat\":") >= 3);
    /* fine-tune the GC task from the pretraining run */
    write_task(tp("gc.dnat"), 0, 400, 64, &s);
    derf_dna_train_opts f;
    small_opts(&f);
    f.task = tp("gc.dnat");
    f.init = tp("pre");
    f.epochs = 3;
    f.out = tp("ft");
    assert_int_equal(derf_dna_finetune(&f, &r, err, sizeof err), 0);
    print_message("GC task from the pretrained backbone: test acc %.3f (epoch %d)\n", (double)r.test_acc, r.best_epoch);
    assert_true(r.test_acc > 0.9f);
    /* the fine-tuned run's backbone started from the checkpoint: a 1-step run with lr 0 keeps it exactly */
    f.epochs = 1;
    f.lr = f.min_lr = 0;
    f.train_limit = 8;
    f.out = tp("ft0");
    assert_int_equal(derf_dna_finetune(&f, &r, err, sizeof err), 0);
    derf_safetensors a, b;
    assert_int_equal(derf_safetensors_read(&a, tp("pre/model.safetensors"), 1 << 26, err, sizeof err), 0);
    assert_int_equal(derf_safetensors_read(&b, tp("ft0/model.safetensors"), 1 << 26, err, sizeof err), 0);
    int compared = 0;
    for (int i = 0; i < a.ntensors; i++) {
        const derf_st_tensor *x = &a.tensors[i], *y = derf_safetensors_find(&b, x->name);
        assert_non_null(y);
        assert_memory_equal(x->data, y->data, x->numel * sizeof(float));
        compared++;
    }
    assert_non_null(derf_safetensors_find(&b, "head.weight"));
    assert_true(compared > 30);
    derf_safetensors_free(&a);
    derf_safetensors_free(&b);
    /* a backbone of another width is refused with one line */
    f.model.d_model = 24;
    f.model.d_inner = 96;
    f.out = NULL;
    assert_int_equal(derf_dna_finetune(&f, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "pre"));
    assert_null(strchr(err, '\n'));
    /* a corpus without long enough training segments */
    char cpath[512];
    snprintf(cpath, sizeof cpath, "%s", tp("p.dnac"));
    o.corpus = cpath;
    o.seq = 5000;
    o.model.l_max = 5002;
    o.out = NULL;
    assert_int_equal(derf_dna_pretrain(&o, &r, err, sizeof err), -1);
    if (!strstr(err, "--seq")) fail_msg("unexpected error: %s", err);
}

/* Caduceus-PS: masked LM on the periodic corpus (a masked base follows from its neighbours), then the GC task;
 * the classifier of Caduceus-PS is reverse-complement invariant, so rc_aug does not matter */
static void test_caduceus_mlm_then_finetune(void **st) {
    (void)st;
    uint64_t s = tu_seed() ^ 0xCAD;
    char err[DERF_ERRLEN], cpath[512], pre[512];
    snprintf(cpath, sizeof cpath, "%s", tp("pc.dnac"));
    snprintf(pre, sizeof pre, "%s", tp("cpre"));
    write_periodic_corpus(cpath, &s);
    derf_dna_train_opts o;
    small_opts(&o);
    o.arch = DERF_DNA_ARCH_CADUCEUS;
    assert_int_equal(derf_caduceus_preset(&o.cmodel, "test", err, sizeof err), 0);
    o.corpus = cpath;
    o.steps = 100;
    o.lr = 8e-3f;
    o.out = pre;
    derf_dna_train_result r;
    assert_int_equal(derf_dna_pretrain(&o, &r, err, sizeof err), 0);
    print_message("caduceus MLM, periodic corpus: val loss %.4f (ln 4 = 1.386), eval-mode train loss %.4f\n", (double)r.val_loss,
                  (double)r.train_loss_eval);
    assert_false(r.diverged);
    assert_true(r.val_loss < 0.9f);
    write_task(tp("cgc.dnat"), 0, 400, 64, &s);
    derf_dna_train_opts f = o;
    f.task = tp("cgc.dnat");
    f.init = pre;
    f.epochs = 3;
    f.lr = 2e-3f;
    f.min_lr = 2e-4f;
    f.out = NULL;
    assert_int_equal(derf_dna_finetune(&f, &r, err, sizeof err), 0);
    print_message("caduceus GC task from the pretrained backbone: test acc %.3f\n", (double)r.test_acc);
    assert_true(r.test_acc > 0.9f);
    /* a HyenaDNA checkpoint cannot initialise a Caduceus backbone */
    f.init = tp("pre");
    assert_int_equal(derf_dna_finetune(&f, &r, err, sizeof err), -1);
}

/* every tensor of a.safetensors equals b's, bit for bit */
static void same_tensors(const char *pa, const char *pb) {
    char err[DERF_ERRLEN];
    derf_safetensors a, b;
    assert_int_equal(derf_safetensors_read(&a, pa, 1 << 26, err, sizeof err), 0);
    assert_int_equal(derf_safetensors_read(&b, pb, 1 << 26, err, sizeof err), 0);
    assert_int_equal(a.ntensors, b.ntensors);
    for (int i = 0; i < a.ntensors; i++) {
        const derf_st_tensor *x = &a.tensors[i], *y = derf_safetensors_find(&b, x->name);
        assert_non_null(y);
        assert_int_equal(x->numel, y->numel);
        if (memcmp(x->data, y->data, x->numel * sizeof(float))) fail_msg("%s: tensor %s differs", pb, x->name);
    }
    derf_safetensors_free(&a);
    derf_safetensors_free(&b);
}

static void expect_refused(const derf_dna_train_opts *o, const char *what) {
    char err[DERF_ERRLEN];
    derf_dna_train_result r;
    assert_int_equal(derf_dna_pretrain(o, &r, err, sizeof err), -1);
    print_message("refused (%s): %s\n", what, err);
    assert_true(err[0] != 0);
    assert_null(strchr(err, '\n'));
}

/* N steps straight == K steps (--max-steps K, a checkpoint at every 4th step on the way) then --resume to N */
static void test_resume_exact(void **st) {
    (void)st;
    uint64_t s = tu_seed() ^ 0x2E5;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1); /* bitwise: the scan's per-thread sums would be added in another order */
    char err[DERF_ERRLEN], corpus[512];
    snprintf(corpus, sizeof corpus, "%s", tp("r.dnac"));
    write_periodic_corpus(corpus, &s);
    for (int arch = 0; arch < 2; arch++) {
        derf_dna_train_opts o;
        small_opts(&o);
        o.arch = arch;
        if (arch) assert_int_equal(derf_caduceus_preset(&o.cmodel, "test", err, sizeof err), 0);
        o.corpus = corpus;
        o.steps = 10;
        o.eval_every = 4;
        o.eval_windows = 4;
        char full[512], part[512];
        snprintf(full, sizeof full, "%s", tp(arch ? "res_c_full" : "res_h_full"));
        snprintf(part, sizeof part, "%s", tp(arch ? "res_c_part" : "res_h_part"));
        derf_dna_train_result r;
        o.out = full;
        assert_int_equal(derf_dna_pretrain(&o, &r, err, sizeof err), 0);
        const float full_val = r.val_loss;
        o.out = part;
        o.max_steps = 6;
        assert_int_equal(derf_dna_pretrain(&o, &r, err, sizeof err), 0);
        assert_int_equal(r.steps, 6);
        o.max_steps = 0;
        o.resume = part;
        assert_int_equal(derf_dna_pretrain(&o, &r, err, sizeof err), 0);
        assert_int_equal(r.steps, 10);
        print_message("%s: resumed at 6 -> 10: val loss %.6f, straight %.6f\n", arch ? "caduceus" : "hyena", (double)r.val_loss,
                      (double)full_val);
        assert_true(r.val_loss == full_val);
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/state.safetensors", full);
        snprintf(b, sizeof b, "%s/state.safetensors", part);
        same_tensors(a, b); /* weights and both AdamW moments */
        snprintf(a, sizeof a, "%s/model.safetensors", full);
        snprintf(b, sizeof b, "%s/model.safetensors", part);
        same_tensors(a, b);
        /* refused: another norm (its metadata differs even where tensor names and shapes would agree) */
        derf_dna_train_opts q = o;
        q.out = NULL;
        assert_int_equal(derf_norm_parse("dyt", arch ? &q.cmodel.norm : &q.model.norm, err, sizeof err), 0);
        expect_refused(&q, "another norm");
        /* another architecture */
        q = o;
        q.out = NULL;
        q.arch = !arch;
        if (q.arch) assert_int_equal(derf_caduceus_preset(&q.cmodel, "test", err, sizeof err), 0);
        expect_refused(&q, "another architecture");
        /* past --steps */
        q = o;
        q.out = NULL;
        q.steps = 8;
        expect_refused(&q, "past --steps");
        /* a folder without a state */
        q = o;
        q.out = NULL;
        q.resume = tp("nothing_here");
        expect_refused(&q, "no state");
    }
    /* a truncated state, and one of another trainer's format */
    derf_dna_train_opts o;
    small_opts(&o);
    o.corpus = corpus;
    o.steps = 10;
    char path[600], bad[512];
    snprintf(path, sizeof path, "%s/state.safetensors", tp("res_h_full"));
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(len > 1000 && len < sizeof buf);
    snprintf(bad, sizeof bad, "%s", tp("res_trunc"));
    assert_int_equal(mkdir(bad, 0777), 0);
    snprintf(path, sizeof path, "%s/state.safetensors", bad);
    assert_int_equal(tu_write_raw(path, buf, len - 100), 0);
    o.resume = bad;
    expect_refused(&o, "truncated");
    size_t at = 0;
    while (at + 10 <= len && memcmp(buf + at, "derf-dna-1", 10)) at++;
    assert_true(at + 10 <= len);
    memcpy(buf + at, "derf-lm--1", 10);
    assert_int_equal(tu_write_raw(path, buf, len), 0);
    expect_refused(&o, "another format");
    /* fine-tuning does not resume */
    o.resume = tp("res_h_full");
    o.task = tp("r.dnac");
    char e2[DERF_ERRLEN];
    derf_dna_train_result r;
    assert_int_equal(derf_dna_finetune(&o, &r, e2, sizeof e2), -1);
    assert_non_null(strstr(e2, "pretraining"));
    omp_set_num_threads(threads);
}

/* The out-of-distribution loss: an OOD corpus holding exactly the validation segments (as split test) gives
 * exactly the validation loss (same windows, same order); found by default as umaydis.dnac beside the corpus;
 * iid random bases give a higher loss than the periodic validation data; "none" turns it off; a missing file
 * or one without test windows is an error. */
static void test_ood_loss(void **st) {
    (void)st;
    uint64_t s = tu_seed() ^ 0x0D;
    char err[DERF_ERRLEN], dir[512], cp[600], up[600];
    snprintf(dir, sizeof dir, "%s/ood", tmpdir);
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(cp, sizeof cp, "%s/p.dnac", dir);
    snprintf(up, sizeof up, "%s/umaydis.dnac", dir);
    write_periodic_corpus(cp, &s);
    derf_dna_corpus c, v = {0};
    assert_int_equal(derf_dna_corpus_read(cp, &c, err, sizeof err), 0);
    snprintf(v.name, sizeof v.name, "valcopy");
    for (size_t i = 0; i < c.nseg; i++)
        if (c.seg[i].split == DERF_DNA_VAL) derf_dna_corpus_add(&v, c.tok + c.seg[i].offset, c.seg[i].length, 0, DERF_DNA_TEST, 0);
    assert_int_equal(derf_dna_corpus_write(up, &v, err, sizeof err), 0);
    derf_dna_corpus_free(&v);
    derf_dna_train_opts o;
    small_opts(&o);
    o.corpus = cp;
    o.steps = 120;
    derf_dna_train_result r;
    assert_int_equal(derf_dna_pretrain(&o, &r, err, sizeof err), 0);
    assert_true(r.val_loss >= 0);
    assert_true(r.ood_loss == r.val_loss);
    float periodic = r.val_loss;
    /* iid random bases: nothing to predict, and the periodic model is confidently wrong */
    derf_dna_corpus rnd = {0};
    snprintf(rnd.name, sizeof rnd.name, "random");
    uint8_t buf[3000];
    for (int g = 0; g < 4; g++) {
        for (int i = 0; i < 3000; i++) buf[i] = (uint8_t)(DERF_DNA_A + (int)(tu_uniform(&s) * 4));
        derf_dna_corpus_add(&rnd, buf, 3000, 0, DERF_DNA_TEST, 0);
    }
    assert_int_equal(derf_dna_corpus_write(tp("rnd.dnac"), &rnd, err, sizeof err), 0);
    o.ood_corpus = tp("rnd.dnac");
    assert_int_equal(derf_dna_pretrain(&o, &r, err, sizeof err), 0);
    print_message("OOD loss: periodic val %.4f, iid random %.4f nats/base (ln 4 = 1.386)\n", (double)r.val_loss, (double)r.ood_loss);
    assert_true(r.val_loss == periodic); /* the same run: the OOD corpus does not change training */
    assert_true(r.ood_loss > 1.3f);
    assert_true(r.ood_loss > r.val_loss + 0.5f);
    o.steps = 2;
    o.ood_corpus = "none";
    assert_int_equal(derf_dna_pretrain(&o, &r, err, sizeof err), 0);
    assert_true(r.ood_loss == -1.f);
    o.ood_corpus = tp("missing.dnac");
    assert_int_equal(derf_dna_pretrain(&o, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "missing.dnac"));
    o.ood_corpus = cp; /* the training corpus has test windows; a corpus with none is refused */
    assert_int_equal(derf_dna_pretrain(&o, &r, err, sizeof err), 0);
    for (size_t i = 0; i < rnd.nseg; i++) rnd.seg[i].split = DERF_DNA_TRAIN;
    assert_int_equal(derf_dna_corpus_write(tp("rnd.dnac"), &rnd, err, sizeof err), 0);
    o.ood_corpus = tp("rnd.dnac");
    assert_int_equal(derf_dna_pretrain(&o, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "no test-split window"));
    derf_dna_corpus_free(&rnd);
    derf_dna_corpus_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kmer_baseline),
        cmocka_unit_test(test_pretrain_then_finetune),
        cmocka_unit_test(test_caduceus_mlm_then_finetune),
        cmocka_unit_test(test_resume_exact),
        cmocka_unit_test(test_ood_loss),
    };
    return cmocka_run_group_tests(tests, tmp_setup, tmp_teardown);
}
