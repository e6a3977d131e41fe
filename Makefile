# derf build. `make` builds libderf.a and ./derf; `make test` runs the whole suite; `make deps`
# installs the Debian/npm packages the project needs (as root; does nothing when they are there).
CC      ?= gcc
ARCH    ?= -march=native -mprefer-vector-width=512
OPT     ?= -O3
CFLAGS  += -std=c11 $(OPT) $(ARCH) -fopenmp -Wall -Wextra -Wno-unused-parameter -Iinclude -Isrc \
           -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -fno-math-errno -MMD -MP
# OpenBLAS, the OpenMP build (shares OpenMP's thread pool instead of oversubscribing the cores).
BLAS_DIR ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
LDLIBS  += -L$(BLAS_DIR) -l:libopenblas.so.0 -Wl,-rpath,$(BLAS_DIR) -lcjson -lpcre2-8 -lfftw3f -lz -lm -fopenmp

LIB_SRC  := $(shell find src -name '*.c' -not -path 'src/cli/*' -not -path 'src/cuda/*' | sort)
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_LIB := $(sort $(filter-out tests/test_%.c,$(wildcard tests/*.c)))

LIB_OBJ  := $(LIB_SRC:%.c=build/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=build/%.o)
TEST_OBJ := $(TEST_LIB:%.c=build/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=build/tests/%)

.PHONY: all deps test clean demo bench
.SECONDARY:
all: derf

build/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

build/libderf.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

derf: $(CLI_OBJ) build/libderf.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) build/libderf.a $(LDLIBS)

build/tests/%: tests/%.c $(TEST_OBJ) build/libderf.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(TEST_OBJ) build/libderf.a $(LDLIBS) -lcmocka

build/bench/%: bench/%.c build/libderf.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< build/libderf.a $(LDLIBS)

bench: derf
	./derf bench

deps:
	@sh tools/install-deps.sh

test: derf $(TEST_BIN)
	@sh tests/run.sh $(TEST_BIN)

demo: derf
	./derf compare

clean:
	rm -rf build derf

-include $(shell find build -name '*.d' 2>/dev/null)
