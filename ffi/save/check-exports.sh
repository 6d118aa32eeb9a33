#!/bin/sh
# check-exports.sh NM LIB: fails unless LIB's dynamic symbols are exactly the
# three JNI natives of the Save app's SnowbirdBridge (exports.map). A build
# without jni.h on the include path would have none (jni.c).
set -eu
nm=$1 lib=$2
p=Java_net_opendasharchive_openarchive_services_snowbird_SnowbirdBridge_
want="${p}initializeRustService ${p}startServer ${p}stopServer"
got=$("$nm" -D --defined-only "$lib" | awk '{print $NF}' | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')
if [ "$got" != "$want" ]; then
	echo "$lib exports [$got]" >&2
	echo "want exactly [$want]" >&2
	exit 1
fi
echo "$lib: exports the 3 SnowbirdBridge natives, nothing else"
