package android.content;

/**
 * Stands in for Android's Context, so that SnowbirdBridge.startServer has
 * the JNI signature of the app's
 * (Landroid/content/Context;Ljava/lang/String;Ljava/lang/String;)Ljava/lang/String;.
 * libsave.so does not use it.
 */
public abstract class Context {
}
