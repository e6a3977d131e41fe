# mk/sanitize.mk: `make [GOAL...] SANITIZE=1` (read instead of the rest of the Makefile) runs the same goals
# with AddressSanitizer + UndefinedBehaviorSanitizer (leak detection on) in a separate build folder,
# build-san/, which holds links to the sources and its own build/ and ./derf, so sanitized objects
# never mix with the normal build. UBSan findings abort (-fno-sanitize-recover); the options below
# make any ASan, LSan or UBSan report fail the test binary that hit it.
SAN_DIR   ?= build-san
SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined
# leaks inside system libraries (Open MPI's and OpenBLAS's own start-up allocations) are not ours
export ASAN_OPTIONS  := detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=0
export LSAN_OPTIONS  := suppressions=$(CURDIR)/mk/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS := print_stacktrace=1:halt_on_error=1
SAN_LINKS := Makefile mk src include tests tools bench docs

.PHONY: san-tree
san-tree:
	@mkdir -p $(SAN_DIR)
	@for f in $(SAN_LINKS); do [ -e $(SAN_DIR)/$$f ] || ln -s ../$$f $(SAN_DIR)/$$f; done

# the library's file list is found here: `find` does not descend into the linked src/ there
SAN_LIB_SRC := $(shell find src -name '*.c' -not -path 'src/cli/*' -not -path 'src/cuda/*' | sort)

$(or $(MAKECMDGOALS),all): san-tree
	+$(MAKE) -C $(SAN_DIR) SANITIZE=0 OPT="$(SAN_FLAGS)" LIB_SRC="$(SAN_LIB_SRC)" $(MAKECMDGOALS)
