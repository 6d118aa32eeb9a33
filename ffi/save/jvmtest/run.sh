#!/bin/sh
# run.sh BUILD: compiles the JVM test (java/) into BUILD/jvmtest and runs it
# against BUILD/libsave.so with -Xcheck:jni. Fails if the test fails or if
# the JVM's JNI checks report a misuse. Needs a JDK (javac, java; $JDK if
# set, else the ones on PATH): without one it fails, it does not skip.
set -eu
build=$1
if [ -n "${JDK:-}" ]; then
	javac=$JDK/bin/javac java=$JDK/bin/java
else
	javac=javac java=java
fi
for t in "$javac" "$java"; do
	command -v "$t" >/dev/null 2>&1 || { echo "jvmtest: $t not found: install a JDK (17 or later)" >&2; exit 1; }
done
[ -f "$build/libsave.so" ] || { echo "jvmtest: no $build/libsave.so (make android-lib)" >&2; exit 1; }
src=$(dirname "$0")/java
rm -rf "$build/jvmtest"
mkdir -p "$build/jvmtest"
"$javac" -Xlint:all -Werror -d "$build/jvmtest" $(find "$src" -name '*.java' | sort)

# Go's runtime installs handlers for SIGSEGV, SIGBUS, SIGFPE and SIGPIPE
# that pass on what is not its own; HotSpot wants to stay first and, under
# -Xcheck:jni, complains when a library replaces its handlers. The JDK's
# libjsig keeps the JVM's handlers installed and chains Go's behind them, as
# Android's libsigchain does for ART.
jdk=$(dirname "$(dirname "$(readlink -f "$(command -v "$java")")")")
jsig=
for f in "$jdk/lib/libjsig.so" "$jdk/lib/server/libjsig.so"; do
	[ -f "$f" ] && { jsig=$f; break; }
done
[ -n "$jsig" ] || echo "jvmtest: no libjsig.so in $jdk: the JVM may warn that its signal handlers changed"

# The node listens for QUIC on loopback only here (the app's library uses
# every interface); the HTTP API is on 127.0.0.1:8080 as in the app unless
# DWEB_SAVE_HTTP says otherwise.
log=$build/jvmtest.log
rc=0
LD_PRELOAD=$jsig DWEB_SAVE_LISTEN=${DWEB_SAVE_LISTEN:-127.0.0.1:0} \
	"$java" -Xcheck:jni -Djava.library.path="$build" -cp "$build/jvmtest" SaveBridgeTest >"$log" 2>&1 || rc=$?
cat "$log"
if grep -q "in native method" "$log"; then
	echo "jvmtest: -Xcheck:jni reported a JNI misuse (above)" >&2
	exit 1
fi
exit "$rc"
