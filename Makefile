# derf build. `make` builds libderf.a and ./derf; `make test` runs the whole suite; `make deps`
# installs the Debian/npm packages the project needs (as root; does nothing when they are there).
# `make CUDA=1` adds the CUDA backend (src/cuda/*.cu, nvcc, cuBLAS/cuBLASLt) to ./derf and builds
# the GPU check program build/cuda/cuda_check (docs/cuda.md); it needs nvcc, not a GPU.
CC      ?= gcc
ARCH    ?= -march=native -mprefer-vector-width=512
OPT     ?= -O3
CFLAGS  += -std=c11 $(OPT) $(ARCH) -fopenmp -Wall -Wextra -Wno-unused-parameter -Iinclude -Isrc \
           -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -fno-math-errno -MMD -MP
# OpenBLAS, the OpenMP build (shares OpenMP's thread pool instead of oversubscribing the cores).
BLAS_DIR ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
LDLIBS  += -L$(BLAS_DIR) -l:libopenblas.so.0 -Wl,-rpath,$(BLAS_DIR) -lcjson -lpcre2-8 -lz -lfftw3f -lsndfile -lsamplerate -lm -fopenmp

# MPI (data-parallel training under mpirun, src/core/dist.c): on when pkg-config finds Open MPI
# (libopenmpi-dev) or MPICH; `make MPI=0` builds without it (then derf runs as one process only).
MPI ?= auto
ifneq ($(MPI),0)
MPI_PC  := $(firstword $(foreach p,ompi-c mpich,$(shell pkg-config --exists $(p) 2>/dev/null && echo $(p))))
ifneq ($(MPI_PC),)
CFLAGS  += -DDERF_MPI $(shell pkg-config --cflags $(MPI_PC))
LDLIBS  += $(shell pkg-config --libs $(MPI_PC))
endif
endif

LIB_SRC  := $(shell find src -name '*.c' -not -path 'src/cli/*' -not -path 'src/cuda/*' | sort)
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_LIB := $(sort $(filter-out tests/test_%.c,$(wildcard tests/*.c)))

LIB_OBJ  := $(LIB_SRC:%.c=build/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=build/%.o)
TEST_OBJ := $(TEST_LIB:%.c=build/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=build/tests/%)

# CUDA backend (CUDA=1): objects under build/src/cuda, one archive libderf-cuda.a = CPU objects + CUDA
# objects, so switching modes never mixes stale archives; the CPU archive gets src/cuda/nocuda.c
# instead (the GPU entry points the CPU code calls, answering "built without CUDA"). build/mode records the mode ./derf was
# linked in (rewritten only when it changes), so `make` after `make CUDA=1` relinks ./derf.
CUDA      ?= 0
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(CUDA_HOME)/bin/nvcc
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90
# --fmad=false: the GPU rounds a*b+c like the CPU reference (gcc -std=c11 does not contract either;
# the kernels' explicit fmaf calls stay fused), so GPU and CPU results agree to an ulp or two.
# No --use_fast_math: it would replace the shared formulas' expf/sqrtf/division by approximations.
NVCCFLAGS += -std=c++17 -O3 --fmad=false $(CUDA_ARCH) -Iinclude -Isrc -MMD -MP \
             -Xcompiler -Wall,-Wextra,-Wno-unused-parameter
CUDA_SRC  := $(sort $(wildcard src/cuda/*.cu))
CUDA_OBJ  := $(CUDA_SRC:%.cu=build/%.o)
# NCCL (GPU all-reduce under mpirun, src/cuda/nccl.cu): used with MPI when nccl.h and libnccl are found
# under CUDA_HOME (lib64 or lib) or the system folders; otherwise nccl.cu refuses multi-GPU runs with one line.
NCCL_INC  := $(firstword $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h))
NCCL_LIB  := $(firstword $(wildcard $(CUDA_HOME)/lib64/libnccl.so $(CUDA_HOME)/lib/libnccl.so \
                                    /usr/lib/x86_64-linux-gnu/libnccl.so))
ifeq ($(CUDA),1)
LIBA      := build/libderf-cuda.a
LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
NCCL_ON   := $(and $(MPI_PC),$(NCCL_INC),$(NCCL_LIB))
ifneq ($(NCCL_ON),)
NVCCFLAGS += -DDERF_NCCL -I$(dir $(NCCL_INC))
LDLIBS    += -L$(dir $(NCCL_LIB)) -Wl,-rpath,$(dir $(NCCL_LIB)) -lnccl
endif
MODE      := cuda
else
LIBA      := build/libderf.a
MODE      := cpu
endif
$(shell mkdir -p build; [ "$$(cat build/mode 2>/dev/null)" = $(MODE) ] || echo $(MODE) > build/mode)

.PHONY: all deps test clean clean-cuda demo bench
.SECONDARY:
ifeq ($(CUDA),1)
all: derf build/cuda/cuda_check
else
all: derf
endif

build/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

build/libderf.a: $(LIB_OBJ) build/src/cuda/nocuda.o
	@rm -f $@
	ar rcs $@ $^

build/src/cuda/%.o: src/cuda/%.cu Makefile
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

build/libderf-cuda.a: $(LIB_OBJ) $(CUDA_OBJ)
	@rm -f $@
	ar rcs $@ $^

derf: $(CLI_OBJ) $(LIBA) build/mode
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(LIBA) $(LDLIBS)

# GPU-vs-CPU kernel check and kernel benchmark (CUDA=1 only; tools/gpu_check.sh runs it).
build/cuda/cuda_check: tests/cuda/cuda_check.c $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIBA) $(LDLIBS)

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

# dist.c is the only file whose code depends on MPI being found: build/mpi.flag records which MPI the
# last build used and changes (rebuilding dist.o and relinking) only when that does
.PHONY: FORCE
build/mpi.flag: FORCE
	@mkdir -p build && echo '$(MPI_PC)' | cmp -s - $@ || echo '$(MPI_PC)' > $@
build/src/core/dist.o: build/mpi.flag
# likewise nccl.cu with NCCL (CUDA=1 only)
build/nccl.flag: FORCE
	@mkdir -p build && echo '$(NCCL_ON)' | cmp -s - $@ || echo '$(NCCL_ON)' > $@
build/src/cuda/nccl.o: build/nccl.flag

clean-cuda:
	rm -rf build/src/cuda build/cuda build/libderf-cuda.a

-include $(shell find build -name '*.d' 2>/dev/null)

# ---- inference, ONNX export, installed library (docs/inference.md) ---------------------------------
# ONNX export (src/infer/onnx.c): Debian libonnx-dev's onnx.proto is compiled by protoc-c
# (protobuf-c-compiler) into build/gen at build time and linked with libprotobuf-c; without them
# derf builds and `derf export --onnx` answers "built without ONNX support". build/onnx.flag records
# which way the last build went.
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
PROTOC_C   ?= protoc-c
ONNX_ON    := $(and $(wildcard $(ONNX_PROTO)),$(shell command -v $(PROTOC_C) 2>/dev/null),$(wildcard /usr/include/protobuf-c/protobuf-c.h))
build/onnx.flag: FORCE
	@mkdir -p build && echo '$(ONNX_ON)' | cmp -s - $@ || echo '$(ONNX_ON)' > $@
build/src/infer/onnx.o: build/onnx.flag
ifneq ($(ONNX_ON),)
build/gen/onnx.pb-c.c build/gen/onnx.pb-c.h: $(ONNX_PROTO)
	@mkdir -p build/gen
	cp $(ONNX_PROTO) build/gen/onnx.proto
	cd build/gen && $(PROTOC_C) --c_out=. onnx.proto
build/gen/onnx.pb-c.o: build/gen/onnx.pb-c.c
	$(CC) $(filter-out -Wall -Wextra -MMD -MP,$(CFLAGS)) -w -Ibuild/gen -c $< -o $@
build/src/infer/onnx.o: CFLAGS += -DDERF_ONNX -Ibuild/gen
build/src/infer/onnx.o: build/gen/onnx.pb-c.h
build/libderf.a build/libderf-cuda.a: build/gen/onnx.pb-c.o
LDLIBS += -lprotobuf-c
endif

# libderf as an installable library: `make install PREFIX=/usr/local` (DESTDIR honoured) installs the
# headers (include/derf), the static library, a versioned shared library with its soname
# (libderf.so.$(SO_MAJOR) -> libderf.so.$(SO_VERSION)) built from position-independent objects under
# build/pic, and derf.pc for pkg-config. examples/ holds two programs that use only the installed copy;
# tools/ci_install.sh builds and runs them against a temporary prefix.
SO_VERSION := 0.1.0
SO_MAJOR   := 0
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
PIC_OBJ    := $(LIB_SRC:%.c=build/pic/%.o) build/pic/src/cuda/nocuda.o
ifneq ($(ONNX_ON),)
PIC_OBJ    += build/pic/gen/onnx.pb-c.o
build/pic/gen/onnx.pb-c.o: build/gen/onnx.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Wall -Wextra -MMD -MP,$(CFLAGS)) -fPIC -w -Ibuild/gen -c $< -o $@
build/pic/src/infer/onnx.o: CFLAGS += -DDERF_ONNX -Ibuild/gen
build/pic/src/infer/onnx.o: build/gen/onnx.pb-c.h build/onnx.flag
endif
build/pic/src/core/dist.o: build/mpi.flag
build/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -c $< -o $@
build/libderf.so.$(SO_VERSION): $(PIC_OBJ)
	$(CC) -shared -Wl,-soname,libderf.so.$(SO_MAJOR) -o $@ $^ $(LDLIBS)

.PHONY: install uninstall
install: build/libderf.a build/libderf.so.$(SO_VERSION)
	install -d $(DESTDIR)$(PREFIX)/include/derf $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 include/derf/*.h $(DESTDIR)$(PREFIX)/include/derf/
	install -m 644 build/libderf.a $(DESTDIR)$(LIBDIR)/libderf.a
	install -m 755 build/libderf.so.$(SO_VERSION) $(DESTDIR)$(LIBDIR)/libderf.so.$(SO_VERSION)
	ln -sf libderf.so.$(SO_VERSION) $(DESTDIR)$(LIBDIR)/libderf.so.$(SO_MAJOR)
	ln -sf libderf.so.$(SO_MAJOR) $(DESTDIR)$(LIBDIR)/libderf.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@VERSION@|$(SO_VERSION)|' \
	    -e 's|@LIBS_PRIVATE@|$(strip $(LDLIBS))|' tools/derf.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/derf.pc
uninstall:
	rm -rf $(DESTDIR)$(PREFIX)/include/derf
	rm -f $(DESTDIR)$(LIBDIR)/libderf.a $(DESTDIR)$(LIBDIR)/libderf.so* $(DESTDIR)$(LIBDIR)/pkgconfig/derf.pc
