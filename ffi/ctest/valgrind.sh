#!/bin/sh
# Runs the C test under valgrind memcheck (make ctest-valgrind); the options
# are explained in docs/ffi.md. The full log goes to build/valgrind.log.
# When memcheck reports errors, their kinds and first frames are printed
# last, one line per context, so the end of a CI log says what failed.
#
# usage: valgrind.sh SUPPRESSIONS TEST-BINARY
set -u
supp=$1 bin=$2
log=$(dirname "$bin")/valgrind.log
rc=0
valgrind --tool=memcheck --vex-guest-max-insns=10 --undef-value-errors=no --error-exitcode=99 \
	--leak-check=full --errors-for-leak-kinds=definite \
	--suppressions="$supp" --gen-suppressions=all --log-file="$log" "$bin" || rc=$?
grep 'ERROR SUMMARY' "$log" || true
if [ "$rc" -ne 0 ]; then
	echo "ctest-valgrind: exit $rc; the full log is $log. Unsuppressed contexts (count, kind, parameter, frames):"
	# --gen-suppressions=all prints a suppression block for every reported
	# context: "{", a name, "Memcheck:Kind", [a parameter], frames, "}".
	awk '
	/^\{$/ { inb = 1; n = 0; line = ""; next }
	/^\}$/ { if (inb && kind != "Memcheck:Leak") print line; inb = 0; next }
	inb { n++; sub(/^ +/, ""); if (n == 2) kind = $0; if (n >= 2 && n <= 5) line = line " " $0 }
	' "$log" | sort | uniq -c | sort -rn | head -20
fi
exit "$rc"
