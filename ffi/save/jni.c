// The JNI half of libsave.so: the three natives of the Save app's
// net.opendasharchive.openarchive.services.snowbird.SnowbirdBridge, and
// save_status, which Go calls to report a status through the static
// SnowbirdBridge.updateStatusFromRust(int, String). Strings cross as
// UTF-16 (GetStringChars, NewString), so no path or message depends on
// JNI's modified UTF-8.
//
// jni.h comes from the JDK (make android-lib passes its include
// directories) or from the NDK's sysroot. A build without it (go vet,
// go test ./... on a machine without those flags) compiles the Go half
// only and has no JNI entry points; the Makefile checks that the library
// it builds exports them.
#include <stdint.h>
#include <stdlib.h>

#if defined(__has_include)
#if __has_include(<jni.h>)
#define SAVE_HAVE_JNI 1
#endif
#endif

#ifdef SAVE_HAVE_JNI

#include <jni.h>
#include <pthread.h>
#include "_cgo_export.h"

// What save_status needs to call into the JVM from threads of Go's own:
// set once by the first native call, then never changed.
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static JavaVM *vm;
static jclass bridge;    // global reference to SnowbirdBridge
static jmethodID update; // its static updateStatusFromRust(ILjava/lang/String;)V

// remember caches the VM and the bridge's class from a native call. The
// class is taken from the object the app called, not looked up by name:
// FindClass on a thread Go attaches would search the system class loader,
// which on Android does not see the app's classes.
static void remember(JNIEnv *env, jobject self) {
	pthread_mutex_lock(&mu);
	if (vm == NULL) {
		JavaVM *v = NULL;
		if ((*env)->GetJavaVM(env, &v) == JNI_OK) {
			vm = v;
		}
	}
	if (bridge == NULL && self != NULL) {
		jclass cls = (*env)->GetObjectClass(env, self);
		jmethodID m = cls ? (*env)->GetStaticMethodID(env, cls, "updateStatusFromRust", "(ILjava/lang/String;)V") : NULL;
		if (m != NULL) {
			bridge = (*env)->NewGlobalRef(env, cls);
			update = m;
		}
		// A class without the method (NoSuchMethodError): no statuses.
		(*env)->ExceptionClear(env);
		if (cls != NULL) {
			(*env)->DeleteLocalRef(env, cls);
		}
	}
	pthread_mutex_unlock(&mu);
}

#ifdef __ANDROID__
typedef JNIEnv **attach_env; // the NDK's AttachCurrentThread takes JNIEnv **
#else
typedef void **attach_env;
#endif

__attribute__((visibility("hidden")))
void save_status(int code, const uint16_t *msg, int len) {
	pthread_mutex_lock(&mu);
	JavaVM *v = vm;
	jclass cls = bridge;
	jmethodID m = update;
	pthread_mutex_unlock(&mu);
	if (v == NULL || cls == NULL) {
		return;
	}
	JNIEnv *env = NULL;
	int attached = 0;
	jint rc = (*v)->GetEnv(v, (void **)&env, JNI_VERSION_1_6);
	if (rc == JNI_EDETACHED) {
		JavaVMAttachArgs args = {JNI_VERSION_1_6, "libsave status", NULL};
		if ((*v)->AttachCurrentThread(v, (attach_env)&env, &args) != JNI_OK) {
			return;
		}
		attached = 1;
	} else if (rc != JNI_OK) {
		return;
	}
	jstring s = (*env)->NewString(env, (const jchar *)msg, len);
	if (s != NULL) {
		(*env)->CallStaticVoidMethod(env, cls, m, (jint)code, s);
		(*env)->DeleteLocalRef(env, s);
	}
	// An exception thrown by the app's callback (or NewString's
	// OutOfMemoryError) must not stay pending on a thread Go returns to.
	if ((*env)->ExceptionCheck(env)) {
		(*env)->ExceptionDescribe(env);
		(*env)->ExceptionClear(env);
	}
	if (attached) {
		(*v)->DetachCurrentThread(v);
	}
}

// utf16 returns a Java string's UTF-16 characters and length (-1: null);
// the caller releases them with release_utf16.
static const jchar *utf16(JNIEnv *env, jstring s, jsize *n) {
	*n = -1;
	if (s == NULL) {
		return NULL;
	}
	const jchar *p = (*env)->GetStringChars(env, s, NULL);
	if (p != NULL) {
		*n = (*env)->GetStringLength(env, s);
	}
	return p;
}

static void release_utf16(JNIEnv *env, jstring s, const jchar *p) {
	if (p != NULL) {
		(*env)->ReleaseStringChars(env, s, p);
	}
}

JNIEXPORT void JNICALL
Java_net_opendasharchive_openarchive_services_snowbird_SnowbirdBridge_initializeRustService(JNIEnv *env, jobject self) {
	remember(env, self);
	saveInitialize();
}

JNIEXPORT jstring JNICALL
Java_net_opendasharchive_openarchive_services_snowbird_SnowbirdBridge_startServer(JNIEnv *env, jobject self, jobject context, jstring baseDirectory, jstring socketPath) {
	(void)context;
	remember(env, self);
	jsize bn, sn;
	const jchar *b = utf16(env, baseDirectory, &bn);
	const jchar *s = utf16(env, socketPath, &sn);
	if ((baseDirectory != NULL && b == NULL) || (socketPath != NULL && s == NULL)) {
		// OutOfMemoryError pending: let it reach the caller.
		release_utf16(env, baseDirectory, b);
		release_utf16(env, socketPath, s);
		return NULL;
	}
	int n = 0;
	uint16_t *out = saveStart((uint16_t *)b, bn, (uint16_t *)s, sn, &n);
	release_utf16(env, baseDirectory, b);
	release_utf16(env, socketPath, s);
	jstring r = (*env)->NewString(env, (const jchar *)out, n);
	free(out);
	return r;
}

JNIEXPORT void JNICALL
Java_net_opendasharchive_openarchive_services_snowbird_SnowbirdBridge_stopServer(JNIEnv *env, jobject self) {
	remember(env, self);
	saveStop();
}

#else // !SAVE_HAVE_JNI

__attribute__((visibility("hidden")))
void save_status(int code, const uint16_t *msg, int len) {
	(void)code;
	(void)msg;
	(void)len;
}

#endif
