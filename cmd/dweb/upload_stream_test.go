package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestUploadTruncated sends the Save app's upload (POST of media bytes)
// to a real daemon's HTTP API over its socket, declares 8 MiB, sends 3 MiB
// and half-closes the connection, as a phone whose link drops does. The
// daemon must answer with an error and keep nothing of it: no file in the
// repo, no blob, no part file, and the blob directory as it was. Then the
// same upload sent whole is stored, named by its BLAKE3 hash, without a
// spool file.
func TestUploadTruncated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data, ready := startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "error", maxUpload: 64 << 20})
	a := newAPIClient(t, ready.Socket)
	gid := a.json("POST", "/api/groups", `{"name":"newsroom"}`, 200)["key"].(string)
	repo := a.json("POST", "/api/groups/"+gid+"/repos", `{"name":"phone"}`, 200)["key"].(string)
	media := "/api/groups/" + gid + "/repos/" + repo + "/media"
	a.json("POST", media+"/first.jpg", bytes.NewReader(bytes.Repeat([]byte("photo"), 50000)), 200)

	blobs := filepath.Join(data, "blobs")
	before := dirNames(t, blobs)
	const declared, sent = 8 << 20, 3<<20 + 5
	body := make([]byte, declared)
	for i := range body {
		body[i] = byte(i*31 + i>>12)
	}

	conn, err := net.Dial("unix", ready.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s/cut.bin HTTP/1.1\r\nHost: dweb\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", media, declared)
	if _, err := conn.Write(body[:sent]); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("truncated upload: no answer: %v", err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Fatalf("truncated upload answered %d: %s", resp.StatusCode, msg)
	}
	t.Logf("truncated upload: %d %s", resp.StatusCode, strings.TrimSpace(string(msg)))

	files := a.json("GET", media, nil, 200)["files"].([]any)
	for _, f := range files {
		if f.(map[string]any)["name"] == "cut.bin" {
			t.Fatalf("the truncated upload is listed: %v", files)
		}
	}
	if after := dirNames(t, blobs); !slices.Equal(after, before) {
		t.Fatalf("blob directory changed: before %v, after %v", before, after)
	}

	// The whole upload goes through and is named by its hash.
	up := a.json("POST", media+"/cut.bin", bytes.NewReader(body), 200)
	want, _ := blake3Hex(bytes.NewReader(body))
	if up["file_hash"] != want || up["size"] != float64(declared) {
		t.Fatalf("whole upload %v, want hash %s", up, want)
	}
	resp2 := a.do("GET", media+"/cut.bin", nil)
	got, n := blake3Hex(resp2.Body)
	resp2.Body.Close()
	if got != want || n != declared {
		t.Fatalf("read back %d bytes hashing to %s, want %s", n, got, want)
	}
	for _, name := range dirNames(t, blobs) {
		if strings.HasSuffix(name, ".part") {
			t.Fatalf("left %s", name)
		}
	}
	// The bytes went into the store once: no spool directory.
	if _, err := os.Stat(filepath.Join(data, "uploads")); !os.IsNotExist(err) {
		t.Fatalf("uploads were spooled to %s (%v)", filepath.Join(data, "uploads"), err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}
