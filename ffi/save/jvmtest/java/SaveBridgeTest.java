import android.content.Context;
import net.opendasharchive.openarchive.services.snowbird.SnowbirdBridge;
import net.opendasharchive.openarchive.services.snowbird.SnowbirdBridge.Status;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * Loads libsave.so into a real JVM through the app's SnowbirdBridge class
 * and drives it as the Save app does (SnowbirdService.kt and the app's
 * Retrofit calls): start, poll /status and /health/ready, create a group,
 * name the repo, upload, list and download media, stop, start again in the
 * same process. Run by `make jvmtest`; prints one line per check and
 * exits 1 if any failed.
 */
public final class SaveBridgeTest {
    static int passed, failed;
    static final long start = System.nanoTime();
    static String base;
    static int port;

    public static void main(String[] args) throws Exception {
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(180_000);
            } catch (InterruptedException e) {
                return;
            }
            System.out.println("jvmtest: timed out after 180 s");
            System.exit(2);
        });
        watchdog.setDaemon(true);
        watchdog.start();
        try {
            run();
        } catch (Throwable e) {
            failed++;
            System.out.println("FAIL  " + e);
            e.printStackTrace(System.out);
        }
        System.out.printf("jvmtest: %d passed, %d failed (%.1f s)%n", passed, failed, (System.nanoTime() - start) / 1e9);
        System.exit(failed == 0 ? 0 : 1);
    }

    static void run() throws Exception {
        String addr = System.getenv().getOrDefault("DWEB_SAVE_HTTP", "127.0.0.1:8080");
        port = Integer.parseInt(addr.substring(addr.lastIndexOf(':') + 1));
        base = "http://localhost:" + port; // as the app: http://localhost:8080
        System.setProperty("http.keepAlive", "false"); // no connection outlives a stop
        check(portClosed(), "port " + port + " is free before the start");
        if (failed > 0) {
            System.out.println("      something else listens on port " + port + ": stop it, or set DWEB_SAVE_HTTP=127.0.0.1:PORT");
            return;
        }

        Path dir = Files.createTempDirectory("save-jvmtest");
        String baseDir = dir.toString();
        String sock = dir.resolve("rust_server.sock").toString();
        Context ctx = new Context() {};

        SnowbirdBridge bridge = new SnowbirdBridge();
        bridge.initialize();

        // First start: returns at once, /status answers, then /health/ready.
        long t = System.nanoTime();
        String res = bridge.startServer(ctx, baseDir, sock);
        long returned = ms(t);
        check(("Server started on Unix socket: " + sock).equals(res), "startServer returned \"" + res + "\" in " + returned + " ms");
        check(returned < 2000, "startServer returned within 2 s");
        long status = waitFor("/status", 2000);
        check(status >= 0, "/status 200 within 2 s (" + status + " ms after startServer returned)");
        long ready = waitFor("/health/ready", 10_000);
        check(ready >= 0, "/health/ready 200 (" + ready + " ms after startServer returned)");
        check(Files.exists(dir.resolve("dweb")), "the node's data is in baseDirectory/dweb");

        List<Status> st = SnowbirdBridge.awaitStatuses(4, 5000);
        check(codes(st).equals(List.of(0, 2, 3, 1)), "statuses 0 BackendInitializing, 2, 3 WebServerRunning, 1 BackendRunning: " + st);
        check(st.stream().allMatch(s -> s.message != null && !s.message.isEmpty()), "every status has a message");
        check(st.stream().allMatch(s -> s.thread.equals("libsave status")), "statuses come on a thread the library attached");

        check(res.equals(bridge.startServer(ctx, baseDir, sock)), "a second startServer while running returns the same message");

        // The app's calls, with its request shapes.
        Map<String, Object> g = json(call("POST", "/api/groups", "application/json; charset=UTF-8", "{\"name\":\"jvmtest newsroom\"}", 200));
        String gk = (String) g.get("key");
        check(gk != null && "jvmtest newsroom".equals(g.get("name")) && g.get("uri") instanceof String, "POST /api/groups: {key, name, uri}");
        Map<String, Object> groups = json(get("/api/groups"));
        check(keys((List<?>) groups.get("groups")).contains(gk), "GET /api/groups lists it");
        Map<String, Object> repo = json(call("POST", "/api/groups/" + gk + "/repos", "application/json; charset=UTF-8", "{\"name\":\"phone\"}", 200));
        String rk = (String) repo.get("key");
        check(rk != null && "phone".equals(repo.get("name")) && Boolean.TRUE.equals(repo.get("can_write")), "POST .../repos {\"name\":\"phone\"}: {key, name, can_write}");

        byte[] data = new byte[300_000];
        new Random(7).nextBytes(data);
        String name = "façade 1.jpg";
        String media = "/api/groups/" + gk + "/repos/" + rk + "/media";
        Map<String, Object> up = json(call("POST", media + "/" + uriEncode(name), "application/octet-stream", data, 200));
        check(name.equals(up.get("name")) && up.get("updated_collection_hash") instanceof String && up.get("file_hash") instanceof String,
                "POST .../media/" + uriEncode(name) + ": {name, updated_collection_hash, file_hash}");
        checkMedia(media, name, (String) up.get("file_hash"), data);

        // Stop: the port closes, the socket goes, status 5 arrives.
        int mark = SnowbirdBridge.statuses().size();
        t = System.nanoTime();
        bridge.stopServer();
        long stopped = ms(t);
        check(portClosed(), "stopServer closed port " + port + " (" + stopped + " ms)");
        check(!Files.exists(Path.of(sock)), "stopServer removed the socket");
        st = SnowbirdBridge.awaitStatuses(mark + 1, 5000);
        check(codes(st.subList(mark, st.size())).equals(List.of(5)), "status 5 Idle after stopServer: " + st.subList(mark, st.size()));

        // Start again in the same process and directory; the app's callback
        // throws once, which must not stop the statuses that follow.
        mark = SnowbirdBridge.statuses().size();
        SnowbirdBridge.throwOnNext(1);
        System.out.println("      (the next stack trace is expected: the callback throws on purpose)");
        t = System.nanoTime();
        res = bridge.startServer(ctx, baseDir, sock);
        check(("Server started on Unix socket: " + sock).equals(res), "startServer again returned \"" + res + "\" in " + ms(t) + " ms");
        status = waitFor("/status", 2000);
        check(status >= 0, "/status 200 within 2 s of the restart (" + status + " ms)");
        ready = waitFor("/health/ready", 10_000);
        check(ready >= 0, "/health/ready 200 after the restart (" + ready + " ms)");
        st = SnowbirdBridge.awaitStatuses(mark + 4, 5000);
        check(codes(st.subList(mark, st.size())).equals(List.of(0, 2, 3, 1)), "statuses of the restart, past a callback that threw: " + st.subList(mark, st.size()));
        groups = json(get("/api/groups"));
        check(keys((List<?>) groups.get("groups")).contains(gk), "the group is still there after the restart");
        checkMedia(media, name, (String) up.get("file_hash"), data);
        bridge.stopServer();
        check(portClosed(), "stopServer closed the port again");

        // A busy port: startServer says why, status 6 carries the reason.
        try (ServerSocket busy = new ServerSocket()) {
            busy.bind(new InetSocketAddress("127.0.0.1", port));
            mark = SnowbirdBridge.statuses().size();
            res = bridge.startServer(ctx, baseDir, sock);
            check(res.startsWith("Server failed to start") && res.contains("address already in use"), "startServer on a busy port: \"" + res + "\"");
            st = SnowbirdBridge.awaitStatuses(mark + 3, 5000);
            Status last = st.get(st.size() - 1);
            check(last.code == 6 && last.message.contains("address already in use"), "status 6 with the reason: " + last);
        }
        // Nulls the Kotlin signature forbids still do not crash the library.
        res = bridge.startServer(null, null, null);
        check(res.startsWith("Server failed to start"), "startServer(null, null, null): \"" + res + "\"");
        bridge.stopServer();
        check(portClosed(), "nothing left listening");
    }

    /** GET the media list and the file, as the app does after an upload. */
    static void checkMedia(String media, String name, String hash, byte[] data) throws IOException {
        Map<String, Object> list = json(get(media));
        Map<?, ?> f = null;
        for (Object o : (List<?>) list.get("files")) {
            if (name.equals(((Map<?, ?>) o).get("name"))) {
                f = (Map<?, ?>) o;
            }
        }
        check(f != null && hash.equals(f.get("hash")) && Boolean.TRUE.equals(f.get("is_downloaded"))
                && Double.valueOf(data.length).equals(f.get("size")), "GET .../media lists it: " + f);
        byte[] got = get(media + "/" + uriEncode(name));
        check(Arrays.equals(got, data), "GET .../media/{name} returns the " + data.length + " bytes uploaded");
    }

    static void check(boolean ok, String what) {
        if (ok) {
            passed++;
        } else {
            failed++;
        }
        System.out.println(String.format("%s %5.1fs %s", ok ? "ok  " : "FAIL", (System.nanoTime() - start) / 1e9, what));
    }

    static long ms(long since) {
        return (System.nanoTime() - since) / 1_000_000;
    }

    static List<Integer> codes(List<Status> st) {
        List<Integer> out = new ArrayList<>();
        for (Status s : st) {
            out.add(s.code);
        }
        return out;
    }

    static List<Object> keys(List<?> objs) {
        List<Object> out = new ArrayList<>();
        for (Object o : objs) {
            out.add(((Map<?, ?>) o).get("key"));
        }
        return out;
    }

    /** Polls GET path every 50 ms until 2xx; ms taken, or -1 after timeout. */
    static long waitFor(String path, long timeoutMillis) {
        long t = System.nanoTime();
        while (ms(t) < timeoutMillis) {
            try {
                HttpURLConnection c = (HttpURLConnection) new URL(base + path).openConnection();
                c.setConnectTimeout(500);
                c.setReadTimeout(2000);
                int code = c.getResponseCode();
                c.disconnect();
                if (code / 100 == 2) {
                    return ms(t);
                }
            } catch (IOException e) {
                // not up yet
            }
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                return -1;
            }
        }
        return -1;
    }

    static boolean portClosed() {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), 1000);
            return false;
        } catch (IOException e) {
            return true;
        }
    }

    static byte[] get(String path) throws IOException {
        return call("GET", path, null, (byte[]) null, 200);
    }

    static byte[] call(String method, String path, String contentType, String body, int want) throws IOException {
        return call(method, path, contentType, body.getBytes(StandardCharsets.UTF_8), want);
    }

    static byte[] call(String method, String path, String contentType, byte[] body, int want) throws IOException {
        HttpURLConnection c = (HttpURLConnection) new URL(base + path).openConnection();
        c.setConnectTimeout(2000);
        c.setReadTimeout(30_000);
        c.setRequestMethod(method);
        c.setInstanceFollowRedirects(false);
        if (body != null) {
            c.setDoOutput(true);
            c.setRequestProperty("Content-Type", contentType);
            c.setFixedLengthStreamingMode(body.length);
            try (OutputStream out = c.getOutputStream()) {
                out.write(body);
            }
        }
        int code = c.getResponseCode();
        byte[] got;
        try (InputStream in = code >= 400 ? c.getErrorStream() : c.getInputStream()) {
            got = in == null ? new byte[0] : in.readAllBytes();
        }
        c.disconnect();
        if (code != want) {
            throw new IOException(method + " " + path + ": " + code + " " + new String(got, StandardCharsets.UTF_8));
        }
        return got;
    }

    /** Android's Uri.encode: everything but letters, digits and _-!.~'()* escaped as UTF-8. */
    static String uriEncode(String s) {
        StringBuilder b = new StringBuilder();
        for (byte x : s.getBytes(StandardCharsets.UTF_8)) {
            char c = (char) (x & 0xff);
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || "_-!.~'()*".indexOf(c) >= 0) {
                b.append(c);
            } else {
                b.append(String.format("%%%02X", x & 0xff));
            }
        }
        return b.toString();
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> json(byte[] b) {
        Json p = new Json(new String(b, StandardCharsets.UTF_8));
        Object v = p.value();
        p.ws();
        if (p.i != p.s.length()) {
            throw new IllegalArgumentException("data after the JSON value: " + p.s);
        }
        return (Map<String, Object>) v;
    }

    /** Just enough JSON: objects, arrays, strings, numbers (as Double), true, false, null. */
    static final class Json {
        final String s;
        int i;

        Json(String s) {
            this.s = s;
        }

        void ws() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                i++;
            }
        }

        void expect(char c) {
            ws();
            if (i >= s.length() || s.charAt(i) != c) {
                throw new IllegalArgumentException("want '" + c + "' at " + i + " in " + s);
            }
            i++;
        }

        Object value() {
            ws();
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                i++;
                ws();
                if (s.charAt(i) == '}') {
                    i++;
                    return m;
                }
                do {
                    ws();
                    String k = string();
                    expect(':');
                    m.put(k, value());
                    ws();
                } while (s.charAt(i++) == ',');
                if (s.charAt(i - 1) != '}') {
                    throw new IllegalArgumentException("want '}' at " + (i - 1) + " in " + s);
                }
                return m;
            }
            if (c == '[') {
                List<Object> l = new ArrayList<>();
                i++;
                ws();
                if (s.charAt(i) == ']') {
                    i++;
                    return l;
                }
                do {
                    l.add(value());
                    ws();
                } while (s.charAt(i++) == ',');
                if (s.charAt(i - 1) != ']') {
                    throw new IllegalArgumentException("want ']' at " + (i - 1) + " in " + s);
                }
                return l;
            }
            if (c == '"') {
                return string();
            }
            for (String w : new String[] {"true", "false", "null"}) {
                if (s.startsWith(w, i)) {
                    i += w.length();
                    return w.equals("null") ? null : Boolean.valueOf(w);
                }
            }
            int j = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
            return Double.valueOf(s.substring(j, i));
        }

        String string() {
            if (s.charAt(i) != '"') {
                throw new IllegalArgumentException("want a string at " + i + " in " + s);
            }
            StringBuilder b = new StringBuilder();
            for (i++; s.charAt(i) != '"'; i++) {
                char c = s.charAt(i);
                if (c == '\\') {
                    c = s.charAt(++i);
                    switch (c) {
                        case 'n': c = '\n'; break;
                        case 't': c = '\t'; break;
                        case 'r': c = '\r'; break;
                        case 'b': c = '\b'; break;
                        case 'f': c = '\f'; break;
                        case 'u': c = (char) Integer.parseInt(s.substring(i + 1, i + 5), 16); i += 4; break;
                        default: break; // \" \\ \/
                    }
                }
                b.append(c);
            }
            i++;
            return b.toString();
        }
    }
}
