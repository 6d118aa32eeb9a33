package main

import (
	"context"
	"os"
	"testing"
)

// The bench runs each receiver in a child process, a re-exec of its own
// binary. Under go test that binary is the test binary: with
// DWEB_TEST_RUN_MAIN set, it runs dweb's main instead of the tests.
func init() {
	if os.Getenv("DWEB_TEST_RUN_MAIN") == "1" {
		main()
	}
}

// TestBenchTransferSmall runs `dweb bench transfer` end to end on a small
// blob with two providers: children, tunnels, verified download, figures.
func TestBenchTransferSmall(t *testing.T) {
	t.Setenv("DWEB_TEST_RUN_MAIN", "1")
	const size = 8 << 20
	res, err := benchTransfer(context.Background(), t.TempDir(), size, 2, 0, true, 1, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || res.Hash == "" || res.MBs <= 0 || res.BaselineMBs <= 0 || res.Ratio <= 0 {
		t.Fatalf("result %+v", res)
	}
	checkProviderBytes(t, res, size)
	if res.OneProviderMBs <= 0 || res.Speedup <= 0 {
		t.Fatalf("no one-provider run: %+v", res)
	}
}

// TestBenchTransferFiles runs the bench on a collection of small files:
// the receiver downloads it with DownloadCollection (children requests).
func TestBenchTransferFiles(t *testing.T) {
	t.Setenv("DWEB_TEST_RUN_MAIN", "1")
	const size, files = 4 << 20, 100
	res, err := benchTransfer(context.Background(), t.TempDir(), size, 2, 0, true, 1, files, false)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || res.Files != files || res.FilesPerSec <= 0 || res.MBs <= 0 {
		t.Fatalf("result %+v", res)
	}
	checkProviderBytes(t, res, size)
}

// checkProviderBytes fails unless the providers sent size new bytes in all.
func checkProviderBytes(t *testing.T, res *benchTransferResult, size int64) {
	t.Helper()
	var sum int64
	for _, b := range res.ProviderBytes {
		sum += b
	}
	if sum != size {
		t.Fatalf("providers sent %v new bytes, want %d in all", res.ProviderBytes, size)
	}
}
