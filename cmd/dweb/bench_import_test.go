package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/dwebkit/dweb/blobsync"
)

// TestBenchImportSmall runs `dweb bench import` on a small file with each
// baseline it can use here, and checks that the store got the file's hash
// as the baseline computed it.
func TestBenchImportSmall(t *testing.T) {
	const size = 3<<20 + 12345
	tools := []bool{true}
	if _, err := exec.LookPath("b3sum"); err == nil {
		tools = append(tools, false)
	}
	for _, goHash := range tools {
		dir := t.TempDir()
		res, err := benchImport(context.Background(), dir, size, 2, goHash, false)
		if err != nil {
			t.Fatalf("go-hash %v: %v", goHash, err)
		}
		if !res.Verified || res.Size != size || len(res.Rounds) != 2 {
			t.Fatalf("go-hash %v: %+v", goHash, res)
		}
		if res.ImportMBs <= 0 || res.HashMBs <= 0 || res.CopyMBs <= 0 || res.Ratio <= 0 || res.RefMBs <= 0 || res.RefRatio <= 0 {
			t.Fatalf("go-hash %v: figures %+v", goHash, res)
		}
		if goHash != (res.HashTool == "zeebo/blake3") {
			t.Fatalf("go-hash %v: tool %q", goHash, res.HashTool)
		}
		// The bench's own file, hashed apart from the bench: it is gone
		// with the temp dir, so write the same bytes again.
		p := filepath.Join(t.TempDir(), "again")
		if err := bsWriteRandom(p, size, 7); err != nil {
			t.Fatal(err)
		}
		h, _, err := blobsync.HashFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if res.Hash != h.String() {
			t.Fatalf("go-hash %v: hash %s, file hashes to %s", goHash, res.Hash, h)
		}
	}
}

// TestBenchImportCLI runs --cli on a small file: two `dweb serve`
// children (the test binary running main) per round, and `dweb file add`
// and `dweb file add --no-store-copy` (which must keep the file by
// reference) must name the file by the baseline's hash, give their
// figures and leave no node directory behind.
func TestBenchImportCLI(t *testing.T) {
	t.Setenv("DWEB_TEST_RUN_MAIN", "1")
	dir := t.TempDir()
	res, err := benchImport(context.Background(), dir, 2<<20+3, 1, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || res.CLIMBs <= 0 || res.CLIRatio <= 0 || res.Rounds[0].CLIMBs <= 0 {
		t.Fatalf("%+v", res)
	}
	if res.CLIRefMBs <= 0 || res.CLIRefRatio <= 0 || res.Rounds[0].CLIRefMBs <= 0 {
		t.Fatalf("no file add --no-store-copy figure: %+v", res)
	}
	for _, node := range []string{"node0", "node0-ref"} {
		if _, err := os.Stat(filepath.Join(dir, node)); !os.IsNotExist(err) {
			t.Fatalf("%s left behind (%v)", node, err)
		}
	}
}
