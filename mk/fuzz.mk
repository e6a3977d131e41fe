# mk/fuzz.mk (included at the end of the Makefile): libFuzzer targets for every reader of external bytes,
# tests/fuzz/fuzz_*.c. `make fuzz` builds them with clang (-fsanitize=fuzzer,address,undefined) in their own
# folder build-fuzz/, writes seed corpora made from real small files (tests/fuzz/make_seeds.c) and runs each
# target for FUZZ_SECONDS (default 10), one at a time, nice'd, -jobs=1; findings (crash-*, leak-*, timeout-*
# files) land in build-fuzz/findings/<target>/ and fail the run. `make fuzz-build` only builds.
FUZZ_DIR     ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 10
FUZZ_FLAGS   := -std=c11 -O1 -g -fno-omit-frame-pointer -fopenmp -Iinclude -Isrc -D_POSIX_C_SOURCE=200809L \
                -D_DEFAULT_SOURCE -fsanitize=address,undefined -fno-sanitize-recover=undefined -MMD -MP
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_LIBSRC  := $(LIB_SRC) src/cuda/nocuda.c src/cli/opts.c
FUZZ_OBJ     := $(FUZZ_LIBSRC:%.c=$(FUZZ_DIR)/obj/%.o)
FUZZ_LIBS    := -L$(BLAS_DIR) -l:libopenblas.so.0 -Wl,-rpath,$(BLAS_DIR) -lcjson -lpcre2-8 -lz -lfftw3f -lsndfile \
                -lsamplerate -lm

.PHONY: fuzz fuzz-build
# MPI off in these objects (no -DDERF_MPI): dist.c builds as one process
$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_DIR)/%: tests/fuzz/%.c tests/fuzz/fuzz.h $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(FUZZ_LIBS)

$(FUZZ_DIR)/make_seeds: tests/fuzz/make_seeds.c build/libderf.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< build/libderf.a $(LDLIBS)

fuzz-build: $(FUZZ_BIN) $(FUZZ_DIR)/make_seeds

fuzz: fuzz-build
	@sh tools/fuzz_run.sh $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_BIN)

-include $(shell find $(FUZZ_DIR) -name '*.d' 2>/dev/null)
