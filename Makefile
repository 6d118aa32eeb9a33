# Native library targets for the mobile apps (docs/ffi.md). Go builds the
# library; the hand-written ffi/dweb.h is the header we ship.
#
#   make lib             build/libdweb.so + build/dweb.h   (c-shared)
#   make archive         build/libdweb.a  + build/dweb.h   (c-archive, for iOS xcframeworks)
#   make ctest           build and run the C test against build/libdweb.so
#   make ctest-valgrind  the same C test under valgrind memcheck
#   make ctest-asan      the C test built with AddressSanitizer + UBSan
#   make android-lib     build/libsave.so, the Save app's JNI library, for this
#                        machine (JDK headers); with an Android NDK
#                        (ANDROID_NDK_HOME or ANDROID_NDK_ROOT) also
#                        build/android/{arm64-v8a,armeabi-v7a,x86_64}/libsave.so
#   make jvmtest         load build/libsave.so into a JVM and drive it as the app does
#   make jvmtest-android-headers
#                        the same with libsave.so's Android-only code (Android's
#                        jni.h, logcat) built against Debian's Android headers

GO      ?= go
CC      ?= cc
BUILD   := build
CFLAGS  ?= -O1 -g
CWARN   := -std=c11 -Wall -Wextra -Werror
GOFILES := $(wildcard ffi/*.go ffi/*.c ffi/*.h ffi/internal/*/*.go) $(shell find core blobsync datarepo group uri internal -name '*.go' ! -name '*_test.go') go.mod go.sum

.PHONY: lib archive ctest ctest-valgrind ctest-asan clean-lib android-lib android-abis jvmtest jvmtest-android-headers

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
	rm -rf $(BUILD)/libsave.so $(BUILD)/android $(BUILD)/jvmtest $(BUILD)/jvmtest.log $(BUILD)/android-headers

# libsave.so (docs/ffi.md, "libsave.so"): ffi/save, whose jni.c needs jni.h.
# On this machine it comes from the JDK that javac belongs to (or JDK=...);
# for Android from the NDK's sysroot. exports.map leaves only the three JNI
# natives in the dynamic symbol table; check-exports.sh verifies it.
JDK        ?= $(patsubst %/bin/javac,%,$(realpath $(shell command -v javac 2>/dev/null)))
NDK        ?= $(or $(ANDROID_NDK_HOME),$(ANDROID_NDK_ROOT))
NDK_HOST   ?= linux-x86_64
NDK_BIN     = $(NDK)/toolchains/llvm/prebuilt/$(NDK_HOST)/bin
ANDROID_API ?= 21
SAVEFILES  := $(wildcard ffi/save/*.go ffi/save/*.c ffi/save/exports.map ffi/save/internal/*/*.go) $(shell find core blobsync datarepo group uri httpapi internal -name '*.go' ! -name '*_test.go') go.mod go.sum
SAVE_LINK  := -Wl,--version-script=$(CURDIR)/ffi/save/exports.map

android-lib: $(BUILD)/libsave.so android-abis

$(BUILD)/libsave.so: $(SAVEFILES)
	@test -f "$(JDK)/include/jni.h" || { echo "android-lib: no jni.h in JDK=$(JDK): install a JDK (javac) or pass JDK=/path/to/jdk" >&2; exit 1; }
	@mkdir -p $(BUILD)
	CGO_ENABLED=1 CGO_CFLAGS="-g -O2 -I$(JDK)/include -I$(JDK)/include/linux" \
		$(GO) build -trimpath -buildmode=c-shared -ldflags='-extldflags=$(SAVE_LINK)' -o $@ ./ffi/save
	@rm -f $(BUILD)/libsave.h  # cgo's header of the Go half; the app needs none
	sh ffi/save/check-exports.sh nm $@

# One library per ABI of the app, with the NDK's clang. -checklinkname=0:
# core's Android build uses anet, which names net.zoneCache with
# //go:linkname (docs/ffi.md); max-page-size=16384: the 16 KiB pages of
# Android 15 devices.
ANDROID_ABIS := arm64-v8a armeabi-v7a x86_64

# ndk_build ABI,GOARCH,GOARM,CLANG_TARGET
define ndk_build
	@mkdir -p $(BUILD)/android/$(1)
	CGO_ENABLED=1 GOOS=android GOARCH=$(2) GOARM=$(3) CC=$(NDK_BIN)/$(4)-clang \
		$(GO) build -trimpath -buildmode=c-shared \
		-ldflags='-s -checklinkname=0 -extldflags=$(SAVE_LINK),-z,max-page-size=16384' \
		-o $(BUILD)/android/$(1)/libsave.so ./ffi/save
	@rm -f $(BUILD)/android/$(1)/libsave.h
	sh ffi/save/check-exports.sh $(NDK_BIN)/llvm-nm $(BUILD)/android/$(1)/libsave.so
endef

android-abis:
ifeq ($(NDK),)
	@echo "android-lib: no Android NDK (ANDROID_NDK_HOME, ANDROID_NDK_ROOT): skipped $(ANDROID_ABIS)"
else
	@test -x "$(NDK_BIN)/clang" || { echo "android-lib: no clang in $(NDK_BIN)" >&2; exit 1; }
	$(call ndk_build,arm64-v8a,arm64,,aarch64-linux-android$(ANDROID_API))
	$(call ndk_build,armeabi-v7a,arm,7,armv7a-linux-androideabi$(ANDROID_API))
	$(call ndk_build,x86_64,amd64,,x86_64-linux-android$(ANDROID_API))
endif

# The JVM test (ffi/save/jvmtest): the app's SnowbirdBridge class in Java
# loads build/libsave.so and runs the app's calls; fails without a JDK.
jvmtest: $(BUILD)/libsave.so
	JDK=$(JDK) sh ffi/save/jvmtest/run.sh $(BUILD)

# What can be checked of the Android build without an NDK: jni.c compiled as
# for Android (__ANDROID__, Android's jni.h, whose AttachCurrentThread takes
# JNIEnv **) and the logcat logger (tag savelogcat) linked to liblog, from
# Debian's android-libnativehelper-dev and android-liblog-dev, then the JVM
# test against that library (its log lines go to stderr in logcat's format).
ANDROID_INCLUDE ?= /usr/include/android
ANDROID_LIBLOG  ?= /usr/lib/$(shell $(CC) -print-multiarch 2>/dev/null)/android

jvmtest-android-headers: $(SAVEFILES)
	@test -f $(ANDROID_INCLUDE)/nativehelper/jni.h -a -f $(ANDROID_INCLUDE)/android/log.h -a -f $(ANDROID_LIBLOG)/liblog.so || \
		{ echo "jvmtest-android-headers: needs Android's jni.h and liblog (apt-get install android-libnativehelper-dev android-liblog-dev)" >&2; exit 1; }
	@mkdir -p $(BUILD)/android-headers
	CGO_ENABLED=1 CGO_CFLAGS="-g -O2 -D__ANDROID__ -Werror=incompatible-pointer-types -I$(ANDROID_INCLUDE)/nativehelper -I$(ANDROID_INCLUDE)" \
		CGO_LDFLAGS="-L$(ANDROID_LIBLOG) -Wl,-rpath,$(ANDROID_LIBLOG)" \
		$(GO) build -trimpath -tags savelogcat -buildmode=c-shared -ldflags='-extldflags=$(SAVE_LINK)' \
		-o $(BUILD)/android-headers/libsave.so ./ffi/save
	@rm -f $(BUILD)/android-headers/libsave.h
	sh ffi/save/check-exports.sh nm $(BUILD)/android-headers/libsave.so
	JDK=$(JDK) sh ffi/save/jvmtest/run.sh $(BUILD)/android-headers
