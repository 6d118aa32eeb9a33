package net.opendasharchive.openarchive.services.snowbird;

import android.content.Context;

import java.util.ArrayList;
import java.util.List;

/**
 * The Save app's SnowbirdBridge (SnowbirdBridge.kt), in Java for a desktop
 * JVM: the same class name, the same instance natives, the library loaded
 * by the constructor as the Kotlin init block does, and the static
 * updateStatusFromRust that Kotlin's @JvmStatic companion method compiles
 * to. Instead of a StateFlow it records every status it receives.
 */
public class SnowbirdBridge {
    /** One call of updateStatusFromRust. */
    public static final class Status {
        public final int code;
        public final String message;
        public final String thread;

        Status(int code, String message, String thread) {
            this.code = code;
            this.message = message;
            this.thread = thread;
        }

        @Override
        public String toString() {
            return code + " \"" + message + "\" on " + thread;
        }
    }

    private static final List<Status> statuses = new ArrayList<>();
    private static int throwOnNext;

    public SnowbirdBridge() {
        System.loadLibrary("save");
    }

    public void initialize() {
        initializeRustService();
    }

    /**
     * Called by libsave.so. Like the Kotlin method it rejects a null
     * message (Kotlin's parameter check) and a code SnowbirdServiceStatus
     * does not know (fromCode throws).
     */
    public static void updateStatusFromRust(int code, String message) {
        if (message == null) {
            throw new NullPointerException("Parameter specified as non-null is null: method updateStatusFromRust, parameter message");
        }
        if (code < 0 || code > 6) {
            throw new IllegalArgumentException("Invalid status code: " + code);
        }
        synchronized (statuses) {
            statuses.add(new Status(code, message, Thread.currentThread().getName()));
            statuses.notifyAll();
            if (throwOnNext > 0) {
                throwOnNext--;
                throw new IllegalStateException("thrown by the test's updateStatusFromRust on purpose");
            }
        }
    }

    /** The statuses received so far. */
    public static List<Status> statuses() {
        synchronized (statuses) {
            return new ArrayList<>(statuses);
        }
    }

    /** Waits until n statuses have arrived or timeoutMillis has passed. */
    public static List<Status> awaitStatuses(int n, long timeoutMillis) throws InterruptedException {
        long end = System.currentTimeMillis() + timeoutMillis;
        synchronized (statuses) {
            long left;
            while (statuses.size() < n && (left = end - System.currentTimeMillis()) > 0) {
                statuses.wait(left);
            }
            return new ArrayList<>(statuses);
        }
    }

    /** Makes the next n calls of updateStatusFromRust throw after recording. */
    public static void throwOnNext(int n) {
        synchronized (statuses) {
            throwOnNext = n;
        }
    }

    private native void initializeRustService();

    public native String startServer(Context context, String baseDirectory, String socketPath);

    public native void stopServer();
}
