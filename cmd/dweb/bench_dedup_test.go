package main

import (
	"context"
	"os/exec"
	"testing"

	"github.com/dwebkit/dweb/blobsync"
)

// TestBenchDedupSmall runs `dweb bench dedup` on a 24 MiB file between two
// real nodes (QUIC on loopback, a Noise tunnel, Pebble stores on disk):
// every version assembles to its source's hash, and each edit syncs by
// chunk-run deltas, sending no more than its changed bytes and 64 KiB (the
// chunk list's delta and framing).
func TestBenchDedupSmall(t *testing.T) {
	const size = 24 << 20
	res, err := benchDedup(context.Background(), t.TempDir(), size, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || res.Size != size || res.Chunks < 5 || res.AvgChunkBytes != size/int64(res.Chunks) {
		t.Fatalf("%+v", res)
	}
	if res.FreshRatio <= 0 || res.FreshSentByte < size || len(res.FreshRounds) != 2 {
		t.Fatalf("fresh: ratio %v, sent %d", res.FreshRatio, res.FreshSentByte)
	}
	if len(res.Versions) != 3 {
		t.Fatalf("%d versions", len(res.Versions))
	}
	_, noRsync := exec.LookPath("rsync")
	for _, v := range res.Versions {
		lim := v.ChangedByte + 64<<10
		if v.SentBytes <= 0 || v.SentBytes > lim || v.StoredBytes < v.ChangedByte || v.StoredBytes > v.ChangedByte+2*blobsync.ChunkMax+v.Size/100 {
			t.Errorf("%q: sent %d, stored %d, limit %d", v.Edit, v.SentBytes, v.StoredBytes, lim)
		}
		if v.DeltaRuns < 1 || v.DeltaBytes < v.ChangedByte {
			t.Errorf("%q: %d delta runs of %d bytes", v.Edit, v.DeltaRuns, v.DeltaBytes)
		}
		if (v.RsyncLiteral == nil) != (noRsync != nil) {
			t.Errorf("%q: rsync literal %v, rsync lookup %v", v.Edit, v.RsyncLiteral, noRsync)
		}
	}
}
