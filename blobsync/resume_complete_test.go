package blobsync

import (
	"bytes"
	"context"
	"os"
	"testing"
)

// TestResumeCompletesFullyRecordedPartial: a partial blob whose every group
// is recorded as verified, but which was never turned complete (a download
// stopped right before that step), is completed by the next Download
// without any provider.
func TestResumeCompletesFullyRecordedPartial(t *testing.T) {
	ctx := context.Background()
	src, dst := newTestStore(t), newTestStore(t)
	data := content(200<<10+5, 7)
	h, err := src.AddBytes(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Download(ctx, h, []Provider{prov(t, "src", src)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	// Put dst back in the state the stop left: partial (its outboard in its
	// .obao file, where a partial download keeps it), every range recorded.
	ob, err := outboardOf(dst, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst.obaoPath(h), ob, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := dst.putEntry(h, entry{Size: int64(len(data)), State: statePartial}); err != nil {
		t.Fatal(err)
	}
	if err := dst.saveRanges(h, RangeSet{{0, numGroups(uint64(len(data)))}}); err != nil {
		t.Fatal(err)
	}
	if has(t, dst, h) {
		t.Fatal("a partial blob reported as held")
	}

	var last Progress
	n, err := dst.Download(ctx, h, nil, DownloadOptions{Progress: func(p Progress) { last = p }})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Download with no providers = %d, %v; want the recorded blob completed", n, err)
	}
	if !has(t, dst, h) {
		t.Fatal("blob not complete after the resume")
	}
	got, err := dst.ReadAll(h, 1<<20)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("bytes after the resume differ (%v)", err)
	}
	if last.Resumed != int64(len(data)) {
		t.Fatalf("progress reports %d resumed bytes, want %d", last.Resumed, len(data))
	}
}
