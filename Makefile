# Native library targets for the mobile apps (docs/ffi.md). Go builds the
# library; the hand-written ffi/dweb.h is the header we ship.
#
#   make lib             build/libdweb.so + build/dweb.h   (c-shared)
#   make archive         build/libdweb.a  + build/dweb.h   (c-archive, for iOS xcframeworks)
#   make ctest           build and run the C test against build/libdweb.so
#   make ctest-valgrind  the same C test under valgrind memcheck
#   make ctest-asan      the C test built with AddressSanitizer + UBSan

GO      ?= go
CC      ?= cc
BUILD   := build
CFLAGS  ?= -O1 -g
CWARN   := -std=c11 -Wall -Wextra -Werror
GOFILES := $(wildcard ffi/*.go ffi/*.c ffi/*.h ffi/internal/*/*.go) $(shell find core blobsync datarepo group uri internal -name '*.go' ! -name '*_test.go') go.mod go.sum

.PHONY: lib archive ctest ctest-valgrind ctest-asan clean-lib

lib: $(BUILD)/libdweb.so $(BUILD)/dweb.h

archive: $(BUILD)/libdweb.a $(BUILD)/dweb.h

$(BUILD)/libdweb.so: $(GOFILES)
	@mkdir -p $(BUILD)
	CGO_ENABLED=1 $(GO) build -trimpath -buildmode=c-shared -o $@ ./ffi
	@rm -f $(BUILD)/libdweb.h  # cgo's generated header; ship ffi/dweb.h

$(BUILD)/libdweb.a: $(GOFILES)
	@mkdir -p $(BUILD)
	CGO_ENABLED=1 $(GO) build -trimpath -buildmode=c-archive -o $@ ./ffi
	@rm -f $(BUILD)/libdweb.h

$(BUILD)/dweb.h: ffi/dweb.h
	@mkdir -p $(BUILD)
	cp ffi/dweb.h $@

$(BUILD)/ctest: ffi/ctest/ctest.c $(BUILD)/dweb.h $(BUILD)/libdweb.so
	$(CC) $(CWARN) $(CFLAGS) -I$(BUILD) -o $@ ffi/ctest/ctest.c -L$(BUILD) -ldweb -lpthread -Wl,-rpath,'$$ORIGIN'

ctest: $(BUILD)/ctest
	$(BUILD)/ctest

# Memcheck checks the C side: the test's own allocations, and the strings
# the library mallocs and the test frees. The Go runtime's own memory is
# mmap'd and garbage-collected; the suppressions from
# ffi/ctest/valgrind-supp.sh silence what memcheck cannot understand of it,
# and --vex-guest-max-insns=10 keeps valgrind 3.19's translator from running
# out of storage on Go's large assembly blocks (see docs/ffi.md).
$(BUILD)/valgrind.supp: ffi/ctest/valgrind-supp.sh $(shell command -v valgrind)
	@mkdir -p $(BUILD)
	sh ffi/ctest/valgrind-supp.sh > $@

ctest-valgrind: $(BUILD)/ctest $(BUILD)/valgrind.supp
	sh ffi/ctest/valgrind.sh $(BUILD)/valgrind.supp $(BUILD)/ctest

$(BUILD)/ctest-asan: ffi/ctest/ctest.c $(BUILD)/dweb.h $(BUILD)/libdweb.so
	$(CC) $(CWARN) -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -I$(BUILD) -o $@ ffi/ctest/ctest.c -L$(BUILD) -ldweb -lpthread -Wl,-rpath,'$$ORIGIN'

ctest-asan: $(BUILD)/ctest-asan
	ASAN_OPTIONS=detect_leaks=1 $(BUILD)/ctest-asan

clean-lib:
	rm -f $(BUILD)/libdweb.so $(BUILD)/libdweb.a $(BUILD)/dweb.h $(BUILD)/ctest $(BUILD)/ctest-asan $(BUILD)/valgrind.supp
